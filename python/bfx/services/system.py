"""The local :class:`~bfx.services.interfaces.SystemService`: health and metrics."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import bfx
from bfx import errors
from bfx.api import types as s
from bfx.domain.figures import FiguresCache
from bfx.identity import format_id

if TYPE_CHECKING:
    from bfx.registry import Registry

__all__ = ["READY_TIMEOUT", "Exposition", "LocalSystem", "StoreProbe"]

#: The server's exposition: ``(accept, gauges)`` -> (body, content type); gauges are
#: name -> (help, value) (:meth:`bfx.asgi.prometheus.Exporter.exposition`).
Exposition = Callable[[str, dict[str, tuple[str, float]]], tuple[bytes, str]]

#: How many substrates ``most_invoked_substrates`` lists.
TOP_INVOKED = 5


#: Seconds the readiness probe waits for the store before it answers 503.
READY_TIMEOUT = 2.0


class StoreProbe:
    """Runs ``ping`` on a thread of its own and waits at most ``timeout`` for it: a
    database that hangs (a partition, not a refusal) makes the probe answer "not ready"
    in bounded time, and while a ping is still stuck no second one is started."""

    def __init__(self, ping: Callable[[], None], timeout: float) -> None:
        self._ping = ping
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="bfx-ready")
        self._pending: Future[None] | None = None
        self._lock = threading.Lock()

    def check(self) -> str | None:
        """None when the store answered; else why not."""
        with self._lock:
            if self._pending is not None and not self._pending.done():
                return "the store has not answered the previous readiness check"
            self._pending = job = self._pool.submit(self._ping)
        try:
            job.result(timeout=self.timeout)
        except FutureTimeout:
            return f"the store did not answer within {self.timeout:g} s"
        except errors.BfxError as exc:
            return exc.message
        return None


class LocalSystem:
    """``request_metrics`` returns this worker's request counters under the names of the
    :class:`~bfx.api.types.Metrics` fields (the server's ``RequestMetrics.snapshot``)."""

    def __init__(
        self,
        registry: Registry,
        request_metrics: Callable[[], Mapping[str, Any]],
        exposition: Exposition | None = None,
        metrics_ticks: Callable[[], AsyncIterator[str]] | None = None,
    ) -> None:
        self._registry = registry
        self._metrics_ticks = metrics_ticks
        self._request_metrics = request_metrics
        self._exposition = exposition
        store, arena = registry.store, registry.arena
        # The change counter of a database store, and the counts (the in-memory store
        # has no counter): a change of either makes the figures stale.
        self._probe = StoreProbe(store.ping, READY_TIMEOUT)
        self._figures = FiguresCache(
            lambda: arena, lambda: (store.seq, len(arena), arena.relationship_count)
        )

    def health(self) -> s.Health:
        return s.Health(status="healthy", timestamp=datetime.now(UTC), version=bfx.__version__)

    def ready(self) -> s.Ready:
        problem = self._probe.check()
        if problem is not None:
            raise errors.NotReadyError(problem, {"storage": self._registry.store.backend})
        return s.Ready(
            status="ready", timestamp=datetime.now(UTC), storage=self._registry.store.backend
        )

    def prometheus(self, accept: str) -> tuple[bytes, str]:
        if self._exposition is None:
            raise errors.NotFoundError("this service has no Prometheus exposition")
        counts = self._registry.stats()
        gauges = {
            "bfx_substrates": ("Substrates in the registry.", counts["total_substrates"]),
            "bfx_relationships": ("Relationships in the registry.", counts["total_relationships"]),
        }
        return self._exposition(accept, gauges)

    def metrics_ticks(self) -> AsyncIterator[str]:
        if self._metrics_ticks is None:
            raise errors.NotFoundError("this service has no live metrics stream")
        return self._metrics_ticks()

    def metrics(self) -> s.Metrics:
        reg = self._registry
        counts = reg.stats()
        top = [
            s.TopInvoked(substrate_id=format_id(i), invocations=n)
            for i, n in reg.top_invoked(TOP_INVOKED)
        ]
        store = reg.store
        results = reg.substrates.results
        cache = (
            s.ResultCacheInfo(**results.stats())
            if results is not None
            else s.ResultCacheInfo(entries=0, bytes=0, max_bytes=0, hits=0, misses=0)
        )
        figures = self._figures.get()
        return s.Metrics(
            total_substrates=counts["total_substrates"],
            total_relationships=counts["total_relationships"],
            version=bfx.__version__,
            most_invoked_substrates=top,
            storage=s.StorageInfo(
                backend=store.backend, durable=store.durable, change_seq=store.seq
            ),
            result_cache=cache,
            graph_depth=None if figures is None else figures.depth,
            graph_density=None if figures is None else figures.density,
            most_connected_substrates=[]
            if figures is None
            else [s.Connected(substrate_id=format_id(i), connections=n) for i, n in figures.top],
            substrate_size_distribution={} if figures is None else dict(figures.sizes),
            graph_figures_age_seconds=None
            if figures is None
            else round(time.monotonic() - figures.computed_at, 3),
            **self._request_metrics(),
        )
