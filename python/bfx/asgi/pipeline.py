"""The request pipeline: a :class:`Call` passes through an ordered list of middleware down
to the endpoint, which runs the operation's handler.

A middleware takes one of three shapes: an :class:`Around` (hooks before the rest, after
it and on what it raises: access log, metrics, CORS, errors), a :class:`Before` (a step
that only acts before the rest: routing, freshness, reading the body), or, for anything
else, a plain factory ``wrap(next_) -> handle`` returning an ``async def handle(call)``.
Each cross-cutting concern is one of these in ``bfx.asgi.middleware``, testable alone
with a stub ``next_`` (every shape is also a wrap factory); the list is built once per
app, and a concern that is switched off (no CORS origins, no access log) is left out of
it. :func:`build` runs a run of Around hooks and Before steps in one coroutine, and the
endpoint answers cheap operations without one of its own: every layer of ``await`` costs
about as much as a small step, and every GET runs through the whole list.

Handlers sit below all of it: ``handler(services, inp) -> answer`` takes the service
interface (:mod:`bfx.services`) and an :class:`Input` — decoded path ids, query and body
— and returns a typed answer (an ``api.types`` Struct, None for 204, or a
:class:`~bfx.asgi.base.Response` for streams and headers). It never sees the app.

A protocol adapter builds the :class:`Call` and sends the :class:`~bfx.asgi.base.Response`:
``bfx.asgi.app`` speaks ASGI, ``bfx.asgi.rsgi`` Granian's RSGI. What middleware needs of the
protocol goes through the Call — :meth:`Call.header`, :meth:`Call.read_body`,
:meth:`Call.disconnected` — whose ASGI versions are here and which the RSGI call overrides.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Sequence
from time import perf_counter
from typing import Any

from bfx.asgi.base import Response
from bfx.asgi.errors import BodyTooLargeError
from bfx.budget import Cancelled

__all__ = ["Around", "Before", "Call", "ClientGone", "Handle", "Input", "Middleware", "build"]


class ClientGone(Cancelled):
    """The client disconnected before it could be answered (logged as status 499).

    A :class:`~bfx.budget.Cancelled`: work stopped for a departed client (a batch, a
    queued job) and a disconnect seen while reading are the same event to the pipeline."""


class Input:
    """What a handler receives: the request's decoded parts, nothing of the app."""

    __slots__ = (
        "body",
        "caller",
        "cancelled",
        "client",
        "content_type",
        "headers",
        "params",
        "query",
        "raw",
    )

    def __init__(self) -> None:
        #: Path parameters in template order: ids (``{id}``, ``{rid}``, ``{src}``,
        #: ``{dst}``) parsed to ints, others as text.
        self.params: tuple[Any, ...] = ()
        #: The query string decoded into the operation's query type, or None.
        self.query: Any = None
        #: The body decoded into the operation's body type, or None.
        self.body: Any = None
        #: The raw body (for operations that read bytes, such as import).
        self.raw = b""
        self.content_type: bytes | None = None
        #: Set when the client has gone away (heavy operations; None elsewhere).
        self.cancelled: threading.Event | None = None
        #: The peer as the server gives it (``(host, port)``), or None.
        self.client: Any = None
        #: The authenticated principal (``bfx.security.auth.Principal``), or None when
        #: the operation is public or authentication is off.
        self.caller: Any = None
        #: The request's headers, names lower-case (content negotiation: ``Accept``).
        self.headers: list[tuple[bytes, bytes]] = []

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_text(self, name: str) -> str | None:
        """A header as text (Latin-1), or None: the cheapest lookup for a header read
        on every request (the API key), since RSGI hands headers over as text. An
        unreadable value may read as None here; :meth:`header` is the strict one."""
        value = self.header(name.encode())
        return None if value is None else value.decode("latin-1")


class Call(Input):
    """One request on its way through the pipeline (built by the protocol adapter).

    It is the handler's :class:`Input` too (one object per request, not two): a handler
    is typed to see only the Input part."""

    #: What the awaitable of :meth:`read_body` raises when the client has gone, besides
    #: :class:`ClientGone` itself (the reader turns these into ClientGone).
    gone: tuple[type[BaseException], ...] = ()

    __slots__ = (
        "method",
        "path",
        "principal",
        "query_string",
        "receive",
        "route",
        "sent",
        "started",
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
        self.params = ()
        self.query = None
        self.body = None
        self.raw = b""
        self.content_type = None
        self.cancelled = None
        self.caller = None
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers
        self.client = client
        #: ASGI's receive: body messages, then the disconnect (read through
        #: :meth:`read_body` and :meth:`disconnected`, which another protocol overrides).
        self.receive = receive
        #: The matched route (``bfx.asgi.router.Route``), once routing has run.
        self.route: Any = None
        #: Who is calling: ``-`` until authentication names them.
        self.principal = "-"
        #: Body bytes sent, filled in by the adapter (for the access log).
        self.sent = 0
        #: When the request began (``perf_counter``), for the metrics and the access log.
        self.started = perf_counter()

    def body_headers(self) -> tuple[bytes | None, bytes | None]:
        """The Content-Type and Content-Length sent (the first of each, as
        :meth:`header` reads them), each None if absent: one call for the two headers
        every body read needs."""
        ctype = length = None
        for key, value in self.headers:
            if key == b"content-type":
                if ctype is None:
                    ctype = value
            elif key == b"content-length" and length is None:
                length = value
        return ctype, length

    async def read_body(self, limit: int, declared: bytes | None) -> bytes:
        """The whole body, at most ``limit`` bytes (413 past it); ``declared`` is the
        Content-Length sent, if any. Awaiting it raises :class:`ClientGone`, or one of
        :attr:`gone`, if the client left. A protocol may override it with a plain
        method returning its own future: one coroutine fewer for the request to resume
        through."""
        receive = self.receive
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        chunk = msg.get("body", b"")
        # Granian sends the body, then an empty closing message; waiting for that one
        # costs a second wake-up from the server thread. When the declared length has
        # arrived there is nothing left to wait for.
        if not msg.get("more_body") or (
            declared is not None and declared.isdigit() and len(chunk) == int(declared)
        ):
            if len(chunk) > limit:
                raise BodyTooLargeError(limit)
            return chunk  # type: ignore[no-any-return]
        chunks = [chunk]
        size = len(chunk)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise ClientGone
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError(limit)
            chunks.append(chunk)
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def disconnected(self) -> None:
        """Returns once the client has gone (called after the body is read, so the next
        message an ASGI server delivers is ``http.disconnect``)."""
        receive = self.receive
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return


Handle = Callable[[Call], Awaitable[Response]]


class Around:
    """A concern around the rest of the pipeline, as hooks: :meth:`enter` before it,
    :meth:`leave` with its answer, :meth:`fail` with what it raised (return an answer to
    stand for it, or None to let it go on out). Override only the hooks you need: the
    others are never called."""

    def enter(self, call: Call) -> None:
        pass

    def leave(self, call: Call, resp: Response) -> Response:
        return resp

    def fail(self, call: Call, exc: BaseException) -> Response | None:
        return None

    def __call__(self, next_: Handle) -> Handle:
        """As a wrap factory on its own (what :func:`build` fuses away)."""
        return _fused((self,), (), next_)


class Before:
    """A concern that acts only before the rest of the pipeline: :meth:`step` inspects
    or fills in the call and raises to refuse it; it returns None, an awaitable to wait
    for first (such as reading the body), or a :class:`Response` that answers instead of
    the rest."""

    def step(self, call: Call) -> Awaitable[None] | Response | None:
        raise NotImplementedError

    def __call__(self, next_: Handle) -> Handle:
        """As a wrap factory on its own (what :func:`build` fuses away)."""
        return _fused((), (self,), next_)


Middleware = Callable[[Handle], Handle] | Around | Before


def build(middleware: Sequence[Middleware], endpoint: Handle) -> Handle:
    """The pipeline: ``middleware[0]`` outermost, ``endpoint`` innermost.

    A run of :class:`Around` concerns followed by :class:`Before` steps becomes one
    coroutine; a plain ``wrap`` factory stands between runs."""
    handle = endpoint
    items = list(middleware)
    while items:
        end = len(items)
        start = end
        while start > 0 and isinstance(items[start - 1], Before):
            start -= 1
        steps = tuple(items[start:end])
        first = start
        while first > 0 and isinstance(items[first - 1], Around):
            first -= 1
        arounds = tuple(items[first:start])
        if arounds or steps:
            handle = _fused(arounds, steps, handle)  # type: ignore[arg-type]
            del items[first:]
        else:
            handle = items.pop()(handle)  # type: ignore[operator]
    return handle


def _overrides(around: Around, hook: str) -> bool:
    return getattr(type(around), hook) is not getattr(Around, hook)


def _fused(arounds: tuple[Around, ...], steps: tuple[Before, ...], next_: Handle) -> Handle:
    enters = tuple(a.enter for a in arounds if _overrides(a, "enter"))
    # After the rest, innermost first: the answer an inner concern gives is what the
    # outer ones see.
    inner_first = arounds[::-1]
    leaves = tuple(a.leave for a in inner_first if _overrides(a, "leave"))
    bound = tuple(step.step for step in steps)
    # The endpoint may answer without a coroutine of its own (cheap operations).
    sync = getattr(next_, "sync", None)

    async def handle(call: Call) -> Response:
        try:
            for enter in enters:
                enter(call)
            for step in bound:
                result = step(call)
                if result is not None:
                    if type(result) is Response:
                        resp = result
                        break
                    await result  # type: ignore[misc]
            else:
                resp = None
                if sync is not None:
                    resp = sync(call)
                if resp is None:
                    resp = await next_(call)
        except BaseException as exc:
            return _failed(inner_first, call, exc)
        for leave in leaves:
            resp = leave(call, resp)
        return resp

    return handle


def _failed(inner_first: tuple[Around, ...], call: Call, exc: BaseException) -> Response:
    """Hands the exception out through the arounds, innermost first, until one answers
    for it; the ones outside that one then see the answer. Nobody answering: re-raise."""
    resp: Response | None = None
    for around in inner_first:
        resp = around.fail(call, exc) if resp is None else around.leave(call, resp)
    if resp is None:
        raise exc
    return resp
