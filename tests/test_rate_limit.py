"""Rate limits in process: the rate grammar and settings, the middleware alone with a stub
for the rest, the whole app through the ASGI driver (costs, batches, headers, metrics),
and the limiter against a real Redis (shared by two limiters, down, stalled).

The real server across two workers is tests/test_e2e_rate_limit.py."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest

from asgi_driver import finish, started
from bfx import errors
from bfx.api.operations import BY_NAME, OPERATIONS
from bfx.asgi.base import Response
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware import assemble
from bfx.asgi.middleware.body_deadline import BodyDeadlines
from bfx.asgi.middleware.rate_limit import cost_of, rate_limit, who
from bfx.asgi.pipeline import Call
from bfx.asgi.router import Route, Router
from bfx.ratelimit import STORAGE_TIMEOUT, Limiter, parse_rate, parse_rate_storage
from bfx.settings import Settings
from bfx.storage.memory import MemoryStore

P = "/api/v1"


def _call(name, client=("10.1.2.3", 5555), principal="-", body=None):
    async def receive():
        return {"type": "http.disconnect"}

    call = Call("GET", "/x", b"", [], client, receive)
    call.route = Route(BY_NAME[name], lambda svc, inp: None)
    call.principal = principal
    call.body = body
    return call


def _stub(status=200, exc=None):
    seen = []

    async def next_(call):
        seen.append(call)
        if exc is not None:
            raise exc
        return Response(status, b"{}")

    return next_, seen


def _limit_headers(resp):
    return {k: v for k, v in resp.headers or () if k.startswith(b"ratelimit-")}


# --- grammar and settings ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["600/minute", "10/second", "5000 per hour", "100/5minutes"])
def test_rates_that_parse(text):
    assert parse_rate(f" {text} ") == text


@pytest.mark.parametrize("text", ["", "fast", "0/minute", "10/fortnight", "1/second;5/minute"])
def test_rates_that_do_not(text):
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)


def test_storage_is_memory_or_redis():
    assert parse_rate_storage("Memory") == "memory"
    assert parse_rate_storage("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    with pytest.raises(ValueError, match="memory or a redis"):
        parse_rate_storage("memcached://127.0.0.1")


def test_settings_read_and_write_the_rate_limit_variables():
    env = {"BFX_RATE_LIMIT": "10/second", "BFX_RATE_LIMIT_STORAGE": "redis://127.0.0.1:1/0"}
    s = Settings.from_env({**env, "BFX_STORAGE": "memory"})
    assert (s.rate_limit, s.rate_limit_storage) == ("10/second", "redis://127.0.0.1:1/0")
    assert Settings.from_env(s.to_env()) == s
    off = Settings.from_env({"BFX_STORAGE": "memory"})
    assert (off.rate_limit, off.rate_limit_storage) == ("", "memory")
    assert Settings.from_env(off.to_env()) == off
    with pytest.raises(ValueError, match="rate"):
        Settings.from_env({"BFX_RATE_LIMIT": "lots", "BFX_STORAGE": "memory"})


def _chain(settings):
    return assemble(
        settings,
        router=Router({}),
        store=MemoryStore(),
        counters=RequestMetrics(),
        deadlines=BodyDeadlines(1.0),
    )


def test_the_limiter_is_left_out_unless_a_rate_is_set():
    assert not any(isinstance(m, rate_limit) for m in _chain(Settings()))
    chain = _chain(Settings(rate_limit="5/minute"))
    # Last: after the body is decoded, so a batch's cost is known.
    assert isinstance(chain[-1], rate_limit)
    assert sum(isinstance(m, rate_limit) for m in chain) == 1


# --- the middleware alone ----------------------------------------------------------------


def test_callers_are_counted_by_principal_else_by_address():
    assert who(_call("get_substrate")) == ("bfx", "address", "10.1.2.3")
    assert who(_call("get_substrate", principal="key:k1")) == ("bfx", "principal", "key:k1")
    assert who(_call("get_substrate", client=None)) == ("bfx", "address", "unknown")


def test_cost_is_the_operations_cost_times_a_batchs_items():
    class Batch:
        def __init__(self, n):
            self.substrates = [object()] * n

    assert cost_of(_call("get_substrate")) == 1
    assert cost_of(_call("pagerank")) == BY_NAME["pagerank"].cost == 100
    assert cost_of(_call("create_substrates", body=Batch(7))) == 7
    assert cost_of(_call("create_substrates", body=Batch(0))) == 1


def test_answers_carry_the_headers_and_the_limit_is_then_refused():
    async def run():
        counters = RequestMetrics()
        next_, seen = _stub()
        handle = rate_limit(Limiter("3/minute"), counters)(next_)
        answers = [await handle(_call("get_substrate")) for _ in range(4)]
        reached = len(seen)
        # Another caller has its own limit.
        other = await handle(_call("get_substrate", client=("10.9.9.9", 1)))
        return counters, reached, answers, other

    counters, reached, answers, other = asyncio.run(run())
    assert [r.status for r in answers] == [200, 200, 200, 429]
    assert reached == 3  # the refused one never reached the rest
    remaining = [_limit_headers(r)[b"ratelimit-remaining"] for r in answers]
    assert remaining == [b"2", b"1", b"0", b"0"]
    for r in answers:
        h = _limit_headers(r)
        assert h[b"ratelimit-limit"] == b"3"
        assert 0 < int(h[b"ratelimit-reset"]) <= 60
    refused = answers[-1]
    assert 1 <= int(dict(refused.headers)[b"retry-after"]) <= 60
    body = json.loads(refused.body)
    assert body["error"] == "rate_limited"
    assert body["details"]["limit"] == 3
    assert body["details"]["cost"] == 1
    assert isinstance(refused.value, errors.RateLimitedError)
    assert other.status == 200
    assert counters.snapshot()["security_events"]["rate_limited"] == 1


def test_errors_below_it_carry_the_headers_too():
    async def run():
        next_, _ = _stub(exc=errors.NotFoundError("no such substrate"))
        return await rate_limit(Limiter("3/minute"), RequestMetrics())(next_)(
            _call("get_substrate")
        )

    resp = asyncio.run(run())
    assert resp.status == 404
    assert json.loads(resp.body)["error"] == "not_found"
    assert _limit_headers(resp)[b"ratelimit-remaining"] == b"2"


def test_public_operations_are_not_limited():
    public = [op.name for op in OPERATIONS if op.scope is None]
    assert "health" in public

    async def run():
        next_, seen = _stub()
        handle = rate_limit(Limiter("1/minute"), RequestMetrics())(next_)
        return [await handle(_call(name)) for name in public * 3], seen

    answers, seen = asyncio.run(run())
    assert len(seen) == len(answers)
    assert [r.status for r in answers] == [200] * len(answers)
    assert all(r.headers is None for r in answers)


def test_a_request_costing_more_than_the_whole_limit_is_refused_with_the_reason():
    async def run():
        next_, seen = _stub()
        return await rate_limit(Limiter("50/minute"), RequestMetrics())(next_)(
            _call("pagerank")
        ), seen

    resp, seen = asyncio.run(run())
    assert resp.status == 429
    assert not seen
    details = json.loads(resp.body)["details"]
    assert details["reason"] == "cost_exceeds_limit"
    assert (details["cost"], details["limit"], details["remaining"]) == (100, 50, 50)


def test_browsers_may_read_the_rate_limit_headers():
    from bfx.asgi.middleware.cors import Cors

    exposed = dict(Cors(["*"]).simple(b"https://app.example"))[b"access-control-expose-headers"]
    names = {n.strip() for n in exposed.split(b",")}
    assert {b"retry-after", b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset"} <= names


# --- the whole app, in process -------------------------------------------------------------


def _create(driver, i):
    return driver.post(
        f"{P}/substrates",
        json={"expression_type": "lambda", "expression_code": f"lambda x: x + {i}"},
    )


def test_a_batch_of_k_items_consumes_k():
    driver = started(rate_limit="10/minute")
    try:
        items = [
            {"expression_type": "lambda", "expression_code": f"lambda x: x * {i}"} for i in range(4)
        ]
        r = driver.post(f"{P}/substrates/batch", json={"substrates": items})
        assert r.status in (200, 201, 207), r
        assert r.headers["ratelimit-remaining"] == "6"
        r = driver.post(f"{P}/substrates/batch", json={"substrates": items + items[:3]})
        assert r.status == 429  # 7 > 6 left
        assert r.json()["details"]["cost"] == 7
        assert r.headers["ratelimit-remaining"] == "6"  # a refusal spends nothing
        r = driver.post(f"{P}/substrates/batch", json={"substrates": items[:2]})
        assert r.status in (200, 201, 207), r
        assert r.headers["ratelimit-remaining"] == "4"
    finally:
        finish(driver)


def test_graph_algorithms_cost_what_the_table_says():
    driver = started(rate_limit="150/minute")
    try:
        r = driver.get(f"{P}/relationships/pagerank")
        assert r.status == 200, r
        assert r.headers["ratelimit-remaining"] == "50"
        r = driver.get(f"{P}/relationships/pagerank")
        assert r.status == 429
        assert r.json()["details"]["cost"] == 100
        r = driver.get(f"{P}/relationships/cycles")
        assert r.status == 200, r
        assert r.headers["ratelimit-remaining"] == "0"
    finally:
        finish(driver)


def test_the_app_limits_clients_and_counts_the_429s():
    driver = started(rate_limit="3/minute")
    try:
        statuses = [_create(driver, i).status for i in range(5)]
        assert statuses == [201, 201, 201, 429, 429]
        r = driver.get(f"{P}/health")
        assert r.status == 200
        assert "ratelimit-limit" not in r.headers
        snap = driver.app.metrics.snapshot()
        assert snap["security_events"]["rate_limited"] == 2
        # Refused before the body check: malformed bodies are not charged (no headers).
        r = driver.post(f"{P}/substrates", body=b"{", content_type="application/json")
        assert r.status == 400
        assert "ratelimit-limit" not in r.headers
    finally:
        finish(driver)


def test_no_limit_no_headers():
    driver = started()
    try:
        r = _create(driver, 1)
        assert r.status == 201
        assert not any(k.startswith("ratelimit") for k in r.headers)
        assert driver.get(f"{P}/metrics").json()["security_events"]["rate_limited"] == 0
    finally:
        finish(driver)


# --- Redis -------------------------------------------------------------------------------


def test_two_limiters_sharing_redis_admit_exactly_the_limit(redis_url):
    async def run():
        # Two limiters stand for two workers; 80 concurrent charges of 1 against 25.
        # What is tested is exactness, not speed: 80 charges at once on a busy machine
        # may wait on Redis longer than a request would.
        a, b = (Limiter("25/minute", redis_url, timeout=30.0) for _ in range(2))
        key = ("bfx", "address", "10.0.0.1")
        decisions = await asyncio.gather(*(lim.charge(key, 1) for lim in [a, b] * 40))
        batch = await a.charge(("bfx", "address", "10.0.0.2"), 20)
        after = await b.charge(("bfx", "address", "10.0.0.2"), 6)
        await a.aclose()
        await b.aclose()
        return decisions, batch, after

    decisions, batch, after = asyncio.run(run())
    assert sum(d.allowed for d in decisions) == 25
    assert min(d.remaining for d in decisions) == 0
    assert batch.allowed
    assert batch.remaining == 5
    assert not after.allowed  # 6 > 5 left, counted across both


def test_redis_down_is_a_503_at_once_and_never_a_pass():
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def run():
        counters = RequestMetrics()
        next_, seen = _stub()
        limiter = Limiter("5/minute", f"redis://127.0.0.1:{port}/0")
        resp = await rate_limit(limiter, counters)(next_)(_call("get_substrate"))
        await limiter.aclose()
        return resp, seen, counters

    resp, seen, counters = asyncio.run(run())
    assert resp.status == 503
    assert not seen
    assert json.loads(resp.body)["error"] == "rate_limit_unavailable"
    assert dict(resp.headers)[b"retry-after"] == b"1"
    assert counters.snapshot()["security_events"]["rate_limit_unavailable"] == 1


def test_a_stalled_redis_costs_a_request_the_timeout_not_a_hang():
    # A loopback listener that accepts and never answers: a Redis stuck, not down.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:

        async def run():
            next_, seen = _stub()
            limiter = Limiter("5/minute", f"redis://127.0.0.1:{port}/0")
            handle = rate_limit(limiter, RequestMetrics())(next_)
            t0 = time.monotonic()
            first = await handle(_call("get_substrate"))
            t1 = time.monotonic()
            second = await handle(_call("get_substrate"))  # within the cool-down
            t2 = time.monotonic()
            await limiter.aclose()
            return first, second, t1 - t0, t2 - t1, seen

        first, second, slow, fast, seen = asyncio.run(run())
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()
    assert (first.status, second.status) == (503, 503)
    assert not seen
    assert STORAGE_TIMEOUT * 0.8 <= slow < STORAGE_TIMEOUT + 1.0
    assert fast < 0.1


# --- the documented cost table --------------------------------------------------------------


def cost_table() -> str:
    """The cost table of docs/security.md, rendered from the operation table."""
    rows = ["| operation | route | cost |", "|---|---|---:|"]
    for op in OPERATIONS:
        if op.scope is None:
            continue
        cost = f"{op.cost} per item of `{op.items}`" if op.items else str(op.cost)
        rows.append(f"| `{op.name}` | `{op.method} {op.path}` | {cost} |")
    return "\n".join(rows)


def test_the_documented_cost_table_is_the_operation_tables():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "security.md").read_text()
    assert cost_table() in doc, "docs/security.md: paste the output of cost_table()"
