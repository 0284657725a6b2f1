"""Tracing (docs/observability.md "Tracing"): the tracing middleware alone, then a real
``bfx serve`` (over RSGI and over ASGI) exporting to an OTLP/HTTP receiver in this
process that decodes the real wire format (``ExportTraceServiceRequest`` protobuf).

Needs the ``otel`` extra; without it these tests skip saying so, and
``BFX_REQUIRE_OTEL=1`` (.ci/run) turns that skip into a failure."""

from __future__ import annotations

import asyncio
import http.server
import os
import secrets
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bfx.asgi.base import Response
from bfx.asgi.pipeline import Call

try:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode

    from bfx.asgi.middleware.tracing import tracing

    MISSING = None
except ImportError as exc:  # the otel extra is not installed
    MISSING = str(exc)

from bfx_server import HOST, Server

API = "/api/v1"
WAIT = 20.0  # seconds for a worker's batch of spans to reach the receiver


def _require_otel() -> None:
    if MISSING is not None:
        why = f"the otel extra is not installed (pip install 'bfx[otel]'): {MISSING}"
        if os.environ.get("BFX_REQUIRE_OTEL") == "1":
            pytest.fail(f"required here (BFX_REQUIRE_OTEL=1): {why}")
        pytest.skip(why)


@pytest.fixture(autouse=True)
def _otel_extra() -> None:
    _require_otel()


# ---- the middleware alone ------------------------------------------------------------


def _provider() -> tuple[Any, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _call(headers: list[tuple[bytes, bytes]] = ()) -> Call:  # type: ignore[assignment]
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    return Call("GET", "/api/v1/substrates/7", b"", list(headers), ("10.1.2.3", 1), receive)


def _routed(status: int, value: Any = None, child: Any = None):
    """A stub for the rest of the pipeline: routes the call, runs ``child`` (under the
    request's context), answers ``status``."""

    async def handle(call: Call) -> Response:
        call.route = SimpleNamespace(path="/api/v1/substrates/{id}")
        if child is not None:
            child()
        return Response(status, b"{}", value=value)

    return handle


def test_the_request_span_is_named_by_route_and_carries_the_http_attributes() -> None:
    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    seen = []
    handle = tracing(tracer)(
        _routed(200, child=lambda: seen.append(tracer.start_span("inner").get_span_context()))
    )
    resp = asyncio.run(handle(_call()))
    assert resp.status == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /api/v1/substrates/{id}"
    assert span.kind is SpanKind.SERVER
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.route"] == "/api/v1/substrates/{id}"
    assert span.attributes["url.path"] == "/api/v1/substrates/7"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["client.address"] == "10.1.2.3"
    assert span.status.status_code is StatusCode.UNSET
    assert span.parent is None  # no traceparent: a new trace
    # While the rest ran, the request span was the current one.
    assert seen[0].trace_id == span.context.trace_id


def test_a_traceparent_makes_the_request_span_its_child() -> None:
    provider, exporter = _provider()
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    header = f"00-{trace_id}-{parent_id}-01".encode()
    handle = tracing(provider.get_tracer("test"))(_routed(200))
    asyncio.run(handle(_call([(b"traceparent", header)])))
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_id == int(trace_id, 16)
    assert span.parent is not None
    assert span.parent.span_id == int(parent_id, 16)
    assert span.parent.is_remote


def test_a_malformed_traceparent_starts_a_new_trace() -> None:
    provider, exporter = _provider()
    handle = tracing(provider.get_tracer("test"))(_routed(200))
    asyncio.run(handle(_call([(b"traceparent", b"00-zz-not-a-trace-01")])))
    (span,) = exporter.get_finished_spans()
    assert span.parent is None


def test_5xx_sets_the_error_status_and_4xx_leaves_it_to_the_client() -> None:
    from bfx import errors

    provider, exporter = _provider()
    tracer = provider.get_tracer("test")
    overloaded = errors.OverloadedError("busy", {}, retry_after=1)
    asyncio.run(tracing(tracer)(_routed(503, value=overloaded))(_call()))
    missing = errors.NotFoundError("no such substrate", {})
    asyncio.run(tracing(tracer)(_routed(404, value=missing))(_call()))
    server_error, client_error = exporter.get_finished_spans()
    assert server_error.status.status_code is StatusCode.ERROR
    assert server_error.attributes["error.type"] == "503"
    assert server_error.attributes["bfx.error"] == "overloaded"
    assert client_error.status.status_code is StatusCode.UNSET
    assert "error.type" not in client_error.attributes
    assert client_error.attributes["bfx.error"] == "not_found"
    assert client_error.attributes["http.response.status_code"] == 404


def test_an_exception_nobody_answered_ends_the_span_as_an_error() -> None:
    provider, exporter = _provider()

    async def boom(call: Call) -> Response:
        raise RuntimeError("kaput")

    with pytest.raises(RuntimeError):
        asyncio.run(tracing(provider.get_tracer("test"))(boom)(_call()))
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET"  # nothing was routed
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in span.events] == ["exception"]


def test_a_departed_client_ends_the_span_with_499() -> None:
    from bfx.asgi.pipeline import ClientGone

    provider, exporter = _provider()

    async def gone(call: Call) -> Response:
        raise ClientGone

    with pytest.raises(ClientGone):
        asyncio.run(tracing(provider.get_tracer("test"))(gone)(_call()))
    (span,) = exporter.get_finished_spans()
    assert span.attributes["http.response.status_code"] == 499
    assert span.status.status_code is StatusCode.UNSET


def test_a_streamed_answer_ends_its_span_once_sent() -> None:
    provider, exporter = _provider()

    async def stream(call: Call) -> Response:
        return Response(200, stream=iter([b"a"]))

    resp = asyncio.run(tracing(provider.get_tracer("test"))(stream)(_call()))
    assert exporter.get_finished_spans() == ()
    resp.sent(200)
    (span,) = exporter.get_finished_spans()
    assert span.attributes["http.response.status_code"] == 200


def test_off_the_child_spans_are_one_shared_no_op() -> None:
    from bfx import tracing as bfx_tracing

    assert bfx_tracing.tracer is None
    first, second = bfx_tracing.span("a"), bfx_tracing.span("b")
    assert first is second
    with first as traced:
        assert traced is None


def test_store_writes_on_sqlite_and_a_batch_invoke_are_spans(tmp_path: Path) -> None:
    from bfx import Registry
    from bfx import tracing as bfx_tracing

    provider, exporter = _provider()
    bfx_tracing.install(provider.get_tracer("test"))
    try:
        with Registry(storage=str(tmp_path / "data")) as reg:
            sid = reg.create("lambda", "lambda x: x + 1").substrate_id
            reg.update(sid, {"k": 1})
            answers = reg.invoke_many([(sid, {"x": 1}), (sid, {"x": 2})])
            assert [a.result for a in answers] == [2, 3]
            reg.delete(sid)
    finally:
        bfx_tracing.install(None)
    spans = exporter.get_finished_spans()
    writes = [s for s in spans if s.name == "bfx.store.write"]
    assert [(w.attributes["bfx.store.op"], w.attributes["db.system"]) for w in writes] == [
        ("insert_substrates", "sqlite"),
        ("update_metadata", "sqlite"),
        ("delete_substrate", "sqlite"),
    ]
    (batch,) = [s for s in spans if s.name == "bfx.sandbox.evaluate"]
    assert batch.attributes["bfx.invocations"] == 2


def test_a_write_handed_to_the_thread_is_not_a_failed_span(tmp_path: Path) -> None:
    """A group the loop cannot write without waiting (another process holds SQLite's
    write lock) goes to the write thread: the loop's attempt ends as handed over, its
    status unset, and the thread's write is a span of its own."""
    import sqlite3

    from opentelemetry.trace import StatusCode

    from bfx import Registry
    from bfx import tracing as bfx_tracing
    from bfx.rows import SubstrateRow

    provider, exporter = _provider()
    bfx_tracing.install(provider.get_tracer("test"))
    reg = Registry(storage=str(tmp_path / "data"))
    other = sqlite3.connect(tmp_path / "data" / "bfx.db", isolation_level=None)
    try:
        engine = reg.engine
        code = "lambda x: x + 3"
        rows = [SubstrateRow(None, "lambda", code, code, b"{}", 1)]
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        assert engine._write_now(engine.insert_substrates, rows) is None
        other.execute("ROLLBACK")
        (written,) = engine.insert_substrates(rows)  # what the write thread then does
        assert written in reg
    finally:
        other.close()
        reg.close()
        bfx_tracing.install(None)
    handed, done = [s for s in exporter.get_finished_spans() if s.name == "bfx.store.write"]
    assert handed.attributes["bfx.store.handed_over"] is True
    assert handed.status.status_code == StatusCode.UNSET
    assert not handed.events  # no exception recorded
    assert "bfx.store.handed_over" not in done.attributes
    assert done.status.status_code == StatusCode.UNSET


def test_without_an_endpoint_the_app_does_not_assemble_tracing() -> None:
    from bfx.asgi import App, Settings

    app = App(Settings(storage="memory", access_log=False))
    app.startup()
    try:
        assert app._tracer is None
    finally:
        app.shutdown()


# ---- an OTLP/HTTP receiver -----------------------------------------------------------


class Receiver:
    """``POST /v1/traces`` on loopback, decoded as the OTLP protobuf: each span kept as a
    plain record (ids in hex, attributes as Python values, its resource's too)."""

    def __init__(self) -> None:
        self.spans: list[SimpleNamespace] = []
        self.requests = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                ok = (
                    self.path == "/v1/traces"
                    and self.headers.get("content-type") == "application/x-protobuf"
                )
                if ok:
                    receiver._take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString() if ok else b""
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _take(self, request: Any) -> None:
        records = []
        for resource_spans in request.resource_spans:
            resource = _attributes(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    records.append(
                        SimpleNamespace(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            status=s.status.code,
                            attributes=_attributes(s.attributes),
                            events=[e.name for e in s.events],
                            resource=resource,
                        )
                    )
        with self.lock:
            self.requests += 1
            self.spans += records

    def trace(self, trace_id: str, until: Any) -> list[SimpleNamespace]:
        """The spans of ``trace_id`` once ``until(spans)`` holds (bounded by WAIT)."""
        deadline = time.monotonic() + WAIT
        while True:
            with self.lock:
                found = [s for s in self.spans if s.trace_id == trace_id]
            if until(found) or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _attributes(pairs: Any) -> dict[str, Any]:
    out = {}
    for kv in pairs:
        which = kv.value.WhichOneof("value")
        out[kv.key] = getattr(kv.value, which) if which else None
    return out


@pytest.fixture(scope="module")
def receiver():
    _require_otel()  # a module fixture: set up before the autouse one
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def server(interface, receiver, tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # a standard variable, honoured
        env.delenv("OTEL_SERVICE_NAME", raising=False)
        env.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
        srv = Server(tmp_path_factory.mktemp(f"trace-{interface}"), "--memory")
    yield srv
    srv.stop()


def _traced(server: Server, method: str, path: str, body: bytes | None = None):
    """Sends one request under a fresh remote parent: (status, answer, trace id, parent
    span id)."""
    import msgspec

    trace_id, parent = secrets.token_hex(16), secrets.token_hex(8)
    headers = {"traceparent": f"00-{trace_id}-{parent}-01"}
    if body is not None:
        headers["content-type"] = "application/json"
    status, _, data = server.call(method, f"{API}{path}", body, headers)
    return status, (msgspec.json.decode(data) if data else None), trace_id, parent


def _request_span(spans: list[SimpleNamespace], parent: str) -> SimpleNamespace:
    (span,) = [s for s in spans if s.parent_id == parent]
    return span


def _has(*names: str):
    return lambda spans: all(any(s.name == n for s in spans) for n in names)


def _with_request(parent: str, *names: str):
    """Until the request's own span (the child of the remote ``parent``) has arrived
    too: a child ends first, and the batch exporter may send it a batch before the
    request's span."""
    has = _has(*names)
    return lambda spans: has(spans) and any(s.parent_id == parent for s in spans)


def _ancestors(span: SimpleNamespace, spans: list[SimpleNamespace]) -> list[str]:
    by_id = {s.span_id: s for s in spans}
    chain = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        chain.append(span.span_id)
    return chain


e2e = pytest.mark.e2e


@e2e
def test_a_request_span_arrives_as_the_child_of_its_traceparent(server, receiver) -> None:
    status, _, trace_id, parent = _traced(server, "GET", "/health")
    assert status == 200
    spans = receiver.trace(trace_id, _has("GET /api/v1/health"))
    span = _request_span(spans, parent)
    assert span.name == "GET /api/v1/health"
    assert span.kind == 2  # SPAN_KIND_SERVER
    assert span.resource["service.name"] == "bfx"
    assert span.attributes["http.request.method"] == "GET"
    assert span.attributes["http.route"] == "/api/v1/health"
    assert span.attributes["http.response.status_code"] == 200
    assert span.status == 0  # unset


@e2e
def test_a_create_has_a_store_write_and_a_compile_child(server, receiver) -> None:
    import msgspec

    body = msgspec.json.encode({"expression_type": "lambda", "expression_code": "lambda x: x + 1"})
    status, _, trace_id, parent = _traced(server, "POST", "/substrates", body)
    assert status == 201
    spans = receiver.trace(
        trace_id, _with_request(parent, "bfx.store.write", "bfx.sandbox.compile")
    )
    request = _request_span(spans, parent)
    assert request.name == "POST /api/v1/substrates"
    (write,) = [s for s in spans if s.name == "bfx.store.write"]
    assert write.parent_id == request.span_id
    assert write.attributes["bfx.store.op"] == "insert_substrates"
    assert write.attributes["bfx.store.rows"] == 1
    (compile_,) = [s for s in spans if s.name == "bfx.sandbox.compile"]
    assert compile_.parent_id == request.span_id
    assert compile_.attributes["bfx.sandbox.stage"] == "analyze"


@e2e
def test_an_invoke_has_evaluate_and_compile_children(server, receiver) -> None:
    import msgspec

    body = msgspec.json.encode({"expression_type": "lambda", "expression_code": "lambda y: y * 7"})
    status, created, _, _ = _traced(server, "POST", "/substrates", body)
    assert status == 201
    sid = created["substrate_id"]
    params = msgspec.json.encode({"parameters": {"y": 6}})
    # The first call of a new substrate builds its function: compile, then evaluate.
    status, answer, trace_id, parent = _traced(server, "POST", f"/substrates/{sid}/invoke", params)
    assert (status, answer["result"]) == (200, 42)
    spans = receiver.trace(
        trace_id, _with_request(parent, "bfx.sandbox.evaluate", "bfx.sandbox.compile")
    )
    request = _request_span(spans, parent)
    assert request.name == "POST /api/v1/substrates/{id}/invoke"
    (evaluate,) = [s for s in spans if s.name == "bfx.sandbox.evaluate"]
    assert evaluate.parent_id == request.span_id
    assert evaluate.attributes["bfx.substrate.id"] == sid
    (build,) = [s for s in spans if s.name == "bfx.sandbox.compile"]
    assert build.attributes["bfx.sandbox.stage"] == "build"
    assert request.span_id in _ancestors(build, spans)
    # A second call: the function is built, only the evaluation.
    _, _, trace_id, parent = _traced(server, "POST", f"/substrates/{sid}/invoke", params)
    spans = receiver.trace(trace_id, _with_request(parent, "bfx.sandbox.evaluate"))
    assert sorted(s.name for s in spans) == [
        "POST /api/v1/substrates/{id}/invoke",
        "bfx.sandbox.evaluate",
    ]


@e2e
def test_a_failed_invocation_marks_its_evaluation_failed(server, receiver) -> None:
    import msgspec

    body = msgspec.json.encode({"expression_type": "lambda", "expression_code": "lambda z: 1 / z"})
    _, created, _, _ = _traced(server, "POST", "/substrates", body)
    params = msgspec.json.encode({"parameters": {"z": 0}})
    status, answer, trace_id, parent = _traced(
        server, "POST", f"/substrates/{created['substrate_id']}/invoke", params
    )
    assert (status, answer["error"]) == (422, "invocation_error")
    spans = receiver.trace(trace_id, _with_request(parent, "bfx.sandbox.evaluate"))
    request = _request_span(spans, parent)
    assert request.attributes["http.response.status_code"] == 422
    assert request.attributes["bfx.error"] == "invocation_error"
    assert request.status == 0  # a 4xx is the client's: unset on a server span
    (evaluate,) = [s for s in spans if s.name == "bfx.sandbox.evaluate"]
    assert evaluate.status == 2  # STATUS_CODE_ERROR
    assert "exception" in evaluate.events


@e2e
def test_an_unknown_substrate_answers_404_with_its_error_code(server, receiver) -> None:
    status, answer, trace_id, parent = _traced(server, "GET", "/substrates/1")
    assert (status, answer["error"]) == (404, "not_found")
    spans = receiver.trace(trace_id, lambda found: len(found) >= 1)
    span = _request_span(spans, parent)
    assert span.name == "GET /api/v1/substrates/{id}"
    assert span.attributes["http.response.status_code"] == 404
    assert span.attributes["bfx.error"] == "not_found"


@e2e
def test_an_unmatched_path_is_named_by_its_method_alone(server, receiver) -> None:
    status, _, trace_id, parent = _traced(server, "GET", "/no/such/route/42")
    assert status == 404
    spans = receiver.trace(trace_id, lambda found: len(found) >= 1)
    span = _request_span(spans, parent)
    assert span.name == "GET"
    assert "http.route" not in span.attributes


@e2e
def test_a_graph_algorithm_in_the_heavy_pool_is_a_child_of_its_request(server, receiver) -> None:
    status, _, trace_id, parent = _traced(server, "GET", "/relationships/pagerank?limit=5")
    assert status == 200
    spans = receiver.trace(trace_id, _with_request(parent, "bfx.graph.pagerank"))
    request = _request_span(spans, parent)
    assert request.name == "GET /api/v1/relationships/pagerank"
    (algo,) = [s for s in spans if s.name == "bfx.graph.pagerank"]
    assert algo.parent_id == request.span_id  # run on a pool thread, still parented


@e2e
def test_every_answer_is_exported_once(server, receiver) -> None:
    ids = [_traced(server, "GET", "/health")[2] for _ in range(20)]
    for trace_id in ids:
        spans = receiver.trace(trace_id, lambda found: len(found) >= 1)
        assert [s.name for s in spans] == ["GET /api/v1/health"]


@e2e
def test_a_stopping_worker_flushes_its_queued_spans(interface, receiver, tmp_path) -> None:
    # A batch delay of a minute: the span can only arrive through the flush at shutdown.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        env.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")
        srv = Server(tmp_path, "--memory")
    try:
        _, _, trace_id, parent = _traced(srv, "GET", "/health")
        time.sleep(0.5)
        assert receiver.trace(trace_id, lambda found: True) == []
    finally:
        srv.stop()
    spans = receiver.trace(trace_id, lambda found: len(found) >= 1)
    assert _request_span(spans, parent).name == "GET /api/v1/health"


# ---- asked for, but the extra is missing -----------------------------------------------


@pytest.mark.e2e
def test_without_the_extra_serve_says_tracing_is_off_and_serves(tmp_path: Path) -> None:
    # A package named opentelemetry without the SDK stands first on the path: the
    # extra's modules cannot be imported, as on an install without bfx[otel].
    shadow = tmp_path / "shadow" / "opentelemetry"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("")
    path = os.pathsep.join(
        [
            str(shadow.parent),
            *[os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p],
        ]
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYTHONPATH", path)
        env.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        srv = Server(tmp_path, "--memory")
    try:
        assert srv.call("GET", f"{API}/health")[0] == 200
        out = srv.output()
        assert "OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing is off" in out
        assert "bfx[otel]" in out
    finally:
        srv.stop()
