"""The Prometheus exposition of a real ``bfx serve`` with two Granian workers: known
traffic adds up exactly across the workers, labels are route templates, a killed
worker's files are folded (its requests still count) and the directory goes away with
the server."""

from __future__ import annotations

import http.client
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bfx_server import HOST, Server

pytestmark = pytest.mark.e2e

API = "/api/v1"
GETS = 60
INVOKES = 20
MISSES = 5
WAIT = 20.0  # seconds for flushes (one a second) and respawns to show


def _one_connection_per_worker(server: Server, workers: int = 2) -> dict[int, Any]:
    """Kept-alive connections, one to each worker (each found by the ``worker_pid`` the
    JSON metrics name): which worker accepts a new connection is up to the kernel."""
    found: dict[int, Any] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
        conn.request("GET", f"{API}/metrics")
        pid = msgspec.json.decode(conn.getresponse().read())["worker_pid"]
        if pid in found:
            conn.close()
        else:
            found[pid] = conn
        if len(found) == workers:
            return found
    pytest.fail(f"200 connections reached only workers {sorted(found)}")


def _send(conn: Any, method: str, path: str, body: object = None) -> int:
    data = None if body is None else msgspec.json.encode(body)
    conn.request(method, path, body=data, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def _scrape(server: Server) -> dict:
    status, headers, body = server.call("GET", "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _requests(fams: dict, route: str, method: str, status: str) -> float:
    family = fams.get("bfx_http_requests")  # none until a worker has flushed a request
    return sum(
        s.value
        for s in (family.samples if family else ())
        if s.labels == {"route": route, "method": method, "status": status}
    )


def _until(server: Server, check) -> dict:
    deadline = time.monotonic() + WAIT
    while True:
        fams = _scrape(server)
        if check(fams) or time.monotonic() > deadline:
            return fams
        time.sleep(0.2)


def _per_worker(directory: Path, pid: int, route: str) -> float:
    merged = MultiProcessCollector.merge([str(directory / f"counter_{pid}.db")])
    return sum(
        s.value
        for m in merged
        if m.name == "bfx_http_requests"
        for s in m.samples
        if s.labels["route"] == route
    )


def _json_adds_up(server: Server, pids: dict[int, int]) -> None:
    """Each worker in ``pids`` answers /api/v1/metrics with every worker's counters."""
    deadline = time.monotonic() + WAIT
    seen: dict[int, dict] = {}
    while len(seen) < len(pids) and time.monotonic() < deadline:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
        try:
            conn.request("GET", f"{API}/metrics")
            m = msgspec.json.decode(conn.getresponse().read())
        finally:
            conn.close()
        if m["workers"] == len(pids) and m["total_invocations"] == INVOKES:
            seen[m["worker_pid"]] = m
    assert set(seen) == set(pids), (seen.keys(), pids)
    for m in seen.values():
        assert m["total_invocations"] == INVOKES
        assert m["failed_invocations"] == 0
        assert m["total_creations"] == 1
        assert m["responses_by_status"]["404"] == MISSES
        assert m["responses_by_status"]["201"] == 1
        assert m["total_requests"] >= 1 + GETS + INVOKES + MISSES
        assert m["memory_usage_mb"] > 1


def test_two_workers_add_up_exactly_and_a_killed_ones_requests_still_count(tmp_path):
    server = Server(tmp_path, "--workers", "2", "--data-dir", str(tmp_path / "data"))
    try:
        found = re.search(r"workers' files in (\S+)\)", server.output())
        assert found, server.output()
        directory = Path(found.group(1))
        assert directory.is_dir()
        status, created = server.json(
            "POST", f"{API}/substrates", {"expression_type": "lambda", "expression_code": "lambda x: x + 1"}
        )  # fmt: skip
        assert status == 201, created
        sid = created["substrate_id"]
        conns = _one_connection_per_worker(server)
        pids = sorted(conns)
        sent = dict.fromkeys(pids, 0)  # requests of the {id} route through each worker
        for i in range(GETS):
            pid = pids[i % 2]
            assert _send(conns[pid], "GET", f"{API}/substrates/{sid}") == 200
            sent[pid] += 1
        for x in range(INVOKES):
            body = {"parameters": {"x": x}}
            assert _send(conns[pids[x % 2]], "POST", f"{API}/substrates/{sid}/invoke", body) == 200
        for i in range(MISSES):
            pid = pids[i % 2]
            assert _send(conns[pid], "GET", f"{API}/substrates/0x1") == 404
            sent[pid] += 1
        for conn in conns.values():
            conn.close()

        by_id = f"{API}/substrates/{{id}}"
        invoke = f"{by_id}/invoke"
        fams = _until(server, lambda f: _requests(f, by_id, "GET", "200") >= GETS
                      and _requests(f, invoke, "POST", "200") >= INVOKES
                      and _requests(f, by_id, "GET", "404") >= MISSES)  # fmt: skip
        assert _requests(fams, f"{API}/substrates", "POST", "201") == 1
        assert _requests(fams, by_id, "GET", "200") == GETS
        assert _requests(fams, by_id, "GET", "404") == MISSES
        assert _requests(fams, invoke, "POST", "200") == INVOKES
        dur = fams["bfx_http_request_duration_seconds"]
        (count,) = [
            s.value
            for s in dur.samples
            if s.name.endswith("_count") and s.labels == {"route": by_id, "method": "GET"}
        ]
        assert count == GETS + MISSES
        inv = {s.labels["outcome"]: s.value for s in fams["bfx_invocations"].samples}
        assert inv == {"ok": INVOKES, "failed": 0}
        assert fams["bfx_substrates"].samples[0].value == 1
        # Route templates only: no id of a request appears in any label.
        assert sid.lower() not in str(fams).lower()
        assert "0x1" not in str(fams)

        # Each worker's file holds exactly what went through it; the scrape, their sum.
        assert server.worker_pids() == pids
        assert {s.labels["pid"] for s in fams["process_resident_memory_bytes"].samples} == {
            str(p) for p in pids
        }
        assert {pid: _per_worker(directory, pid, by_id) for pid in pids} == sent
        assert sum(sent.values()) == GETS + MISSES

        # The JSON metrics are the whole service's too, whichever worker answers.
        _json_adds_up(server, {p: 0 for p in pids})

        # A killed worker is replaced; its files are folded into the archive and its
        # requests still count, exactly once.
        dead = pids[0]
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            now = server.worker_pids()
            if len(now) == 2 and dead not in now:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"worker {dead} was not replaced:\n{server.output()}")
        # The replacement folds at start-up, a scrape folds too; the replacement counts
        # as a worker once it has started its app (and written its files).
        fams = _until(
            server,
            lambda f: (
                not (directory / f"counter_{dead}.db").exists()
                and f["bfx_workers"].samples[0].value == 2
            ),
        )
        assert not (directory / f"counter_{dead}.db").exists()
        assert not (directory / f"histogram_{dead}.db").exists()
        assert (directory / "counter_archive.db").exists()
        assert _requests(fams, by_id, "GET", "200") == GETS
        assert _requests(fams, invoke, "POST", "200") == INVOKES
        pids_now = {s.labels["pid"] for s in fams["process_resident_memory_bytes"].samples}
        assert str(dead) not in pids_now
        assert fams["bfx_workers"].samples[0].value == 2
        _json_adds_up(server, {p: 0 for p in server.worker_pids()})
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.output()
    assert not directory.exists()
