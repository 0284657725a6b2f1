"""Admission (DESIGN.md §7): batch item caps, the batch invoke budget, body depth, the
bounded heavy pool, work stopped for departed clients, and the access log.

In-process through the ASGI app where the behaviour is the app's; end to end through a
real ``bfx serve`` where it needs real connections (overload, disconnects, the
issue's one-request crash).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import threading
import time

import msgspec
import pytest

from asgi_driver import finish, started
from bfx import Registry
from bfx.asgi import Settings
from bfx.asgi.middleware.access_log import AccessLog
from bfx.asgi.middleware.body import check_depth, check_items
from bfx.asgi.middleware.dispatch import HeavyPool
from bfx.budget import BatchBudget, Cancelled, json_size
from bfx.errors import (
    InvocationError,
    OverloadedError,
    ResultTooLargeError,
    TooManyItemsError,
    ValidationError,
)
from bfx_server import HOST, Server

API = "/api/v1"
#: About 3 ms an invocation: slow enough to fill a time budget or a heavy thread.
SLOW = "lambda x: " + " + ".join(["sum([x] * 10000)"] * 30)
#: The issue's crash: ~100 KB of answer per invocation (~1 MiB with * 104 in the issue).
BIG = "lambda: ['a' * 10000] * 10"


@pytest.fixture
def client():
    driver = started()
    yield driver
    finish(driver)


def _create(client, code, kind="lambda"):
    r = client.post(f"{API}/substrates", {"expression_type": kind, "expression_code": code})
    assert r.status == 201, r
    return r.json()["substrate_id"]


def _nested(depth: int, leaf: object = 1) -> object:
    """``depth - 1`` objects around ``leaf``."""
    value = leaf
    for _ in range(depth - 1):
        value = {"k": value}
    return value


# --- batch item caps ----------------------------------------------------------------------


def test_batches_over_the_item_cap_are_413_and_nothing_is_done(client):
    one = _create(client, "1", "constant")
    over = 1001
    r = client.post(
        f"{API}/substrates/batch",
        {
            "substrates": [
                {"expression_type": "constant", "expression_code": str(i)} for i in range(over)
            ]
        },
    )
    assert r.status == 413
    assert r.json()["error"] == "too_many_items"
    assert r.json()["details"] == {"field": "substrates", "items": over, "limit": 1000}
    assert client.get(f"{API}/metrics").json()["total_substrates"] == 1
    r = client.post(
        f"{API}/relationships/batch",
        {"relationships": [{"rel_type": "SIBLING", "source_id": one, "target_id": one}] * over},
    )
    assert r.status == 413
    assert r.json()["error"] == "too_many_items"
    assert client.get(f"{API}/metrics").json()["total_relationships"] == 0
    r = client.post(
        f"{API}/substrates/batch/invoke", {"invocations": [{"substrate_id": one}] * over}
    )
    assert r.status == 413
    assert r.json()["details"]["field"] == "invocations"
    assert client.get(f"{API}/substrates/{one}").json()["invocations"] == 0
    # The cap itself is admitted.
    r = client.post(
        f"{API}/substrates/batch/invoke", {"invocations": [{"substrate_id": one}] * 1000}
    )
    assert r.status == 200
    assert len(r.json()["results"]) == 1000


def test_the_item_cap_is_a_setting():
    driver = started(max_batch_items=3)
    try:
        one = _create(driver, "7", "constant")
        r = driver.post(
            f"{API}/substrates/batch/invoke", {"invocations": [{"substrate_id": one}] * 4}
        )
        assert r.status == 413
        assert r.json()["details"]["limit"] == 3
        r = driver.post(
            f"{API}/substrates/batch/invoke", {"invocations": [{"substrate_id": one}] * 3}
        )
        assert r.status == 200
    finally:
        finish(driver)


def test_check_items_alone():
    class Body(msgspec.Struct):
        items: list[int]

    check_items(Body(items=[1, 2]), "items", 2)
    with pytest.raises(TooManyItemsError) as info:
        check_items(Body(items=[1, 2, 3]), "items", 2)
    assert info.value.status == 413


# --- answer size and time budget ------------------------------------------------------------


def test_batch_invoke_answer_size_is_bounded_while_computing():
    driver = started(max_answer_bytes=1 << 20)
    try:
        big = _create(driver, BIG)
        # 1000 x ~100 KB would be ~100 MB of answer: refused at the first MiB.
        r = driver.post(
            f"{API}/substrates/batch/invoke", {"invocations": [{"substrate_id": big}] * 1000}
        )
        assert r.status == 422, r
        assert r.json()["error"] == "result_too_large"
        assert r.json()["details"] == {"limit": 1 << 20}
        # It stopped there: at most a step of 16 past the ten that fit.
        assert driver.get(f"{API}/substrates/{big}").json()["invocations"] == 0
        r = driver.post(
            f"{API}/substrates/batch/invoke", {"invocations": [{"substrate_id": big}] * 5}
        )
        assert r.status == 200
        assert all(item["status"] == 200 for item in r.json()["results"])
    finally:
        finish(driver)


def test_batch_invoke_shares_one_time_budget():
    driver = started(batch_time_budget=0.05)
    try:
        slow = _create(driver, SLOW)
        r = driver.post(
            f"{API}/substrates/batch/invoke",
            {"invocations": [{"substrate_id": slow, "parameters": {"x": 1}}] * 200},
        )
        assert r.status == 200, r
        items = r.json()["results"]
        assert [i["index"] for i in items] == list(range(200))
        done = [i for i in items if i["status"] == 200]
        late = [i for i in items if i["status"] == 422]
        assert done, "the first items run"
        assert late, "200 x 3 ms cannot fit in 50 ms"
        assert len(done) + len(late) == 200
        for item in late:
            assert item["error"]["error"] == "invocation_error"
            assert item["error"]["details"] == {"reason": "batch_time_budget", "limit_ms": 50.0}
        # Items run in order: every late item comes after every finished one.
        assert max(i["index"] for i in done) < min(i["index"] for i in late)
    finally:
        finish(driver)


def test_a_result_that_cannot_be_encoded_fails_its_item_only():
    reg = Registry()
    bad = reg.create("lambda", "lambda s: s + 'x'")
    good = reg.create("constant", "5")
    budget = BatchBudget(time_ms=1000, max_bytes=1 << 20)
    answers = reg.invoke_many(
        [(bad.identity, {"s": "\ud800"}), (good.identity, None), (bad.identity, {"s": "ok"})],
        budget=budget,
    )
    assert isinstance(answers[0], InvocationError)
    assert answers[1].result == 5
    assert answers[2].result == "okx"


def test_budget_pieces():
    assert json_size(12345) >= len("12345")
    assert json_size(-(2**64)) >= len(str(-(2**64)))
    assert json_size("é" * 3) == len(json.dumps("é" * 3, ensure_ascii=False).encode())
    assert json_size([1, "a"]) == len(b'[1,"a"]')
    with pytest.raises(InvocationError) as info:
        json_size(["\udfff"])
    assert info.value.details["reason"] == "not_utf8"
    budget = BatchBudget(max_bytes=10)
    budget.charge(10)
    with pytest.raises(ResultTooLargeError):
        budget.charge(1)
    gone = threading.Event()
    budget = BatchBudget(cancelled=gone.is_set)
    budget.check()
    gone.set()
    with pytest.raises(Cancelled):
        budget.check()
    assert not BatchBudget().expired()
    assert BatchBudget(time_ms=0.0).expired()


def test_a_cancelled_budget_stops_the_batch_between_steps():
    reg = Registry()
    slow = reg.create("lambda", SLOW)
    gone = threading.Event()
    real = reg.compiled(slow.identity)
    ran: list[int] = []

    class Counting:
        """The compiled expression, counting what runs; the client leaves in step one."""

        def invoke_many(self, batch, **kw):
            ran.append(len(batch))
            gone.set()
            return real.invoke_many(batch, **kw)

    reg._cache.put(slow.identity, Counting())  # type: ignore[arg-type]
    with pytest.raises(Cancelled):
        reg.invoke_many(
            [(slow.identity, {"x": 1})] * 500, budget=BatchBudget(cancelled=gone.is_set)
        )
    assert ran == [16]  # one step, then it stopped


# --- depth ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "make"),
    [
        ("POST", "/substrates/{id}/invoke", lambda d: {"parameters": {"x": d}}),
        (
            "POST",
            "/substrates",
            lambda d: {"expression_type": "constant", "expression_code": "2", "metadata": {"m": d}},
        ),
        (
            "POST",
            "/relationships",
            lambda d: {
                "rel_type": "SIBLING",
                "source_id": "{id}",
                "target_id": "{id}",
                "constraints": {"c": d},
            },
        ),
        ("POST", "/substrates/query", lambda d: {"filters": {"metadata.x": d}}),
        ("POST", "/substrates/import", lambda d: {"substrates": [{"x": d}], "relationships": []}),
        (
            "POST",
            "/substrates/batch/invoke",
            lambda d: {"invocations": [{"substrate_id": "{id}", "parameters": {"x": d}}]},
        ),
    ],
)
def test_deep_bodies_are_422_at_any_depth(client, method, path, make):
    sid = _create(client, "lambda **kw: 1")
    for depth in (33, 100, 1000, 100_000):
        deep = b'{"k":' * (depth - 1) + b"1" + b"}" * (depth - 1)
        raw = (
            msgspec.json.encode(make("DEEP"))
            .replace(b'"DEEP"', deep)
            .replace(b"{id}", sid.encode())
        )
        r = client.request(
            method, API + path.replace("{id}", sid), body=raw, content_type="application/json"
        )
        assert r.status == 422, (depth, r)
        err = r.json()
        assert err["error"] == "validation_error"
        assert err["details"]["reason"] == "too_deep"
        assert err["details"]["limit"] == 32


def test_thirty_two_levels_pass_the_depth_check(client):
    sid = _create(client, "lambda **kw: 1")
    # The body object is level 1, parameters level 2: 30 more objects make 32.
    r = client.post(f"{API}/substrates/{sid}/invoke", {"parameters": {"x": _nested(31)}})
    assert r.status == 200, r
    r = client.post(f"{API}/substrates/{sid}/invoke", {"parameters": {"x": _nested(32)}})
    assert r.status == 422
    assert r.json()["details"]["reason"] == "too_deep"


def test_check_depth_alone():
    check_depth(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', 2)
    check_depth(b"", 1)
    with pytest.raises(ValidationError):
        check_depth(b"[" * 3 + b"]" * 3, 2)


# --- the heavy pool ------------------------------------------------------------------------


def test_heavy_pool_admits_threads_plus_queue_then_refuses():
    pool = HeavyPool(threads=2, queue=1)
    for _ in range(3):
        pool.admit()
    with pytest.raises(OverloadedError) as info:
        pool.admit()
    assert info.value.status == 503
    assert info.value.retry_after >= 1
    pool.release()
    pool.admit()
    pool.shutdown()


def test_overloaded_answer_carries_retry_after():
    driver = started(heavy_threads=1, heavy_queue=0)
    try:
        driver.app.heavy.admit()  # the only slot is taken
        r = driver.get(f"{API}/substrates/search", query={"name": "x"})
        assert r.status == 503
        assert r.json()["error"] == "overloaded"
        assert r.headers["retry-after"] == "1"
        # Cheap routes do not go through the pool.
        assert driver.get(f"{API}/health").status == 200
        sid = _create(driver, "3", "constant")
        assert driver.post(f"{API}/substrates/{sid}/invoke", {}).status == 200
        assert driver.get(f"{API}/relationships/stats").status == 200
        driver.app.heavy.release()
        assert driver.get(f"{API}/substrates/search", query={"name": "x"}).status == 200
        assert driver.app.heavy.admitted == 0
    finally:
        finish(driver)


def test_slots_are_given_back_after_errors_and_streams(client):
    heavy = client.app.heavy
    client.post(f"{API}/substrates/batch", {"substrates": [{"expression_type": "nope"}]})
    client.post(f"{API}/substrates/query", {"filters": {"nope": 1}})
    assert client.get(f"{API}/substrates/export").status == 200
    assert client.get(f"{API}/substrates/export", query={"format": "ndjson"}).status == 200
    assert heavy.admitted == 0


# --- the access log --------------------------------------------------------------------------


def test_access_log_lines(tmp_path):
    path = tmp_path / "log"
    with path.open("wb") as f:
        text = AccessLog("text", fd=f.fileno())
        text.write(("10.0.0.1", 5), "GET", "/api/v1/substrates/{id}", 404, 0.0012, 99)
        as_json = AccessLog("json", fd=f.fileno())
        as_json.write(None, "POST", "/api/v1/substrates", 201, 0.5, 300, "key:abc")
    first, second = path.read_text().splitlines()
    assert '10.0.0.1 "GET /api/v1/substrates/{id}" 404 1.200ms 99B -' in first
    record = json.loads(second)
    assert record["route"] == "/api/v1/substrates"
    assert record["status"] == 201
    assert record["duration_ms"] == 500.0
    assert record["bytes"] == 300
    assert record["principal"] == "key:abc"
    assert record["client"] == "-"
    with pytest.raises(ValueError, match="text or json"):
        AccessLog("xml")


def test_access_log_names_the_route_template_not_the_path(capfd):
    driver = started(log_format="json")
    try:
        sid = _create(driver, "4", "constant")
        driver.get(f"{API}/substrates/{sid}")
        driver.get(f"{API}/no/such/route")
    finally:
        finish(driver)
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    routes = [(x["method"], x["route"], x["status"]) for x in lines]
    assert ("POST", "/api/v1/substrates", 201) in routes
    assert ("GET", "/api/v1/substrates/{id}", 200) in routes
    assert ("GET", "-", 404) in routes
    assert all(sid not in x["route"] for x in lines)


def test_access_log_can_be_off(capfd):
    driver = started(access_log=False)
    try:
        driver.get(f"{API}/health")
    finally:
        finish(driver)
    assert "/api/v1/health" not in capfd.readouterr().err


def test_settings_round_trip_through_the_environment():
    s = Settings(
        max_batch_items=7,
        max_answer_bytes=12345,
        batch_time_budget=1.5,
        max_body_depth=9,
        heavy_threads=3,
        heavy_queue=0,
        access_log=False,
        log_format="json",
    )
    assert Settings.from_env(s.to_env()) == s


# --- end to end: real Granian ---------------------------------------------------------------


def _post(port, path, payload, timeout=30.0):
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(
            "POST", API + path, msgspec.json.encode(payload), {"content-type": "application/json"}
        )
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _send_and_leave(port, path, payload):
    """Send a whole request, then close the connection without reading the answer."""
    body = msgspec.json.encode(payload)
    s = socket.create_connection((HOST, port))
    s.sendall(
        f"POST {API}{path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return s


def _invocations(server, sid):
    status, body = server.json("GET", f"{API}/substrates/{sid}")
    assert status == 200
    return body["invocations"]


@pytest.mark.e2e
def test_the_issues_crashing_request_is_refused_and_the_worker_lives(tmp_path):
    server = Server(tmp_path, "--memory")
    try:
        status, body = server.json(
            "POST",
            f"{API}/substrates",
            {"expression_type": "lambda", "expression_code": "lambda: ['a' * 10000] * 104"},
        )
        sid = body["substrate_id"]
        # The issue's request: 4,000 invocations of a ~1 MiB result.
        status, _, raw = _post(
            server.port, "/substrates/batch/invoke", {"invocations": [{"substrate_id": sid}] * 4000}
        )
        assert status == 413
        assert json.loads(raw)["error"] == "too_many_items"
        # Within the item cap, the answer-size bound stops it after ~16 MiB.
        status, _, raw = _post(
            server.port, "/substrates/batch/invoke", {"invocations": [{"substrate_id": sid}] * 1000}
        )
        assert status == 422
        assert json.loads(raw)["error"] == "result_too_large"
        assert server.proc.poll() is None
        assert server.json("GET", f"{API}/health")[0] == 200
    finally:
        server.stop()


@pytest.mark.e2e
@pytest.mark.usefixtures("interface")  # a disconnect is seen through each adapter
def test_overload_is_503_while_cheap_routes_answer_and_departed_work_stops(tmp_path):
    server = Server(
        tmp_path,
        "--memory",
        "--heavy-threads",
        "1",
        "--heavy-queue",
        "1",
        "--batch-time-budget",
        "60",
    )
    sockets = []
    slower = "lambda x: sum([" + ", ".join(["sum([x] * 10000)"] * 100) + "])"  # ~10 ms a call
    try:
        _, body = server.json(
            "POST", f"{API}/substrates", {"expression_type": "lambda", "expression_code": slower}
        )
        slow = body["substrate_id"]
        _, body = server.json(
            "POST",
            f"{API}/substrates",
            {"expression_type": "lambda", "expression_code": slower + " + 1"},
        )
        queued = body["substrate_id"]
        batch = {"invocations": [{"substrate_id": slow, "parameters": {"x": 1}}] * 1000}
        # ~10 s of work takes the only heavy thread; a second request takes the queue.
        sockets.append(_send_and_leave(server.port, "/substrates/batch/invoke", batch))
        time.sleep(0.3)
        sockets.append(
            _send_and_leave(
                server.port,
                "/substrates/batch/invoke",
                {"invocations": [{"substrate_id": queued, "parameters": {"x": 1}}] * 1000},
            )
        )
        time.sleep(0.3)
        # Pool and queue are full: a third heavy request is refused at once.
        status, headers, raw = server.call("GET", f"{API}/substrates/search?name=x")
        assert status == 503, raw
        assert json.loads(raw)["error"] == "overloaded"
        assert headers["retry-after"] == "1"
        # Cheap routes keep answering meanwhile.
        assert server.json("GET", f"{API}/health")[0] == 200
        assert (
            server.json("POST", f"{API}/substrates/{slow}/invoke", {"parameters": {"x": 1}})[0]
            == 200
        )
        # Both clients leave: the running batch stops between steps and the queued one
        # never starts, so the pool is free long before the ~2 x 10 s of work asked for.
        for s in sockets:
            s.close()
        sockets.clear()
        left = time.monotonic()
        while time.monotonic() < left + 8:
            if server.call("GET", f"{API}/substrates/search?name=x")[0] == 200:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the heavy pool stayed busy after both clients left")
        assert _invocations(server, queued) == 0
    finally:
        for s in sockets:
            s.close()
        server.stop()
    log = server.output()
    assert '"POST /api/v1/substrates/batch/invoke" 499' in log, log[-2000:]
    assert '"GET /api/v1/substrates/search" 503' in log


def test_the_access_log_buffer_defaults_to_the_core_s_bound():
    from bfx._core import ACCESS_LOG_HELD_MAX

    assert Settings().access_log_buffer == ACCESS_LOG_HELD_MAX
    assert Settings.from_env({"BFX_ACCESS_LOG_BUFFER": "64K"}).access_log_buffer == 65536


@pytest.mark.e2e
def test_a_log_reader_that_stops_costs_lines_never_requests(tmp_path):
    """stderr is a pipe nobody reads (a stuck log collector, a paused terminal): once it
    is full, every request still answers at once (the core's thread waits, not the
    loop; before, the worker stopped at its next log write), the lines past the buffer
    are dropped, and a notice counts them once the reader is back."""
    server = Server(
        tmp_path, "--memory", "--access-log-buffer", "64K", "--log-format", "json",
        stderr_pipe=True,
    )  # fmt: skip
    assert server.proc.stderr is not None
    requests = 4_000  # some 400 KB of lines: the pipe's 64 KiB and the buffer's, many times
    conn = http.client.HTTPConnection(HOST, server.port, timeout=5)
    try:
        slowest = 0.0
        for _ in range(requests):
            began = time.monotonic()
            conn.request("GET", f"{API}/health")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            slowest = max(slowest, time.monotonic() - began)
        # Generous for a shared machine; a blocked worker never answers at all.
        assert slowest < 3.0, slowest
        # The reader comes back: the lines held, then the notice of the ones dropped.
        os.set_blocking(server.proc.stderr.fileno(), False)
        text = b""
        deadline = time.monotonic() + 30
        while b"dropped_lines" not in text:
            assert time.monotonic() < deadline, text[-500:]
            with contextlib.suppress(BlockingIOError):
                text += server.proc.stderr.read() or b""
            time.sleep(0.05)
    finally:
        conn.close()
        # Keep reading while it stops: its last words must not block its shutdown.
        rest = threading.Thread(target=server.proc.stderr.read, daemon=True)
        os.set_blocking(server.proc.stderr.fileno(), True)
        rest.start()
        server.stop()
        rest.join(10)
        server.proc.stderr.close()
    records = [json.loads(line) for line in text.splitlines() if line.startswith(b"{")]
    dropped = sum(r.get("dropped_lines", 0) for r in records)
    logged = sum(1 for r in records if r.get("route") == "/api/v1/health")
    assert dropped > 0
    assert logged >= 500  # the pipe's and the buffer's worth came through whole
    # One more: the start-up check's own request (the last lines may still be held).
    assert logged + dropped <= requests + 1


@pytest.mark.e2e
def test_access_log_is_on_by_default_and_off_with_the_flag(tmp_path):
    server = Server(tmp_path, "--memory")
    try:
        server.call("GET", f"{API}/health")
    finally:
        server.stop()
    assert '"GET /api/v1/health" 200' in server.output()
    quiet = Server(tmp_path, "--memory", "--no-access-log", port=None)
    try:
        quiet.call("GET", f"{API}/health")
    finally:
        quiet.stop()
    assert "/api/v1/health" not in quiet.output()
    assert os.path.exists(quiet.log)
