"""Middleware: a server span per request (OpenTelemetry; only assembled when tracing is
on, docs/observability.md "Tracing").

The span starts before anything else runs, as the child of the caller's W3C
``traceparent`` when there is one (the propagators of ``OTEL_PROPAGATORS``; default
trace context and baggage), and is the current span while the request runs, so the
child spans of :mod:`bfx.tracing` (sandbox, store, graph) hang under it — in a heavy
pool thread too (the pool runs its job in a copy of the request's context). Named
``{method} {route template}`` once routing has matched (just ``{method}`` when nothing
matched: a raw path would make every name unique), with the HTTP semantic conventions'
attributes. As the conventions say for a server span, a 5xx answer sets the error status
(and ``error.type``); a 4xx is the client's error and leaves it unset. Every error
answer also carries ``bfx.error``, its error code (``not_found``...). A streamed answer's
span ends once its last byte is sent; a departed client's ends with status 499.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode

from bfx.asgi.base import Response
from bfx.asgi.pipeline import Around, Call
from bfx.budget import Cancelled

__all__ = ["tracing"]

_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class _CallHeaders(Getter[Call]):
    """Reads propagation headers through the Call (ASGI and RSGI alike)."""

    def get(self, carrier: Call, key: str) -> list[str] | None:
        value = carrier.header(key.lower().encode("latin-1"))
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: Call) -> list[str]:
        return []  # only named headers are read (traceparent, tracestate, baggage)


_GETTER = _CallHeaders()


class tracing(Around):
    """Opens the request's span in :meth:`enter`, closes it with the answer."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer
        #: Each request in flight: its span and the context token to detach.
        self._open: dict[Call, tuple[Any, object]] = {}

    def enter(self, call: Call) -> None:
        method = call.method if call.method in _METHODS else "_OTHER"
        client = call.client
        attributes = {
            "http.request.method": method,
            "url.path": call.path,
            "url.scheme": "http",
        }
        if client:
            attributes["client.address"] = str(client[0])
        parent = propagate.extract(call, getter=_GETTER)
        span = self.tracer.start_span(
            method if method != "_OTHER" else "HTTP",
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        self._open[call] = (span, token)

    def leave(self, call: Call, resp: Response) -> Response:
        opened = self._open.pop(call, None)
        if opened is None:
            return resp
        span, token = opened
        context.detach(token)
        _name(span, call)
        if resp.status >= 400:
            code = getattr(resp.value, "code", None)
            if code is not None:
                span.set_attribute("bfx.error", code)
        if resp.stream is None:
            _end(span, resp.status)
        else:
            resp.on_sent(lambda status: _end(span, status))
        return resp

    def fail(self, call: Call, exc: BaseException) -> Response | None:
        opened = self._open.pop(call, None)
        if opened is not None:
            span, token = opened
            context.detach(token)
            _name(span, call)
            if isinstance(exc, Cancelled):
                _end(span, 499)  # the client left: not the server's error
            else:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                span.set_attribute("error.type", type(exc).__qualname__)
                span.end()
        return None


def _name(span: Any, call: Call) -> None:
    route = call.route
    if route is not None:
        span.update_name(f"{call.method} {route.path}")
        span.set_attribute("http.route", route.path)


def _end(span: Any, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_attribute("error.type", str(status))
        span.set_status(Status(StatusCode.ERROR))
    span.end()
