"""The Prometheus exposition (docs/observability.md): ``GET /metrics``, and
``GET /api/v1/metrics`` when the client asks for text.

A worker's counters live in its :class:`~bfx.asgi.metrics.RequestMetrics` (plain ints,
written on the event loop). :class:`Exporter` turns them into samples: under
``bfx serve`` it copies them into the shared multiprocess directory
(:mod:`bfx.asgi.multiproc`) once a second, and a scrape sums every worker's files; an
app without that directory (in process, one worker) exposes its own counters directly.
So a scrape is at most :data:`FLUSH_SECONDS` behind, and the hot path never writes a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator

import msgspec
import psutil
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from bfx.asgi.metrics import BUCKETS, RequestMetrics, WorkerState, fold, summarize
from bfx.asgi.multiproc import ENV, Directory, Sample

__all__ = ["FLUSH_SECONDS", "Exporter", "wants_exposition"]

log = logging.getLogger("bfx.asgi")

#: How often a worker copies its counters to the shared directory.
FLUSH_SECONDS = 1.0

#: The label a request gets when no route matched (a 404 or 405 for an unknown path).
UNMATCHED = "unmatched"

_REQUESTS = "bfx_http_requests"
_DURATION = "bfx_http_request_duration_seconds"
_HELP = {
    _REQUESTS: "HTTP requests answered, by route template, method and status.",
    _DURATION: "Time from a request's arrival to its answer, by route template and method.",
    "bfx_invocations": "Substrate invocations (single and batched), by outcome.",
    "bfx_sandbox_rejections": "Created substrates whose code the sandbox refused.",
    "bfx_rate_limited": "Requests refused with 429 by the rate limit.",
    "bfx_auth_failures": "Requests refused by authentication (401) or authorization (403).",
}
_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(WorkerState).decode


def _fold_stats(parts: list[bytes]) -> bytes:
    states = []
    for data in parts:
        try:
            states.append(_decode(data))
        except msgspec.DecodeError:
            continue  # a torn file of a killed worker: what it held is lost
    return _encode(fold(states))


_LE = tuple(floatToGoString(b) for b in BUCKETS)
_N = len(BUCKETS)


def samples(counters: RequestMetrics) -> Iterator[Sample]:
    """This worker's cumulative values, in the multiprocess format's terms (histogram
    buckets not yet accumulated)."""
    pairs: dict[tuple[str, str], list[float]] = {}
    for (route, method, status), cell in list(counters.cells.items()):
        cell = list(cell)  # one C-level copy: the loop may be recording into it
        label = UNMATCHED if route is None else route
        yield (
            "counter",
            _REQUESTS,
            _REQUESTS + "_total",
            ("route", "method", "status"),
            (label, method, str(status)),
            _HELP[_REQUESTS],
            float(sum(cell[:_N])),
        )
        acc = pairs.get((label, method))
        if acc is None:
            pairs[(label, method)] = cell
        else:
            for i, v in enumerate(cell):
                acc[i] += v
    for (label, method), acc in pairs.items():
        for le, n in zip(_LE, acc, strict=False):
            yield (
                "histogram",
                _DURATION,
                _DURATION + "_bucket",
                ("route", "method", "le"),
                (label, method, le),
                _HELP[_DURATION],
                float(n),
            )
        yield (
            "histogram",
            _DURATION,
            _DURATION + "_sum",
            ("route", "method"),
            (label, method),
            _HELP[_DURATION],
            float(acc[_N]),
        )
    events = counters.security_events
    for family, labelnames, labelvalues, value in (
        ("bfx_invocations", ("outcome",), ("ok",), counters.invocations),
        ("bfx_invocations", ("outcome",), ("failed",), counters.failed_invocations),
        ("bfx_sandbox_rejections", (), (), counters.sandbox_rejections),
        ("bfx_rate_limited", (), (), events.get("rate_limited", 0)),
        ("bfx_auth_failures", ("reason",), ("unauthorized",), events.get("unauthorized", 0)),
        ("bfx_auth_failures", ("reason",), ("forbidden",), events.get("forbidden", 0)),
    ):
        yield (
            "counter",
            family,
            family + "_total",
            labelnames,
            labelvalues,
            _HELP[family],
            float(value),
        )


def _families(values: Iterator[Sample]) -> list[Metric]:
    """Samples of one process as metric families (histogram buckets accumulated): what
    ``MultiProcessCollector`` makes of the files, without files."""
    out: dict[str, Metric] = {}
    hist: dict[tuple[str, ...], list[float]] = {}
    for typ, family, name, labelnames, labelvalues, help_text, value in values:
        metric = out.get(family)
        if metric is None:
            metric = out[family] = Metric(family, help_text, typ)
        if typ == "histogram" and name.endswith("_bucket"):
            hist.setdefault(labelvalues[:-1], []).append(value)
            continue
        metric.add_sample(name, dict(zip(labelnames, labelvalues, strict=True)), value)
    if hist:
        metric = out[_DURATION]
        for (route, method), counts in hist.items():
            acc = 0.0
            for le, n in zip(_LE, counts, strict=True):
                acc += n
                labels = {"route": route, "method": method, "le": le}
                metric.add_sample(_DURATION + "_bucket", labels, acc)
            metric.add_sample(_DURATION + "_count", {"route": route, "method": method}, acc)
    return list(out.values())


def _process_metrics(pids: list[int]) -> list[Metric]:
    """The usual process metrics of each live worker, labelled by ``pid`` (read from
    ``/proc`` at scrape time: nothing to write per request)."""
    cpu = CounterMetricFamily(
        "process_cpu_seconds", "User and system CPU time of a worker.", labels=["pid"]
    )
    rss = GaugeMetricFamily(
        "process_resident_memory_bytes", "Resident memory of a worker.", labels=["pid"]
    )
    fds = GaugeMetricFamily(
        "process_open_fds", "Open file descriptors of a worker.", labels=["pid"]
    )
    start = GaugeMetricFamily(
        "process_start_time_seconds", "Start time of a worker (Unix time).", labels=["pid"]
    )
    for pid in pids:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                times = p.cpu_times()
                label = [str(pid)]
                cpu.add_metric(label, times.user + times.system)
                rss.add_metric(label, p.memory_info().rss)
                fds.add_metric(label, p.num_fds())
                start.add_metric(label, p.create_time())
        except psutil.Error:
            continue  # it exited between the listing and now
    workers = GaugeMetricFamily("bfx_workers", "Worker processes serving requests.")
    workers.add_metric([], len(pids))
    return [cpu, rss, fds, start, workers]


class _Scrape(Collector):
    def __init__(self, families: Callable[[], list[Metric]]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families()


class Exporter:
    """One worker's side of the exposition: its counters, the shared directory (when
    ``PROMETHEUS_MULTIPROC_DIR`` names one) and the flush timer."""

    def __init__(self, counters: RequestMetrics, directory: str | None = None) -> None:
        self.counters = counters
        path = directory if directory is not None else os.environ.get(ENV)
        self.directory = Directory(path, _fold_stats) if path else None
        self._timer: asyncio.TimerHandle | None = None
        self._failing = False

    # -- the worker's side ----------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Tidy up after dead workers and flush once a second from ``loop``, or the
        running event loop (none: nothing to start, a scrape reads the counters
        itself)."""
        if self.directory is None:
            return
        self.directory.fold_dead()
        if loop is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
        self._tick(loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        # Rescheduled first: a failed copy (a full disk, a removed directory) must not
        # end the timer; it is logged once per run of failures, not every second.
        self._timer = loop.call_later(FLUSH_SECONDS, self._tick, loop)
        try:
            self.flush()
        except OSError:
            if not self._failing:
                log.exception("could not write the worker's metrics files")
            self._failing = True
        else:
            self._failing = False

    def flush(self) -> int:
        """Copy this worker's counters to its files (event loop only). Returns how many
        values changed."""
        if self.directory is None:
            return 0
        self.directory.write_stats(_encode(self.counters.state()))
        return self.directory.write(samples(self.counters))

    def snapshot(self) -> dict[str, object]:
        """The JSON counters of the whole service: every worker's stats file (and the
        dead ones' archive), this worker's own read fresh (any thread)."""
        if self.directory is None:
            return self.counters.snapshot()
        own = self.counters.state()
        states = [own]
        for pid, data in self.directory.read_stats().items():
            if pid != str(own.pid):
                try:
                    states.append(_decode(data))
                except msgspec.DecodeError:
                    continue  # not ours to fail a request over; the next write mends it
        return summarize(states)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.directory is not None:
            # The last second's counts; the directory may be gone with its server.
            with contextlib.suppress(OSError):
                self.flush()
            self.directory.close()

    # -- a scrape (any thread) ------------------------------------------------------------

    def families(self, gauges: dict[str, tuple[str, float]]) -> list[Metric]:
        """Every metric family: the counters (all workers' with a directory), the
        ``gauges`` given (name -> help, value) and the process metrics."""
        if self.directory is None:
            counted = _families(samples(self.counters))
            pids = [os.getpid()]
        else:
            counted = self.directory.collect()
            pids = self.directory.worker_pids() or [os.getpid()]
        extra: list[Metric] = []
        for name, (help_text, value) in gauges.items():
            g = GaugeMetricFamily(name, help_text)
            g.add_metric([], value)
            extra.append(g)
        return [*counted, *extra, *_process_metrics(pids)]

    def exposition(self, accept: str, gauges: dict[str, tuple[str, float]]) -> tuple[bytes, str]:
        """The text format the ``Accept`` header asks for (OpenMetrics, else Prometheus
        text 0.0.4) and its content type."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Scrape(lambda: self.families(gauges)))
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type


def wants_exposition(accept: bytes | None) -> bool:
    """Whether ``Accept`` prefers a Prometheus text format to JSON: ``text/plain`` or
    ``application/openmetrics-text`` with a higher quality than ``application/json``
    (or ``*/*``). JSON stays the default: no header, ``*/*`` or a tie."""
    if not accept:
        return False
    text = json = 0.0
    for part in accept.decode("latin-1").split(","):
        media, *params = part.split(";")
        media = media.strip().lower()
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # nan, inf, negatives: not a quality
                    q = 0.0
        if media in ("text/plain", "application/openmetrics-text"):
            text = max(text, q)
        elif media in ("application/json", "application/*", "*/*"):
            json = max(json, q)
    return text > json
