"""Middleware: the request counters of ``GET /metrics`` (:class:`~bfx.asgi.metrics.RequestMetrics`).

Every answer is counted by status and time; invocations, creations and divisions are
counted from the typed answer the handler returned (``Response.value``), so no handler
counts anything itself. Each request is recorded under its route template (never the raw
path) and method, for the Prometheus exposition.

With the access log on as well, :func:`bfx.asgi.middleware.assemble` gives the log to
this middleware instead of running its own: one call into the core then records the
request and formats its line (each ``leave`` hook is a Python call, the largest part of
what either costs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bfx import errors
from bfx.api import types as t
from bfx.api.types import InvokeResponse
from bfx.asgi.base import Response
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware.access_log import AccessLog, log_line
from bfx.asgi.pipeline import Around, Call
from bfx.budget import Cancelled

__all__ = ["metrics"]


class metrics(Around):
    """Counts each request once its answer is ready (a streamed answer: once it is sent);
    with ``log``, also writes its access-log line."""

    def __init__(self, counters: RequestMetrics, log: AccessLog | None = None) -> None:
        self.counters = counters
        self.log = log
        # The hook the pipeline calls is the core's own method (a builtin call costs a
        # fraction of a Python function's, and every request makes it). ``leave`` stays
        # Python: its attribute reads are specialized bytecode, several times cheaper
        # than the same reads through the C API from the core (callgrind).
        self.enter = counters.core.begin  # type: ignore[method-assign]

    def enter(self, call: Call) -> None:
        self.counters.core.begin(call)

    def leave(self, call: Call, resp: Response) -> Response:
        counters = self.counters
        route = call.route
        if route is not None:
            count = _COUNTERS.get(route.op.name)
            if count is not None:
                count(counters, resp.status, resp.value)
        if resp.stream is not None:
            self._when_sent(call, resp)
            return resp
        log = self.log
        if log is None:
            counters.core.finish(
                resp.status, call.started, None if route is None else route.path, call.method
            )
            return resp
        call.sent = len(resp.body)
        if counters.core.finish_logged(
            resp.status,
            call.started,
            None if route is None else route.path,
            call.method,
            log.lines,
            call.client,
            call.sent,
            call.principal,
        ):
            log.flush_soon()
        return resp

    def _when_sent(self, call: Call, resp: Response) -> None:
        # Its own function: a lambda in leave() would make ``call`` a closure cell there,
        # built on every request.
        resp.on_sent(lambda status: self._finished(call, status))

    def fail(self, call: Call, exc: BaseException) -> Response | None:
        if isinstance(exc, Cancelled):
            self._finished(call, 499)  # nginx's "client closed request"
        return None

    def _finished(self, call: Call, status: int) -> None:
        route = call.route
        self.counters.core.finish(
            status, call.started, None if route is None else route.path, call.method
        )
        if self.log is not None:
            log_line(self.log, call, status)


def _invoke(c: RequestMetrics, status: int, value: Any) -> None:
    if type(value) is InvokeResponse:  # count_invocations(1, 0, ms), inlined: every invoke
        c.invocations += 1
        c.invocation_ms += value.invocation_time_ms
    elif isinstance(value, errors.InvocationError):
        c.count_invocations(0, 1, 0.0)


def _invoke_many(c: RequestMetrics, status: int, value: Any) -> None:
    if isinstance(value, t.BatchInvokeResult):
        ok = failed = 0
        elapsed = 0.0
        for item in value.results:
            if item.status == 200:
                ok += 1
                elapsed += item.invocation_time_ms or 0.0
            elif item.error is not None and item.error.error == errors.InvocationError.code:
                failed += 1
        c.count_invocations(ok, failed, elapsed)


def _create(c: RequestMetrics, status: int, value: Any) -> None:
    if status == 201:
        c.count_creations(1)
    elif isinstance(value, errors.SandboxError):
        c.count_sandbox_rejections(1)


def _create_many(c: RequestMetrics, status: int, value: Any) -> None:
    if isinstance(value, t.BatchResult):
        created = rejected = 0
        for item in value.results:
            if item.status == 201:
                created += 1
            elif (
                isinstance(item.error, t.ErrorBody) and item.error.error == errors.SandboxError.code
            ):
                rejected += 1
        c.count_creations(created)
        if rejected:
            c.count_sandbox_rejections(rejected)


def _divide(c: RequestMetrics, status: int, value: Any) -> None:
    if status == 200:
        c.count_divisions()


def _revoke_key(c: RequestMetrics, status: int, value: Any) -> None:
    if status == 204:
        c.count_security_event("key_revoked")


def _login(c: RequestMetrics, status: int, value: Any) -> None:
    if status == 401:
        c.count_security_event("login_failed")
    elif status == 429:
        c.count_security_event("login_limited")


_COUNTERS: dict[str, Callable[[RequestMetrics, int, Any], None]] = {
    "invoke": _invoke,
    "invoke_many": _invoke_many,
    "create_substrate": _create,
    "create_substrates": _create_many,
    "divide": _divide,
    "revoke_key": _revoke_key,
    "login": _login,
}
