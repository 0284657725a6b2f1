"""Request metrics of one worker process, O(1) to record.

Response times go into a fixed log-spaced histogram (buckets 15% apart from 10 µs to
~100 s), so percentiles cost a walk over ~120 counters when /metrics is asked, never a
sort, and memory does not grow with traffic. The request rate over the last minute comes
from a ring of 60 one-second counters.

For the Prometheus exposition (:mod:`bfx.asgi.prometheus`) each request also lands in a
cell per (route template, method, status): the Prometheus histogram's bucket counts and
the sum of its seconds. The cells are only written on the event loop; a timer copies
them to the worker's file of the shared multiprocess directory once a second, so the hot
path never touches a file or a lock.

The per-request part (the histogram, the ring, the cells) is the core's
``RequestCounters``: one call per request, a few hundred instructions, where the same
in Python cost about ten thousand (two float bisects and a dict of lists, callgrind).
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec
import psutil

from bfx._core import REQUEST_BUCKETS, REQUEST_FINE_BOUNDS, REQUEST_METHODS, RequestCounters

__all__ = ["BUCKETS", "METHODS", "RequestMetrics", "WorkerState", "fold", "summarize"]

#: The fine histogram's upper bounds in ms: 116 buckets 15% apart from 10 µs (the core's).
_BOUNDS_MS: tuple[float, ...] = tuple(b * 1000.0 for b in REQUEST_FINE_BOUNDS)
_WINDOW = 60

#: Upper bounds (seconds) of the Prometheus request-duration buckets, the last infinite:
#: a cached GET answers in tens of microseconds, a heavy batch or graph call in seconds
#: (declared in the core, which records into them: ``rust/src/observe.rs``).
BUCKETS: tuple[float, ...] = REQUEST_BUCKETS
#: The methods a label may name; any other token a client sends is counted as "other",
#: so that nobody can grow the series without bound (the core's list, "other" last).
METHODS = frozenset(REQUEST_METHODS[:-1])
_SUM = len(BUCKETS)  # a cell: the bucket counts, then the sum of seconds


class RequestMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        #: The per-request counters (the middleware records through it directly).
        self.core = RequestCounters()
        self.invocations = 0
        self.failed_invocations = 0
        self.invocation_ms = 0.0
        self.creations = 0
        self.divisions = 0
        #: Security events by name (docs/security.md): ``unauthorized`` (401),
        #: ``forbidden`` (403), ``rate_limited`` (429), ``rate_limit_unavailable``,
        #: ``login_failed`` / ``login_limited`` (401 / 429 from login), ``key_revoked``.
        self.security_events: dict[str, int] = {
            "unauthorized": 0,
            "forbidden": 0,
            "rate_limited": 0,
            "login_failed": 0,
            "login_limited": 0,
            "key_revoked": 0,
        }
        #: Created substrates whose code the sandbox refused (422 ``sandbox_rejected``).
        self.sandbox_rejections = 0
        #: The compiled-expression cache (its ``hits`` and ``misses``), set by the app.
        self.cache: Any = None
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first reading is always 0.0: prime it

    # -- recording (event loop) ------------------------------------------------------

    def record(
        self,
        status: int,
        elapsed_s: float,
        now: float,
        route: str | None = None,
        method: str = "GET",
    ) -> None:
        """One finished request: its status and how long it took (``now`` from
        perf_counter), under its route template (None: no route matched)."""
        self.core.record(status, elapsed_s, now, route, method)

    @property
    def active(self) -> int:
        """Requests begun (``core.begin``) and not yet finished."""
        return self.core.active  # type: ignore[no-any-return]

    @property
    def cells(self) -> dict[tuple[str | None, str, int], list[float]]:
        """Prometheus cells: (route template or None, method, status) -> bucket counts
        and, last, the sum of seconds. Bounded: routes x METHODS x statuses. A copy."""
        return {
            (route, method, status): values for route, method, status, values in self.core.cells()
        }

    # Like record(), these run only on the event loop's thread (the metrics and security
    # middleware count from the typed answers), so they take no lock.

    def count_invocations(self, ok: int, failed: int, elapsed_ms: float) -> None:
        self.invocations += ok
        self.failed_invocations += failed
        self.invocation_ms += elapsed_ms

    def count_creations(self, n: int) -> None:
        self.creations += n

    def count_divisions(self) -> None:
        self.divisions += 1

    def count_sandbox_rejections(self, n: int) -> None:
        self.sandbox_rejections += n

    def count_security_event(self, name: str) -> None:
        self.security_events[name] = self.security_events.get(name, 0) + 1

    # -- reading -----------------------------------------------------------------------
    # Totals and statuses are sums over the cells: recording keeps one count, not three.

    @property
    def total(self) -> int:
        return int(sum(sum(c[:_SUM]) for c in self.cells.values()))

    @property
    def by_status(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for (_, _, status), cell in self.cells.items():
            out[status] = out.get(status, 0) + int(sum(cell[:_SUM]))
        return out

    def state(self) -> WorkerState:
        """This worker's counters as they stand (safe from another thread: copies)."""
        core = self.core
        ring, ring_sec = core.ring()
        p = self._process
        return WorkerState(
            pid=os.getpid(),
            started=self.started,
            statuses=self.by_status,
            seconds=sum(c[_SUM] for c in self.cells.values()),
            hist=core.hist(),
            ring=ring,
            ring_sec=ring_sec,
            invocations=self.invocations,
            failed_invocations=self.failed_invocations,
            invocation_ms=self.invocation_ms,
            creations=self.creations,
            divisions=self.divisions,
            sandbox_rejections=self.sandbox_rejections,
            security_events=dict(self.security_events),
            active=self.active,
            cache_hits=getattr(self.cache, "hits", 0),
            cache_misses=getattr(self.cache, "misses", 0),
            rss=p.memory_info().rss,
            cpu_percent=p.cpu_percent(None),
        )

    def snapshot(self) -> dict[str, object]:
        """The JSON counters of this worker alone (a server sums every worker's:
        :func:`summarize`)."""
        return summarize([self.state()])


class WorkerState(msgspec.Struct, omit_defaults=True):
    """One worker's counters, as its stats file in the shared directory holds them.

    Counters add up across workers (a dead worker's are kept in the archive); the
    minute's ring, active requests, memory and CPU are only a live worker's."""

    pid: int = 0
    #: Wall-clock start (``time.time``); the service's uptime runs from the earliest.
    started: float = 0.0
    statuses: dict[int, int] = msgspec.field(default_factory=dict)
    seconds: float = 0.0
    #: The fine histogram (15% buckets), request counts.
    hist: list[int] = msgspec.field(default_factory=list)
    #: Requests in each of the last 60 seconds, and the monotonic second of the last
    #: slot written (the monotonic clock is the machine's, the same in every worker).
    ring: list[int] = msgspec.field(default_factory=list)
    ring_sec: int = 0
    invocations: int = 0
    failed_invocations: int = 0
    invocation_ms: float = 0.0
    creations: int = 0
    divisions: int = 0
    sandbox_rejections: int = 0
    security_events: dict[str, int] = msgspec.field(default_factory=dict)
    active: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    rss: int = 0
    cpu_percent: float = 0.0


_COUNTED = (
    "seconds",
    "invocations",
    "failed_invocations",
    "invocation_ms",
    "creations",
    "divisions",
    "sandbox_rejections",
    "cache_hits",
    "cache_misses",
)


def fold(states: list[WorkerState]) -> WorkerState:
    """The counters of ``states`` added up (what a dead worker leaves to the archive):
    no ring, no active requests, no process figures."""
    out = WorkerState(hist=[0] * (len(_BOUNDS_MS) + 1))
    starts = [s.started for s in states if s.started]
    out.started = min(starts) if starts else 0.0
    for st in states:
        for name in _COUNTED:
            setattr(out, name, getattr(out, name) + getattr(st, name))
        for status, n in st.statuses.items():
            out.statuses[status] = out.statuses.get(status, 0) + n
        for name, n in st.security_events.items():
            out.security_events[name] = out.security_events.get(name, 0) + n
        for i, n in enumerate(st.hist[: len(out.hist)]):
            out.hist[i] += n
    return out


def summarize(states: list[WorkerState]) -> dict[str, object]:
    """The JSON counters (the ``Metrics`` fields) of every worker in ``states``."""
    total_state = fold(states)
    now = time.perf_counter()
    live = [s for s in states if s.ring]
    uptime = max(time.time() - total_state.started, 1e-9) if total_state.started else 1e-9
    window = min(uptime, float(_WINDOW))
    recent = 0
    for st in live:
        # The current second is partial; a ring holds at most the last 60 seconds, less
        # the ones since its last request (not yet zeroed: nothing advanced it).
        idle = int(now) - st.ring_sec
        ring = st.ring
        recent += sum(ring[(st.ring_sec - i) % _WINDOW] for i in range(max(_WINDOW - idle, 0)))
    by_status = total_state.statuses
    total = sum(by_status.values())
    classes: dict[str, int] = {"4xx": 0, "5xx": 0}
    for status, n in by_status.items():
        if status >= 400:
            key = f"{status // 100}xx"
            classes[key] = classes.get(key, 0) + n
    errors = sum(classes.values())
    hist = total_state.hist
    inv = total_state.invocations
    return {
        "uptime_seconds": round(uptime, 3),
        "worker_pid": os.getpid(),
        "workers": len(live),
        "total_requests": total,
        "requests_per_second": round(total / uptime, 3),
        "requests_per_second_1m": round(recent / window, 3),
        "avg_response_time_ms": (round(total_state.seconds * 1000.0 / total, 3) if total else 0.0),
        "p50_response_time_ms": _percentile_ms(hist, 0.50, total),
        "p95_response_time_ms": _percentile_ms(hist, 0.95, total),
        "p99_response_time_ms": _percentile_ms(hist, 0.99, total),
        "total_errors": errors,
        "error_rate": round(errors / total, 6) if total else 0.0,
        "errors_by_status_class": classes,
        "error_rate_by_status_class": {
            k: (round(v / total, 6) if total else 0.0) for k, v in classes.items()
        },
        "responses_by_status": {str(k): v for k, v in sorted(by_status.items())},
        "total_invocations": inv,
        "failed_invocations": total_state.failed_invocations,
        "avg_invocation_time_ms": round(total_state.invocation_ms / inv, 4) if inv else 0.0,
        "total_creations": total_state.creations,
        "total_divisions": total_state.divisions,
        "security_events": dict(total_state.security_events),
        "memory_usage_mb": round(sum(s.rss for s in live) / (1024 * 1024), 2),
        "cpu_usage_percent": round(sum(s.cpu_percent for s in live), 1),
        "active_requests": sum(s.active for s in live),
        "compiled_cache_hits": total_state.cache_hits,
        "compiled_cache_misses": total_state.cache_misses,
    }


def _percentile_ms(hist: list[int], q: float, total: int) -> float:
    """The upper bound of the bucket holding the q-quantile (within 15%)."""
    if total == 0:
        return 0.0
    rank = q * total
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank and n:
            return round(_BOUNDS_MS[min(i, len(_BOUNDS_MS) - 1)], 3)
    return round(_BOUNDS_MS[-1], 3)
