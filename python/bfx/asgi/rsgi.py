"""The RSGI protocol adapter: Granian's own interface driving the same pipeline as the
ASGI app (:mod:`bfx.asgi.app`), which ``bfx serve`` uses by default.

RSGI hands the app a scope object and a protocol object instead of ASGI's message dicts:
the body is read with one ``await protocol()`` (or chunk by chunk), the answer goes out
with one ``protocol.response_bytes(...)`` and a disconnect is awaited with
``protocol.client_disconnect()``. :class:`RsgiCall` puts those behind the
:class:`~bfx.asgi.pipeline.Call` methods the middleware uses (``header``, ``read_body``,
``disconnected``), so every limit, deadline, error and header is the ASGI app's.

Lifespan: Granian calls ``__rsgi_init__`` in each worker before it serves and
``__rsgi_del__`` after it stops (the loop is not running then; the live streams are
ended there, ``App.stop``).

WebSockets (``scope.proto == "ws"``) go through the same pipeline as a GET; an accepted
stream is pumped with ``protocol.accept()``'s transport, and a refusal is
``protocol.close(status)`` before accepting, which Granian sends as that bare HTTP
status (no body or headers: RSGI has no way to send them with a refused handshake).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from time import perf_counter
from typing import Any

from granian._granian import RSGIHTTPProtocol
from granian.rsgi import ProtocolClosed

from bfx.asgi.app import App
from bfx.asgi.app import create_app as create_asgi_app
from bfx.asgi.base import JSON, Puller, Response
from bfx.asgi.errors import BodyTooLargeError
from bfx.asgi.live import send_bounded
from bfx.asgi.pipeline import Call, ClientGone
from bfx.budget import Cancelled
from bfx.settings import Settings

__all__ = ["RsgiApp", "RsgiCall", "create_app"]

# RSGI takes headers as text; a plain JSON answer (nearly all of them) reuses one list.
_JSON_ONLY = [("content-type", JSON.decode())]
_NONE: list[tuple[str, str]] = []
_UNREADABLE = b"\xff"


class RsgiCall(Call):
    """A :class:`Call` over an RSGI scope and protocol.

    The header map and the peer are read from Granian's scope only when something asks
    for them: each read there builds a new Python object (about 250 ns for the headers,
    350 ns for the peer and its split, measured inside a Granian request on the project's
    machine), and a GET with authentication and the access log off reads neither."""

    __slots__ = ("_header_map", "_peer", "_query_string", "proto", "scope")

    def __init__(self, scope: Any, proto: Any) -> None:
        # Every field set here, not through Call.__init__: this runs for every request.
        self.params = ()
        self.query = None
        self.body = None
        self.raw = b""
        self.content_type = None
        self.cancelled = None
        self.caller = None
        self.method = scope.method
        self.path = scope.path
        self._query_string: str | None = None
        self.scope = scope
        self._header_map: Any = None
        self._peer: tuple[str, str] | None = None
        self.receive = None  # type: ignore[assignment]
        self.proto = proto
        self.route = None
        self.principal = "-"
        self.sent = 0
        self.started = perf_counter()

    @property  # type: ignore[override]
    def client(self) -> tuple[str, str]:
        """``(host, port)`` as ASGI gives it, split from Granian's ``host:port`` once."""
        peer = self._peer
        if peer is None:
            host, _, port = self.scope.client.rpartition(":")
            peer = self._peer = (host, port)
        return peer

    @property  # type: ignore[override]
    def query_string(self) -> str:
        """Text (RSGI's), which ``decode_query`` takes as it is; read from the scope
        only by a route that has a query (or a query credential)."""
        query = self._query_string
        if query is None:
            query = self._query_string = self.scope.query_string
        return query

    @property  # type: ignore[override]
    def headers(self) -> Any:
        """Granian's header map (text keys and values), read from the scope once."""
        headers = self._header_map
        if headers is None:
            headers = self._header_map = self.scope.headers
        return headers

    def header_text(self, name: str) -> str | None:
        return self.headers.get(name)  # type: ignore[no-any-return]

    def body_headers(self) -> tuple[bytes | None, bytes | None]:
        headers = self.headers
        ctype = headers.get("content-type")
        length = headers.get("content-length")
        return (
            (_UNREADABLE if "content-type" in headers else None)
            if ctype is None
            else ctype.encode(),
            (_UNREADABLE if "content-length" in headers else None)
            if length is None
            else length.encode(),
        )

    def header(self, name: bytes) -> bytes | None:
        headers = self.headers
        key = name.decode("latin-1")
        value = headers.get(key)
        if value is None:
            # Granian's get() leaves out a value that is not UTF-8 but keeps its name:
            # stand in a byte no check accepts, so it is refused as under ASGI (415,
            # 401), never taken for an absent header.
            return _UNREADABLE if key in headers else None
        return value.encode()  # type: ignore[no-any-return]

    #: Granian's error for a client that left mid-body.
    gone = (ProtocolClosed,)

    def read_body(self, limit: int, declared: bytes | None) -> Awaitable[bytes]:
        if declared is not None and declared.isdigit() and int(declared) <= limit:
            # Granian reads a declared body up to its length and no further: its own
            # future, awaited for all of it. A client that leaves before it is complete
            # closes it (ProtocolClosed: ``gone``).
            return self.proto()  # type: ignore[no-any-return]
        return self._chunks(limit)

    async def _chunks(self, limit: int) -> bytes:
        """No length declared (chunked): count the chunks as they come."""
        proto = self.proto
        chunks = []
        size = 0
        try:
            async for chunk in proto:
                size += len(chunk)
                if size > limit:
                    raise BodyTooLargeError(limit)
                chunks.append(chunk)
        except ProtocolClosed:
            raise ClientGone from None
        return b"".join(chunks)

    async def disconnected(self) -> None:
        await self.proto.client_disconnect()


def _headers(resp: Response) -> list[tuple[str, str]]:
    ctype = resp.content_type
    if resp.headers is None:
        if ctype == JSON:
            return _JSON_ONLY
        if ctype is None:
            return _NONE
    out = [] if ctype is None else [("content-type", ctype.decode("latin-1"))]
    for name, value in resp.headers or ():
        out.append((name.decode("latin-1"), value.decode("latin-1")))
    return out


class RsgiApp:
    """The RSGI face of an :class:`~bfx.asgi.app.App`: its pipeline, its lifespan."""

    def __init__(self, app: App) -> None:
        self.app = app

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # The loop is not running yet: timers (the metrics' copy) are scheduled on it.
        self.app.startup(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.app.stop())

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        # Granian's HTTP protocol by its type: ``scope.proto`` builds a new string.
        if type(proto) is not RSGIHTTPProtocol and scope.proto == "ws":
            await self._websocket(scope, proto)
            return
        app = self.app
        pipeline = app._pipeline
        if pipeline is None:  # a server that skipped __rsgi_init__
            app.startup()
            pipeline = app._pipeline
            assert pipeline is not None
        call = RsgiCall(scope, proto)
        try:
            resp = await pipeline(call)
        except Cancelled:
            return  # the client left: counted and logged as 499; nobody to answer
        status = 499  # what the middleware learns if sending fails: the client left
        try:
            if resp.astream is not None:
                await _send_live(resp, call, proto)
            elif resp.stream is not None:
                await _send_stream(resp, call, proto)
            else:
                call.sent = len(resp.body)
                # Granian adds the Content-Length, and leaves the body out for HEAD.
                proto.response_bytes(resp.status, _headers(resp), resp.body)
            status = resp.status
        except ProtocolClosed:
            pass  # the client left mid-stream: 499
        finally:
            if resp._after is not None:  # someone waits for the answer to be out
                resp.sent(status)

    async def _websocket(self, scope: Any, proto: Any) -> None:
        app = self.app
        pipeline = app._pipeline
        if pipeline is None:
            app.startup()
            pipeline = app._pipeline
            assert pipeline is not None
        call = RsgiCall(scope, proto)
        try:
            resp = await pipeline(call)
        except Cancelled:
            return
        status = 499
        reader: asyncio.Future[None] | None = None
        try:
            if resp.websocket and resp.astream is not None:
                transport = await proto.accept()
                reader = asyncio.ensure_future(_client_closed(transport))
                await _pump_websocket(resp, transport, reader)
            else:
                # Before accept, the status is the handshake's HTTP answer.
                proto.close(resp.status)
            status = resp.status
        except ProtocolClosed:
            pass  # the client left: 499
        finally:
            if resp.astream is not None:
                await resp.astream.aclose()
            if reader is not None:
                with contextlib.suppress(ProtocolClosed):
                    proto.close(1000)  # a close frame (Granian sends it without a code)
                # The pending receive ends with the close; cancelling it instead can cut
                # the connection before the close frame is out.
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(reader, 1.0)
            if resp._after is not None:
                resp.sent(status)


async def _client_closed(transport: Any) -> None:
    with contextlib.suppress(ProtocolClosed):
        while True:
            msg = await transport.receive()
            if msg.kind == 0:  # WebsocketMessageType.close; other messages are ignored
                return


async def _pump_websocket(resp: Response, transport: Any, reader: asyncio.Future[None]) -> None:
    """Sends the stream's texts until it ends or the client closes (a bounded send)."""
    assert resp.astream is not None
    async for text in resp.astream:
        if reader.done():
            return
        if not await send_bounded(transport.send_str(text)):
            return


async def _send_live(resp: Response, call: RsgiCall, proto: Any) -> None:
    """A live stream (SSE): each chunk as it comes, each send bounded in time."""
    astream = resp.astream
    assert astream is not None
    try:
        transport = proto.response_stream(resp.status, _headers(resp))
        if call.method != "HEAD":
            async for chunk in astream:
                if not await send_bounded(transport.send_bytes(chunk)):
                    return  # not reading: dropped
                call.sent += len(chunk)
    finally:
        await astream.aclose()


async def _send_stream(resp: Response, call: RsgiCall, proto: Any) -> None:
    stream = resp.stream
    assert stream is not None
    if resp.content_type is None:
        resp.content_type = JSON
    transport = proto.response_stream(resp.status, _headers(resp))
    puller = Puller(stream, call.disconnected())
    try:
        chunk = resp.first
        while chunk and call.method != "HEAD":
            await transport.send_bytes(chunk)
            call.sent += len(chunk)
            chunk = await puller.next()
    finally:
        puller.close()


def create_app(settings: Settings | None = None) -> RsgiApp:
    """The factory Granian calls in each worker for ``--interface rsgi``."""
    return RsgiApp(create_asgi_app(settings))
