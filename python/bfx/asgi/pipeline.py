"""The request pipeline: a :class:`Call` passes through an ordered list of middleware down
to the endpoint, which runs the operation's handler.

A middleware is either a factory ``wrap(next_) -> handle``, which given the rest of the
pipeline returns an ``async def handle(call) -> Response`` that may act before, after or
instead of it, or a :class:`Before` — a concern that only acts before the rest (routing,
freshness, reading the body). Each cross-cutting concern is one of these in
``bfx.asgi.middleware`` (errors, access log, metrics, CORS, routing, freshness, body,
admission), testable alone with a stub ``next_``; the list is built once per app, and a
concern that is switched off (no CORS origins, no access log) is simply left out of it.
Consecutive :class:`Before` steps share one coroutine: every layer of ``await`` costs
about as much as a small step itself, and a GET runs through the whole list.

Handlers sit below all of it: ``handler(services, inp) -> answer`` takes the service
interface (:mod:`bfx.services`) and an :class:`Input` — decoded path ids, query and body
— and returns a typed answer (an ``api.types`` Struct, None for 204, or a
:class:`~bfx.asgi.base.Response` for streams and headers). It never sees the app.

The protocol adapter (``bfx.asgi.app``: ASGI) builds the :class:`Call` and sends the
:class:`~bfx.asgi.base.Response`; another interface (Granian's RSGI) could drive the same
pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bfx.asgi.base import Response

__all__ = ["Before", "Call", "ClientGone", "Handle", "Input", "Middleware", "build"]


class ClientGone(Exception):
    """The client disconnected before it could be answered (logged as status 499)."""


class Input:
    """What a handler receives: the request's decoded parts, nothing of the app."""

    __slots__ = ("body", "cancelled", "content_type", "params", "query", "raw")

    def __init__(self) -> None:
        #: Path parameters in template order: ids (``{id}``, ``{rid}``, ``{src}``,
        #: ``{dst}``) parsed to ints, others as text.
        self.params: list[Any] = []
        #: The query string decoded into the operation's query type, or None.
        self.query: Any = None
        #: The body decoded into the operation's body type, or None.
        self.body: Any = None
        #: The raw body (for operations that read bytes, such as import).
        self.raw = b""
        self.content_type: bytes | None = None
        #: Set when the client has gone away (heavy operations; None elsewhere).
        self.cancelled: threading.Event | None = None


class Call(Input):
    """One request on its way through the pipeline (built by the protocol adapter).

    It is the handler's :class:`Input` too (one object per request, not two): a handler
    is typed to see only the Input part."""

    __slots__ = (
        "client",
        "headers",
        "method",
        "path",
        "principal",
        "query_string",
        "receive",
        "route",
        "sent",
    )

    def __init__(
        self,
        method: str,
        path: str,
        query_string: bytes,
        headers: list[tuple[bytes, bytes]],
        client: Any,
        receive: Callable[[], Awaitable[dict[str, Any]]],
    ) -> None:
        # Input's fields, set here rather than through a second __init__ call.
        self.params = []
        self.query = None
        self.body = None
        self.raw = b""
        self.content_type = None
        self.cancelled = None
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.client = client
        #: The protocol's receive: body messages, then the disconnect.
        self.receive = receive
        #: The matched route (``bfx.asgi.router.Route``), once routing has run.
        self.route: Any = None
        #: Who is calling: ``-`` until authentication names them.
        self.principal = "-"
        #: Body bytes sent, filled in by the adapter (for the access log).
        self.sent = 0

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


Handle = Callable[[Call], Awaitable[Response]]


class Before:
    """A concern that acts only before the rest of the pipeline: :meth:`step` inspects
    or fills in the call and raises to refuse it; it returns None, an awaitable to wait
    for first (such as reading the body), or a :class:`Response` that answers instead of
    the rest."""

    def step(self, call: Call) -> Awaitable[None] | Response | None:
        raise NotImplementedError

    def __call__(self, next_: Handle) -> Handle:
        """As a wrap factory on its own (what :func:`build` fuses away)."""
        return _fused((self,), next_)


Middleware = Callable[[Handle], Handle] | Before


def build(middleware: Sequence[Middleware], endpoint: Handle) -> Handle:
    """The pipeline: ``middleware[0]`` outermost, ``endpoint`` innermost."""
    handle = endpoint
    run: list[Before] = []
    for item in reversed(middleware):
        if isinstance(item, Before):
            run.insert(0, item)
            continue
        if run:
            handle, run = _fused(tuple(run), handle), []
        handle = item(handle)
    if run:
        handle = _fused(tuple(run), handle)
    return handle


def _fused(steps: tuple[Before, ...], next_: Handle) -> Handle:
    bound = tuple(step.step for step in steps)

    async def handle(call: Call) -> Response:
        for step in bound:
            result = step(call)
            if result is not None:
                if type(result) is Response:
                    return result
                await result  # type: ignore[misc]
        return await next_(call)

    return handle
