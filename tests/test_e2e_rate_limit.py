"""Rate limits through a real ``bfx serve`` (Granian) over loopback: one worker counting
in memory, and two workers sharing a real Redis, hammered from several client threads,
admit exactly the limit; 429s carry their headers; a batch of k items consumes k."""

from __future__ import annotations

import http.client
import socket
import subprocess
import sys
import threading
from collections import Counter

import msgspec
import pytest

from bfx_server import HOST, Server

# Over RSGI (the default) and over ASGI: the same pipeline behind both adapters.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("interface")]

P = "/api/v1"
THREADS = 6
PER_THREAD = 25  # 150 requests in all: far more than any limit below


def _request(port, method, path, body=None, source="127.0.0.1"):
    """One request on a fresh connection (so Granian spreads them over its workers)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10, source_address=(source, 0))
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _hammer(port, path, source="127.0.0.1"):
    """THREADS clients at once, PER_THREAD requests each; every answer's status and headers."""
    answers = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS)

    def client():
        start.wait(timeout=30)
        for _ in range(PER_THREAD):
            status, headers, _ = _request(port, "GET", path, source=source)
            with lock:
                answers.append((status, headers))

    threads = [threading.Thread(target=client) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert len(answers) == THREADS * PER_THREAD
    return answers


def _check_headers(answers, limit):
    for status, headers in answers:
        assert headers["ratelimit-limit"] == str(limit)
        assert 0 <= int(headers["ratelimit-remaining"]) < limit
        assert 0 <= int(headers["ratelimit-reset"]) <= 60
        if status == 429:
            assert headers["ratelimit-remaining"] == "0"
            assert 1 <= int(headers["retry-after"]) <= 60


def _worker_metrics(port, workers):
    """/metrics of each worker, asked from other loopback addresses (each its own limit:
    on a loaded machine one worker took over 40 fresh connections in a row, and one
    address ran out of its 40/minute before the other worker answered)."""
    seen = {}
    for attempt in range(60):  # bounded: fresh connections land on either worker
        source = f"127.0.0.{2 + attempt}"
        status, _, body = _request(port, "GET", f"{P}/metrics", source=source)
        assert status == 200, body
        snap = msgspec.json.decode(body)
        seen[snap["worker_pid"]] = snap
        if len(seen) == workers:
            break
    assert len(seen) == workers, f"only reached workers {sorted(seen)}"
    return list(seen.values())


def test_one_worker_in_memory_admits_exactly_the_limit(tmp_path):
    limit = 20
    srv = Server(tmp_path, "--memory", "--rate-limit", f"{limit}/minute")
    try:
        assert "rate limit 20/minute per principal (per worker process)" in srv.output()
        answers = _hammer(srv.port, f"{P}/substrates")
        counts = Counter(status for status, _ in answers)
        assert counts == {200: limit, 429: THREADS * PER_THREAD - limit}
        _check_headers(answers, limit)
        # Health is not limited.
        status, headers, _ = srv.call("GET", f"{P}/health")
        assert status == 200
        assert "ratelimit-limit" not in headers
        (snap,) = _worker_metrics(srv.port, 1)
        assert snap["security_events"]["rate_limited"] == counts[429]
    finally:
        srv.stop()


def test_two_workers_sharing_redis_never_admit_more_than_the_limit(tmp_path, redis_url):
    limit = 40
    srv = Server(
        tmp_path,
        "--workers", "2",
        "--data-dir", str(tmp_path / "data"),
        "--rate-limit", f"{limit}/minute",
        "--rate-limit-storage", redis_url,
    )  # fmt: skip
    try:
        assert len(srv.worker_pids()) == 2
        refused_total = 0
        # Each round is a new caller (its own loopback address, its own limit). The kernel
        # may hand one worker every connection of a round on a loaded machine; a round in
        # which both workers refused some shows the limit held across them. Bounded.
        for round_ in range(4):
            source = f"127.0.1.{1 + round_}"
            answers = _hammer(srv.port, f"{P}/substrates", source=source)
            counts = Counter(status for status, _ in answers)
            # Exact in every round: never more than the limit, whichever worker answered.
            assert counts == {200: limit, 429: THREADS * PER_THREAD - limit}
            _check_headers(answers, limit)
            refused_total += counts[429]
            snaps = _worker_metrics(srv.port, 2)
            refused = [s["security_events"]["rate_limited"] for s in snaps]
            assert sum(refused) == refused_total
            if all(n > 0 for n in refused):
                break
        assert all(n > 0 for n in refused), f"one worker took every connection: {refused}"
    finally:
        srv.stop()


def test_a_batch_of_k_items_consumes_k_over_http(tmp_path, redis_url):
    limit = 12
    srv = Server(
        tmp_path,
        "--memory",
        "--rate-limit", f"{limit}/minute",
        "--rate-limit-storage", redis_url,
    )  # fmt: skip
    try:
        items = [
            {"expression_type": "lambda", "expression_code": f"lambda x: x - {i}"} for i in range(5)
        ]
        batch = msgspec.json.encode({"substrates": items})
        status, headers, body = _request(srv.port, "POST", f"{P}/substrates/batch", batch)
        assert status < 300, body
        assert headers["ratelimit-remaining"] == str(limit - 5)
        status, headers, body = _request(srv.port, "POST", f"{P}/substrates/batch", batch)
        assert status < 300, body
        assert headers["ratelimit-remaining"] == str(limit - 10)
        # 5 more do not fit in the 2 left: refused whole, nothing spent.
        status, headers, body = _request(srv.port, "POST", f"{P}/substrates/batch", batch)
        assert status == 429
        err = msgspec.json.decode(body)
        assert err["error"] == "rate_limited"
        assert err["details"] == {
            "limit": limit,
            "remaining": 2,
            "cost": 5,
            "retry_after": int(headers["retry-after"]),
        }
        assert set(err) == {"error", "message", "details"}
        status, headers, _ = _request(srv.port, "GET", f"{P}/substrates")
        assert (status, headers["ratelimit-remaining"]) == (200, "1")
    finally:
        srv.stop()


def _serve_fails(tmp_path, *args):
    proc = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "serve", "--memory", "--port", "1", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    return proc.returncode, proc.stderr


def test_serve_refuses_a_bad_rate_or_an_unreachable_redis(tmp_path):
    code, err = _serve_fails(tmp_path, "--rate-limit", "lots")
    assert code == 2
    assert "not a rate" in err
    code, err = _serve_fails(tmp_path, "--rate-limit-storage", "memcached://x")
    assert code == 2
    assert "memory or a redis" in err
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind((HOST, 0))
        dead = s.getsockname()[1]
    srv_port = str(_free())
    proc = subprocess.run(
        [
            sys.executable, "-m", "bfx.cli", "serve", "--memory", "--host", HOST,
            "--port", srv_port, "--rate-limit", "5/minute",
            "--rate-limit-storage", f"redis://:secret@127.0.0.1:{dead}/0",
        ],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "does not answer" in proc.stderr
    assert "secret" not in proc.stderr


def _free():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]
