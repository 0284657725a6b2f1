"""The Prometheus exposition in process: content negotiation, metric names and labels,
the multiprocess files of one worker and the folding of a dead worker's files.
Two real workers under Granian: tests/test_e2e_prometheus.py."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from asgi_driver import Driver
from bfx.api.operations import BY_NAME
from bfx.asgi.app import App
from bfx.asgi.metrics import BUCKETS, RequestMetrics, WorkerState
from bfx.asgi.prometheus import Exporter, samples, wants_exposition

API = "/api/v1"
CONST = {"expression_type": "constant", "expression_code": "42"}
LAMBDA = {"expression_type": "lambda", "expression_code": "lambda x: 10 / x"}
TEXT = "text/plain; version=0.0.4; charset=utf-8"


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, family: str, sample: str, **labels: str) -> float:
    found = [s.value for s in fams[family].samples if s.name == sample and s.labels == labels]
    assert len(found) == 1, (family, sample, labels, fams[family].samples)
    return found[0]


@pytest.fixture
def driver(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    d = Driver(App())
    assert d.startup()["type"] == "lifespan.startup.complete"
    yield d
    d.shutdown()
    d.close()


@pytest.mark.parametrize(
    ("accept", "text"),
    [
        (None, False),
        (b"", False),
        (b"*/*", False),
        (b"application/json", False),
        (b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", False),
        (b"text/plain", True),
        (b"text/plain;version=0.0.4", True),
        (b"application/openmetrics-text; version=1.0.0", True),
        # What Prometheus itself sends.
        (
            b"application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
            b"version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            True,
        ),
        (b"application/json, text/plain", False),  # a tie: JSON stays
        (b"application/json;q=0.5, text/plain", True),
        (b"text/plain;q=0.5, application/json", False),
        (b"text/plain;q=nan", False),
        (b"text/plain;q=2", False),
        (b"text/plain;q=abc, */*;q=0.1", False),
        (b"\xff\xfe;;;,,,q=", False),
    ],
)
def test_the_accept_header_chooses_json_or_text(accept, text):
    assert wants_exposition(accept) is text


def test_exposition_counts_requests_by_route_template_method_and_status(driver):
    sid = driver.post(f"{API}/substrates", LAMBDA).json()["substrate_id"]
    for x in (1, 2, 0):  # the last one divides by zero: a failed invocation
        driver.post(f"{API}/substrates/{sid}/invoke", {"parameters": {"x": x}})
    rejected = {"expression_type": "expression", "expression_code": "__import__('os')"}
    assert driver.post(f"{API}/substrates", rejected).status == 422
    assert driver.get(f"{API}/substrates/{sid}").status == 200
    assert driver.get(f"{API}/substrates/0x1").status == 404
    assert driver.get(f"{API}/nowhere/at/all").status == 404
    assert driver.request("BREW", f"{API}/health").status == 405

    resp = driver.get("/metrics")
    assert resp.status == 200
    assert resp.headers["content-type"] == TEXT
    assert resp.headers["vary"] == "Accept"
    fams = families(resp.body.decode())
    req = "bfx_http_requests"
    total = f"{req}_total"
    assert value(fams, req, total, route=f"{API}/substrates", method="POST", status="201") == 1
    assert value(fams, req, total, route=f"{API}/substrates", method="POST", status="422") == 1
    invoke = f"{API}/substrates/{{id}}/invoke"
    assert value(fams, req, total, route=invoke, method="POST", status="200") == 2
    assert value(fams, req, total, route=invoke, method="POST", status="422") == 1
    assert (
        value(fams, req, total, route=f"{API}/substrates/{{id}}", method="GET", status="200") == 1
    )
    assert (
        value(fams, req, total, route=f"{API}/substrates/{{id}}", method="GET", status="404") == 1
    )
    # No raw path, no client-chosen method in a label: the series stay bounded.
    assert value(fams, req, total, route="unmatched", method="GET", status="404") == 1
    assert value(fams, req, total, route="unmatched", method="other", status="405") == 1
    routes = {s.labels["route"] for s in fams[req].samples}
    assert routes <= {op.path for op in BY_NAME.values()} | {"unmatched"}

    dur = "bfx_http_request_duration_seconds"
    buckets = [
        s for s in fams[dur].samples if s.name == f"{dur}_bucket" and s.labels["route"] == invoke
    ]
    assert [float(s.labels["le"]) for s in buckets] == list(BUCKETS)
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)  # cumulative
    assert counts[-1] == value(fams, dur, f"{dur}_count", route=invoke, method="POST") == 3
    assert value(fams, dur, f"{dur}_sum", route=invoke, method="POST") > 0

    inv = "bfx_invocations"
    assert value(fams, inv, f"{inv}_total", outcome="ok") == 2
    assert value(fams, inv, f"{inv}_total", outcome="failed") == 1
    assert value(fams, "bfx_sandbox_rejections", "bfx_sandbox_rejections_total") == 1
    assert value(fams, "bfx_substrates", "bfx_substrates") == 1
    assert value(fams, "bfx_relationships", "bfx_relationships") == 0
    assert value(fams, "bfx_workers", "bfx_workers") == 1
    pid = str(os.getpid())
    assert value(fams, "process_resident_memory_bytes", "process_resident_memory_bytes", pid=pid)
    assert fams["process_cpu_seconds"].type == "counter"


def test_batch_creations_count_sandbox_rejections(driver):
    items = [CONST, {"expression_type": "expression", "expression_code": "x.__class__"}]
    assert driver.post(f"{API}/substrates/batch", {"substrates": items}).status == 200
    fams = families(driver.get("/metrics").body.decode())
    assert value(fams, "bfx_sandbox_rejections", "bfx_sandbox_rejections_total") == 1


def test_api_metrics_negotiates_openmetrics_text_and_json(driver):
    om = driver.get(f"{API}/metrics", headers=[("accept", "application/openmetrics-text")])
    assert om.status == 200
    assert om.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert om.body.endswith(b"# EOF\n")
    fams = families(driver.get(f"{API}/metrics", headers=[("accept", "text/plain")]).body.decode())
    assert "bfx_http_requests" in fams
    plain = driver.get(f"{API}/metrics")
    assert plain.headers["content-type"] == "application/json"
    assert plain.json()["total_requests"] == 2


def test_the_operation_table_and_openapi_describe_the_exposition(driver):
    doc = driver.get(f"{API}/openapi.json").json()
    root = doc["paths"]["/metrics"]["get"]
    assert root["x-bfx-scope"] == "metrics:read"
    assert set(root["responses"]["200"]["content"]) == {
        "text/plain",
        "application/openmetrics-text",
    }
    api = doc["paths"][f"{API}/metrics"]["get"]
    assert api["x-bfx-scope"] == "metrics:read"
    assert set(api["responses"]["200"]["content"]) == {
        "application/json",
        "text/plain",
        "application/openmetrics-text",
    }


# --- the multiprocess files ------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=30)
    return proc.pid


def test_a_worker_writes_only_what_changed_and_a_scrape_sums_the_files(tmp_path):
    counters = RequestMetrics()
    exporter = Exporter(counters, str(tmp_path))
    counters.record(200, 0.0001, 0.0, f"{API}/health", "GET")
    first = exporter.flush()
    assert first > 0
    assert exporter.flush() == 0  # nothing new: nothing written
    counters.record(200, 0.0001, 0.0, f"{API}/health", "GET")
    # The request counter, the histogram's bucket and its sum.
    assert exporter.flush() == 3
    assert sorted(os.listdir(tmp_path)) == [
        f"counter_{os.getpid()}.db",
        f"histogram_{os.getpid()}.db",
        f"stats_{os.getpid()}.json",
    ]
    fams = {f.name: f for f in exporter.families({})}
    assert value(fams, "bfx_http_requests", "bfx_http_requests_total",
                 route=f"{API}/health", method="GET", status="200") == 2  # fmt: skip
    exporter.stop()


def test_a_dead_workers_files_are_folded_into_the_archive(tmp_path):
    dead = _dead_pid()
    # The files a worker that has exited left behind: 5 requests, one histogram bucket.
    labels = (["route", "method", "status"], [f"{API}/health", "GET", "200"])
    with_le = (["route", "method", "le"], [f"{API}/health", "GET", "0.0001"])
    counter = MmapedDict(str(tmp_path / f"counter_{dead}.db"))
    counter.write_value(
        mmap_key("bfx_http_requests", "bfx_http_requests_total", *labels, "h"), 5.0, 0.0
    )
    counter.close()
    hist = MmapedDict(str(tmp_path / f"histogram_{dead}.db"))
    dur = "bfx_http_request_duration_seconds"
    hist.write_value(mmap_key(dur, f"{dur}_bucket", *with_le, "h"), 5.0, 0.0)
    hist.write_value(mmap_key(dur, f"{dur}_sum", labels[0][:2], labels[1][:2], "h"), 0.5, 0.0)
    hist.close()
    (tmp_path / f"gauge_livesum_{dead}.db").write_bytes(b"")
    gone = WorkerState(pid=dead, started=1.0, statuses={200: 5}, invocations=3,
                       hist=[5], ring=[5] * 60, ring_sec=1, active=2, rss=10**9)  # fmt: skip
    (tmp_path / f"stats_{dead}.json").write_bytes(msgspec.json.encode(gone))

    counters = RequestMetrics()
    exporter = Exporter(counters, str(tmp_path))
    counters.record(200, 0.00005, 0.0, f"{API}/health", "GET")
    exporter.flush()
    assert exporter.directory.worker_pids() == [os.getpid()]
    assert exporter.directory.fold_dead() == [dead]
    names = {n for n in os.listdir(tmp_path) if not n.startswith(".")}
    assert names == {
        "counter_archive.db",
        f"counter_{os.getpid()}.db",
        "histogram_archive.db",
        f"histogram_{os.getpid()}.db",
        f"stats_{os.getpid()}.json",
        "stats_archive.json",
    }
    assert exporter.directory.fold_dead() == []  # nothing left to fold: nothing counted twice
    fams = {f.name: f for f in exporter.families({})}
    route = {"route": f"{API}/health", "method": "GET"}
    assert value(fams, "bfx_http_requests", "bfx_http_requests_total", **route, status="200") == 6
    assert value(fams, dur, f"{dur}_count", **route) == 6
    assert value(fams, dur, f"{dur}_bucket", **route, le="5e-05") == 1
    assert value(fams, dur, f"{dur}_bucket", **route, le="0.0001") == 6
    assert value(fams, dur, f"{dur}_sum", **route) == pytest.approx(0.50005)
    # The JSON counters: the dead worker's requests and invocations count; its ring,
    # active requests and memory do not (it is gone).
    counters.count_invocations(1, 0, 0.5)
    snap = exporter.snapshot()
    assert snap["total_requests"] == 6
    assert snap["responses_by_status"] == {"200": 6}
    assert snap["total_invocations"] == 4
    assert snap["workers"] == 1
    assert snap["active_requests"] == 0
    assert snap["memory_usage_mb"] < 10**9 / 2**20
    assert snap["uptime_seconds"] > 1e9  # since the earliest start: the dead one's
    exporter.stop()


def test_samples_are_bounded_by_routes_methods_and_statuses():
    counters = RequestMetrics()
    for i in range(200):
        counters.record(405, 0.001, 0.0, None, f"M{i}")
    assert len(counters.cells) == 1
    (only,) = [s for s in samples(counters) if s[1] == "bfx_http_requests"]
    assert only[4] == ("unmatched", "other", "405")
    assert only[6] == 200.0


def test_an_exporter_without_a_directory_refuses_a_missing_one(tmp_path):
    with pytest.raises(ValueError, match="not a directory"):
        Exporter(RequestMetrics(), str(tmp_path / "gone"))


def test_serve_gives_its_workers_a_private_directory_and_removes_it(monkeypatch, tmp_path):
    import granian

    from bfx import cli

    seen = []

    class Recording:
        def __init__(self, target, **kw):
            pass

        def serve(self):
            path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
            seen.append((path, os.path.isdir(path), os.listdir(path)))

    monkeypatch.setattr(granian, "Granian", Recording)
    monkeypatch.setattr(cli, "_claim_port", lambda host, port: None)
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("BFX_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))  # never reused: stale files
    saved = dict(os.environ)
    try:
        assert cli.main(["serve", "--memory"]) == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    ((path, existed, files),) = seen
    assert existed
    assert files == []
    assert path != str(tmp_path)
    assert os.path.basename(path).startswith(f"bfx-metrics-{os.getpid()}-")
    assert not os.path.exists(path)


def test_directories_of_servers_that_were_killed_are_removed(tmp_path):
    from bfx.asgi.multiproc import remove_stale

    dead = _dead_pid()
    for name in (f"bfx-metrics-{dead}-ab12", f"bfx-metrics-{os.getpid()}-cd34",
                 "bfx-metrics-x9y8", "other"):  # fmt: skip
        (tmp_path / name).mkdir()
        (tmp_path / name / "counter_1.db").write_bytes(b"x")
    assert remove_stale(str(tmp_path)) == [f"bfx-metrics-{dead}-ab12"]
    assert sorted(os.listdir(tmp_path)) == sorted(
        [f"bfx-metrics-{os.getpid()}-cd34", "bfx-metrics-x9y8", "other"]
    )


def test_a_failing_copy_keeps_the_timer_and_shutdown_survives_a_removed_directory(tmp_path, caplog):
    import asyncio
    import shutil

    directory = tmp_path / "metrics"
    directory.mkdir()
    exporter = Exporter(RequestMetrics(), str(directory))

    async def run():
        exporter.start()  # flushes once and starts the timer
        shutil.rmtree(directory)
        exporter._tick(asyncio.get_running_loop())
        exporter._tick(asyncio.get_running_loop())
        assert exporter._timer is not None
        exporter.stop()
        assert exporter._timer is None

    asyncio.run(run())
    failures = [r for r in caplog.records if "metrics files" in r.getMessage()]
    assert len(failures) == 1  # logged once, not every second


def test_a_workers_file_appears_whole_never_empty(tmp_path, monkeypatch):
    # A scrape globbing the directory while a worker creates its first file once read
    # an empty file and failed (a 500): the file must appear at its full size at once.
    import bfx.asgi.multiproc as mp

    seen = []
    real = mp.MmapedDict

    def watching(path, *a, **kw):
        # MmapedDict creates a missing file empty, then sizes it: never in place.
        if path.endswith(".db"):
            size = os.path.getsize(path) if os.path.exists(path) else 0
            seen.append((os.path.basename(path), size))
        return real(path, *a, **kw)

    monkeypatch.setattr(mp, "MmapedDict", watching)
    counters = RequestMetrics()
    counters.record(200, 0.0001, 0.0, f"{API}/health", "GET")
    exporter = Exporter(counters, str(tmp_path))
    exporter.flush()
    exporter.stop()
    assert {n for n, _ in seen} >= {f"counter_{os.getpid()}.db"}
    assert all(size > 0 for _, size in seen), seen
