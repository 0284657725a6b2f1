"""The local :class:`~bfx.services.interfaces.SystemService`: health and metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import bfx
from bfx.api import types as s
from bfx.identity import format_id

if TYPE_CHECKING:
    from bfx.registry import Registry

__all__ = ["LocalSystem"]

#: How many substrates ``most_invoked_substrates`` lists.
TOP_INVOKED = 5


class LocalSystem:
    """``request_metrics`` returns this worker's request counters under the names of the
    :class:`~bfx.api.types.Metrics` fields (the server's ``RequestMetrics.snapshot``)."""

    def __init__(
        self, registry: Registry, request_metrics: Callable[[], Mapping[str, Any]]
    ) -> None:
        self._registry = registry
        self._request_metrics = request_metrics

    def health(self) -> s.Health:
        return s.Health(status="healthy", timestamp=datetime.now(UTC), version=bfx.__version__)

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
        return s.Metrics(
            total_substrates=counts["total_substrates"],
            total_relationships=counts["total_relationships"],
            version=bfx.__version__,
            most_invoked_substrates=top,
            storage=s.StorageInfo(
                backend=store.backend, durable=store.durable, change_seq=store.seq
            ),
            result_cache=cache,
            **self._request_metrics(),
        )
