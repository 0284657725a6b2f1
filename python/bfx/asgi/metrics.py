"""Request metrics of one worker process, O(1) to record.

Response times go into a fixed log-spaced histogram (buckets 15% apart from 10 µs to
~100 s), so percentiles cost a walk over ~120 counters when /metrics is asked, never a
sort, and memory does not grow with traffic. The request rate over the last minute comes
from a ring of 60 one-second counters.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left

import psutil

__all__ = ["RequestMetrics"]

_RATIO = 1.15
_FIRST_MS = 0.01
_BOUNDS_MS: tuple[float, ...] = tuple(_FIRST_MS * _RATIO**i for i in range(116))
_WINDOW = 60


class RequestMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        self._started_clock = time.perf_counter()
        self.total = 0
        self.active = 0
        self.total_ms = 0.0
        self.by_status: dict[int, int] = {}
        self._hist = [0] * (len(_BOUNDS_MS) + 1)
        self._ring = [0] * _WINDOW
        self._ring_sec = int(self._started_clock)
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
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent(None)  # the first reading is always 0.0: prime it

    # -- recording (event loop) ------------------------------------------------------

    def record(self, status: int, elapsed_s: float, now: float) -> None:
        """One finished request: its status and how long it took (``now`` from perf_counter)."""
        self.total += 1
        ms = elapsed_s * 1000.0
        self.total_ms += ms
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self._hist[bisect_left(_BOUNDS_MS, ms)] += 1
        sec = int(now)
        if sec != self._ring_sec:
            self._advance(sec)
        self._ring[sec % _WINDOW] += 1

    def _advance(self, sec: int) -> None:
        # Zero the seconds that passed without traffic (at most the whole ring).
        for s in range(max(self._ring_sec + 1, sec - _WINDOW + 1), sec + 1):
            self._ring[s % _WINDOW] = 0
        self._ring_sec = sec

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

    def count_security_event(self, name: str) -> None:
        self.security_events[name] = self.security_events.get(name, 0) + 1

    # -- reading -----------------------------------------------------------------------

    def percentile_ms(self, q: float) -> float:
        """The upper bound of the bucket holding the q-quantile (within 15%)."""
        if self.total == 0:
            return 0.0
        rank = q * self.total
        seen = 0
        for i, n in enumerate(self._hist):
            seen += n
            if seen >= rank and n:
                return round(_BOUNDS_MS[min(i, len(_BOUNDS_MS) - 1)], 3)
        return round(_BOUNDS_MS[-1], 3)

    def snapshot(self) -> dict[str, object]:
        now = time.perf_counter()
        if int(now) != self._ring_sec:
            self._advance(int(now))
        uptime = max(now - self._started_clock, 1e-9)
        window = min(uptime, float(_WINDOW))
        # The current second is partial; the ring holds at most the last 60 seconds.
        recent = sum(self._ring)
        classes: dict[str, int] = {"4xx": 0, "5xx": 0}
        for status, n in self.by_status.items():
            if status >= 400:
                key = f"{status // 100}xx"
                classes[key] = classes.get(key, 0) + n
        errors = sum(classes.values())
        total = self.total
        mem = self._process.memory_info().rss / (1024 * 1024)
        return {
            "uptime_seconds": round(uptime, 3),
            "worker_pid": os.getpid(),
            "total_requests": total,
            "requests_per_second": round(total / uptime, 3),
            "requests_per_second_1m": round(recent / window, 3),
            "avg_response_time_ms": round(self.total_ms / total, 3) if total else 0.0,
            "p50_response_time_ms": self.percentile_ms(0.50),
            "p95_response_time_ms": self.percentile_ms(0.95),
            "p99_response_time_ms": self.percentile_ms(0.99),
            "total_errors": errors,
            "error_rate": round(errors / total, 6) if total else 0.0,
            "errors_by_status_class": classes,
            "error_rate_by_status_class": {
                k: (round(v / total, 6) if total else 0.0) for k, v in classes.items()
            },
            "responses_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "total_invocations": self.invocations,
            "failed_invocations": self.failed_invocations,
            "avg_invocation_time_ms": (
                round(self.invocation_ms / self.invocations, 4) if self.invocations else 0.0
            ),
            "total_creations": self.creations,
            "total_divisions": self.divisions,
            "security_events": dict(self.security_events),
            "memory_usage_mb": round(mem, 2),
            "cpu_usage_percent": self._process.cpu_percent(None),
            "active_requests": self.active,
        }
