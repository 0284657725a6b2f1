"""Each middleware of the request pipeline alone: a Call, a stub for the rest of the
pipeline, and what the middleware does before, after or instead of it."""

from __future__ import annotations

import asyncio
import json
import threading

import msgspec
import pytest

from bfx import errors
from bfx.api import types as t
from bfx.api.operations import BY_NAME, Operation
from bfx.asgi.base import Response, encode
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware.access_log import AccessLog, access_log
from bfx.asgi.middleware.body import body
from bfx.asgi.middleware.body_deadline import BodyDeadlines
from bfx.asgi.middleware.cors import Cors, cors
from bfx.asgi.middleware.dispatch import HeavyPool, dispatch
from bfx.asgi.middleware.errors import errors as errors_mw
from bfx.asgi.middleware.freshness import freshness
from bfx.asgi.middleware.metrics import metrics
from bfx.asgi.middleware.routing import routing
from bfx.asgi.pipeline import Call, ClientGone, build
from bfx.asgi.router import Route, Router
from bfx.budget import Cancelled
from bfx.settings import Settings


def _call(method="GET", path="/x", headers=(), body_parts=(b"",), query=b"", route=None):
    parts = list(body_parts)

    async def receive():
        if parts:
            return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}
        await asyncio.sleep(3600)

    call = Call(method, path, query, list(headers), ("10.1.2.3", 1), receive)
    call.route = route
    return call


def _route(name):
    return Route(BY_NAME[name], lambda svc, inp: None)


def _run(handle, call):
    return asyncio.run(handle(call))


async def _ok(call):
    return Response(200, b"{}", value=None)


def _raising(exc):
    async def handle(call):
        raise exc

    return handle


# --- errors ------------------------------------------------------------------------------


def test_errors_maps_exceptions_to_the_documented_shape():
    resp = _run(errors_mw()(_raising(errors.ValidationError("bad", {"field": "x"}))), _call())
    assert resp.status == 422
    assert json.loads(resp.body) == {
        "error": "validation_error",
        "message": "bad",
        "details": {"field": "x"},
    }
    assert isinstance(resp.value, errors.ValidationError)
    resp = _run(errors_mw()(_raising(errors.OverloadedError("busy", retry_after=3))), _call())
    assert (resp.status, resp.headers) == (503, [(b"retry-after", b"3")])
    resp = _run(errors_mw()(_raising(RuntimeError("boom"))), _call())
    assert resp.status == 500
    assert json.loads(resp.body)["error"] == "internal_error"
    assert b"boom" not in resp.body


def test_errors_lets_a_departed_client_through():
    for exc in (ClientGone(), Cancelled(), asyncio.CancelledError()):
        with pytest.raises(type(exc)):
            _run(errors_mw()(_raising(exc)), _call())


# --- CORS ---------------------------------------------------------------------------------


def test_cors_adds_headers_only_for_an_allowed_origin():
    wrap = cors(Cors(["https://app.example"]))
    resp = _run(wrap(_ok), _call(headers=[(b"origin", b"https://app.example")]))
    assert (b"access-control-allow-origin", b"https://app.example") in resp.headers
    resp = _run(wrap(_ok), _call(headers=[(b"origin", b"https://evil.example")]))
    assert not resp.headers
    resp = _run(wrap(_ok), _call())
    assert not resp.headers


def test_cors_answers_a_preflight_with_the_routes_methods():
    async def options(call):
        return Response(204, b"", None, headers=[(b"allow", b"GET, HEAD, OPTIONS")])

    call = _call(
        "OPTIONS",
        headers=[(b"origin", b"https://a.example"), (b"access-control-request-method", b"GET")],
    )
    resp = _run(cors(Cors(["*"]))(options), call)
    headers = dict(resp.headers)
    assert headers[b"access-control-allow-methods"] == b"GET, HEAD, OPTIONS"
    assert headers[b"access-control-allow-origin"] == b"*"


# --- routing ------------------------------------------------------------------------------


def test_routing_finds_the_operation_and_parses_ids():
    router = Router([_route("get_substrate"), _route("shortest_path"), _route("static")])
    seen = {}

    async def rest(call):
        seen["route"] = call.route.op.name
        seen["params"] = call.params
        return Response(200)

    handle = routing(router)(rest)
    _run(handle, _call(path="/api/v1/substrates/0x2a"))
    assert seen == {"route": "get_substrate", "params": (42,)}
    _run(handle, _call(path="/api/v1/relationships/path/1/ff"))
    assert seen["params"] == (1, 255)
    _run(handle, _call(path="/api/v1/static/swagger-ui.css"))
    assert seen["params"] == ("swagger-ui.css",)
    with pytest.raises(errors.UrlIdError):
        _run(handle, _call(path="/api/v1/substrates/nothex"))
    with pytest.raises(errors.NotFoundError):
        _run(handle, _call(path="/api/v1/nowhere"))
    resp = _run(handle, _call("OPTIONS", path="/api/v1/substrates/1"))
    assert resp.status == 204
    assert dict(resp.headers)[b"allow"] == b"GET, HEAD, OPTIONS"


# --- freshness ----------------------------------------------------------------------------


def test_freshness_refreshes_before_the_rest_runs():
    order = []

    class Store:
        check_is_round_trip = False

        def refresh(self):
            order.append("refresh")

    async def rest(call):
        order.append("handler")
        return Response(200)

    _run(freshness(Store())(rest), _call())
    assert order == ["refresh", "handler"]


class _Inline:
    """A store whose check is inline (SQLite's), recording every check among the
    requests' arrivals and handlers."""

    check_is_round_trip = False

    def __init__(self, events):
        self.events = events

    def refresh(self):
        self.events.append(("check", None))


def test_an_inline_check_serves_the_requests_that_started_in_its_pass_and_only_them():
    """One check per pass of the loop, and every request still served by a check made
    after it arrived: those that start together share one; one that arrives after the
    check (queued while the pass runs, as a server hands a request over) gets its own."""
    events = []
    store = _Inline(events)
    mw = freshness(store)
    late = []

    async def rest(call):
        events.append(("handle", call.path))
        if call.path == "/a0":  # arrives while the pass that checked for /a0 runs
            loop = asyncio.get_running_loop()
            loop.call_soon(lambda: late.append(arrive("/late")))
        return Response(200)

    handle = mw(rest)

    def arrive(path):
        events.append(("arrive", path))
        return asyncio.ensure_future(handle(_call(path=path)))

    async def scenario():
        first = [arrive(f"/a{i}") for i in range(5)]  # all start in the next pass
        await asyncio.gather(*first)
        for _ in range(3):
            await asyncio.sleep(0)
        second = [arrive(f"/b{i}") for i in range(3)]
        await asyncio.gather(*second, *late)

    asyncio.run(scenario())
    for path in ["/late"] + [f"/a{i}" for i in range(5)] + [f"/b{i}" for i in range(3)]:
        arrived = events.index(("arrive", path))
        handled = events.index(("handle", path))
        assert ("check", None) in events[arrived:handled], path  # read-your-writes
    assert mw.checks == 3  # /a*, /late, /b*: not one per request
    assert events.count(("check", None)) == 3


def test_an_inline_check_is_not_carried_over_to_another_loop():
    events = []
    mw = freshness(_Inline(events))
    handle = mw(_ok)
    for _ in range(3):  # each run its own loop; the stale-marking callback may never run
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(handle(_call()))
        finally:
            loop.close()
    assert mw.checks == 3


class _RoundTrips:
    """A store whose check is a round trip, held open until the test lets it answer."""

    check_is_round_trip = True

    def __init__(self, fail_first=False):
        self.sent = []  # per check: the requests that had arrived when it was sent
        self.arrived = 0
        self.gates = []
        self.fail_first = fail_first

    def refresh(self):
        self.sent.append(self.arrived)
        gate = threading.Event()
        self.gates.append(gate)
        assert gate.wait(10)
        if self.fail_first and len(self.sent) == 1:
            raise errors.StorageError("could not check the change log", {})


async def _settle(store, checks):
    for _ in range(1000):  # bounded: the thread records its check within milliseconds
        if len(store.gates) >= checks:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"only {len(store.gates)} checks sent, waited for {checks}")


def test_a_round_trip_check_serves_the_requests_that_arrived_before_it_was_sent():
    store = _RoundTrips()
    served = []

    async def rest(call):
        served.append(call.path)
        return Response(200)

    handle = freshness(store)(rest)

    async def scenario():
        def arrive(path):
            store.arrived += 1
            return asyncio.ensure_future(handle(_call(path=path)))

        first = arrive("/a")
        await _settle(store, 1)  # check 1 is in flight, sent when only /a had arrived
        later = [arrive("/b"), arrive("/c")]
        await asyncio.sleep(0.05)
        assert served == []
        store.gates[0].set()
        await first
        assert served == ["/a"]  # /b and /c arrived after check 1 was sent: not served by it
        await _settle(store, 2)
        assert served == ["/a"]
        store.gates[1].set()
        await asyncio.gather(*later)
        assert sorted(served) == ["/a", "/b", "/c"]

    asyncio.run(scenario())
    assert store.sent == [1, 3]  # each check was sent after all the requests it served
    mw = freshness(store)
    assert mw.shared is not None


def test_a_failed_shared_check_fails_the_requests_it_served_and_only_them():
    store = _RoundTrips(fail_first=True)

    async def rest(call):
        return Response(200)

    handle = errors_mw()(freshness(store)(rest))

    async def scenario():
        first = asyncio.ensure_future(handle(_call(path="/a")))
        await _settle(store, 1)
        second = asyncio.ensure_future(handle(_call(path="/b")))
        store.gates[0].set()
        assert (await first).status == 503
        await _settle(store, 2)
        store.gates[1].set()
        assert (await second).status == 200

    asyncio.run(scenario())


def test_the_readiness_probe_skips_the_shared_check():
    store = _RoundTrips()

    async def rest(call):
        return Response(200)

    resp = _run(freshness(store)(rest), _call(route=_route("health_ready")))
    assert resp.status == 200
    assert store.sent == []


# --- body -----------------------------------------------------------------------------------


def _body_handle(**settings):
    seen = {}

    async def rest(call):
        seen["body"] = call.body
        seen["query"] = call.query
        return Response(200)

    return body(Settings(**settings), BodyDeadlines(1.0))(rest), seen


def test_body_decodes_into_the_operations_types():
    handle, seen = _body_handle()
    raw = msgspec.json.encode({"parameters": {"x": 2}})
    _run(handle, _call("POST", body_parts=[raw], route=_route("invoke")))
    assert seen["body"] == t.InvokeRequest(parameters={"x": 2})
    _run(handle, _call(query=b"limit=7&junk=1", route=_route("list_substrates")))
    assert seen["query"].limit == 7


def test_body_refuses_what_it_must_before_the_handler():
    handle, seen = _body_handle(body_limit=64, max_batch_items=2, max_body_depth=3)
    invoke = _route("invoke")
    with pytest.raises(errors.ValidationError) as info:
        _run(
            handle,
            _call("POST", body_parts=[b'{"parameters": {"a": {"b": {"c": 1}}}}'], route=invoke),
        )
    assert info.value.details["reason"] == "too_deep"
    with pytest.raises(errors.BfxError) as info:
        _run(handle, _call("POST", headers=[(b"content-length", b"65")], route=invoke))
    assert info.value.status == 413
    with pytest.raises(errors.UnsupportedMediaTypeError):
        _run(handle, _call("POST", headers=[(b"content-type", b"text/plain")], route=invoke))
    batch = msgspec.json.encode({"invocations": [{"substrate_id": "1"}] * 3})
    handle, seen = _body_handle(max_batch_items=2)
    with pytest.raises(errors.TooManyItemsError):
        _run(handle, _call("POST", body_parts=[batch], route=_route("invoke_many")))
    assert seen == {}


# --- metrics and the access log -------------------------------------------------------------


def test_metrics_count_from_the_typed_answer():
    counters = RequestMetrics()

    async def invoked(call):
        value = t.InvokeResponse(substrate_id="0x1", result=1, invocation_time_ms=2.0)
        return Response(200, encode(value), value=value)

    call = _call(route=_route("invoke"))
    resp = _run(metrics(counters)(invoked), call)
    resp.sent(resp.status)
    failed = _run(
        metrics(counters)(errors_mw()(_raising(errors.InvocationError("x")))),
        _call(route=_route("invoke")),
    )
    failed.sent(failed.status)
    assert (counters.invocations, counters.failed_invocations) == (1, 1)
    assert counters.by_status == {200: 1, 422: 1}
    assert counters.active == 0
    with pytest.raises(ClientGone):
        _run(metrics(counters)(_raising(ClientGone())), _call())
    assert counters.by_status[499] == 1


def test_metrics_with_the_log_count_and_write_each_request_once(tmp_path):
    """The fused hooks (metrics + access log in one call into the core): a plain answer,
    a streamed one (counted and logged once sent, with its bytes), a departed client."""
    counters = RequestMetrics()
    path = tmp_path / "log"
    with path.open("wb") as f:
        log = AccessLog("json", fd=f.fileno())
        wrap = metrics(counters, log)

        async def streamed(call):
            resp = Response(200, b"", value=None)
            resp.stream = iter([b"ab", b"cd"])
            return resp

        plain = _run(wrap(_ok), _call(route=_route("get_substrate")))
        stream_call = _call(route=_route("export"))
        resp = _run(wrap(streamed), stream_call)
        assert counters.active == 1  # open until it is sent
        stream_call.sent = 4
        resp.sent(200)
        with pytest.raises(ClientGone):
            _run(wrap(_raising(ClientGone())), _call(method="BREW"))
        assert log.drain(5.0)  # written by the core's thread: waited for
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["route"], x["status"], x["bytes"]) for x in lines] == [
        ("/api/v1/substrates/{id}", 200, len(plain.body)),
        ("/api/v1/substrates/export", 200, 4),
        ("-", 499, 0),
    ]
    assert lines[2]["method"] == "BREW"
    assert counters.active == 0
    assert counters.by_status == {200: 2, 499: 1}
    cells = counters.cells
    assert sum(cells[("/api/v1/substrates/export", "GET", 200)][:-1]) == 1
    assert sum(cells[(None, "other", 499)][:-1]) == 1


def test_access_log_names_the_route_template(tmp_path):
    path = tmp_path / "log"
    with path.open("wb") as f:
        log = AccessLog("json", fd=f.fileno())
        wrap = access_log(log)
        call = _call(path="/api/v1/substrates/0x2a", route=_route("get_substrate"))
        resp = _run(wrap(_ok), call)
        with pytest.raises(ClientGone):
            _run(wrap(_raising(ClientGone())), _call())
        assert log.drain(5.0)
    first, second = (json.loads(x) for x in path.read_text().splitlines())
    assert (first["route"], first["status"], first["bytes"]) == (
        "/api/v1/substrates/{id}",
        200,
        len(resp.body),
    )
    assert first["client"] == "10.1.2.3"
    assert (second["route"], second["status"]) == ("-", 499)


# --- dispatch -------------------------------------------------------------------------------


def _op(runs, handler):
    return Route(Operation(f"op_{runs}", "GET", f"/{runs}", "", "", None, runs=runs), handler)


def test_dispatch_runs_each_operation_where_it_says():
    where = {}

    def handler(svc, inp):
        assert svc == "services"
        where[threading.current_thread().name] = inp
        return Response(200)

    pool = HeavyPool(threads=1, queue=0)
    handle = dispatch(pool, "services")
    names = []
    for runs in ("loop", "light", "heavy"):
        call = _call(route=_op(runs, handler))
        assert _run(handle, call).status == 200
        names.append(next(k for k, v in where.items() if v is call))
    assert names[0] == "MainThread"
    assert names[2].startswith("bfx-heavy")
    assert names[1] not in ("MainThread", names[2])
    assert pool.admitted == 0
    pool.admit()
    with pytest.raises(errors.OverloadedError):
        _run(handle, _call(route=_op("heavy", handler)))
    pool.release()
    pool.shutdown()


def test_other_writes_go_through_the_engines_write_runner_or_run_on_the_loop():
    """``store`` operations run through ``store_write`` (the engine's write thread over
    a durable store); without one (in memory) on the loop, like ``loop`` ones."""
    where = []
    ran = []

    def handler(svc, inp):
        where.append(threading.current_thread().name)
        return Response(204)

    async def store_write(fn, *args):
        ran.append(fn)
        return await asyncio.to_thread(fn, *args)

    pool = HeavyPool(threads=1, queue=0)
    try:
        call = _call(route=_op("store", handler))
        assert _run(dispatch(pool, None, store_write), call).status == 204
        assert _run(dispatch(pool, None), _call(route=_op("store", handler))).status == 204
    finally:
        pool.shutdown()
    assert ran == [handler]
    assert where[0] != threading.main_thread().name
    assert where[1] == threading.main_thread().name


def test_a_single_create_is_awaited_on_the_loop():
    """A ``write`` operation's handler is a coroutine awaited on the event loop (its
    commit, shared with the creates of the same pass, is what it waits for)."""
    where = []

    async def handler(svc, inp):
        where.append(threading.current_thread().name)
        await asyncio.sleep(0)
        return Response(201)

    route = Route(BY_NAME["create_substrate"], handler)
    assert route.runs == "write"
    pool = HeavyPool(threads=1, queue=0)
    try:
        assert _run(dispatch(pool, None), _call(route=route)).status == 201
    finally:
        pool.shutdown()
    assert where == [threading.main_thread().name]


@pytest.mark.parametrize("auth", ["off", "required"])
def test_a_single_create_takes_the_freshness_step_only_with_auth_on(auth):
    """A create catches up inside its write; with auth on it still takes the step, so
    that a key revoked through another process is refused before it writes."""
    refreshed = []

    class Store:
        check_is_round_trip = False

        def refresh(self):
            refreshed.append(True)

    async def rest(call):
        return Response(201)

    handle = freshness(Store(), creates_too=auth == "required")(rest)
    create = Route(BY_NAME["create_substrate"], lambda svc, inp: None)
    relate = Route(BY_NAME["create_relationship"], lambda svc, inp: None)
    for route in (create, relate):
        assert _run(handle, _call(method="POST", route=route)).status == 201
    assert len(refreshed) == (2 if auth == "required" else 0)
    _run(handle, _call(route=_route("get_substrate")))  # a read always takes it
    assert len(refreshed) == (3 if auth == "required" else 1)


def test_dispatch_pulls_a_streams_first_chunk_and_holds_the_slot_until_sent():
    pool = HeavyPool(threads=1, queue=0)

    def handler(svc, inp):
        return Response(200, stream=iter([b"a", b"b"]))

    resp = _run(dispatch(pool, None), _call(route=_op("heavy", handler)))
    assert resp.first == b"a"
    assert pool.admitted == 1
    resp.sent(200)
    assert pool.admitted == 0
    pool.shutdown()


def test_the_pipeline_runs_outermost_first():
    order = []

    def tag(name):
        def wrap(next_):
            async def handle(call):
                order.append(name)
                return await next_(call)

            return handle

        return wrap

    _run(build([tag("a"), tag("b")], _ok), _call())
    assert order == ["a", "b"]
