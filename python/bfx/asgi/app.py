"""The ASGI application: lifespan, routing, body handling, errors, CORS, metrics.

Handlers are plain functions ``(Request) -> Response``. Cheap ones (get, create, invoke
take microseconds) run on the event loop: a thread hop would cost more than the call.
Routes flagged ``offload`` (batches, search, export, import, stats) run in a worker
thread so one big request does not stall every other connection.

Granian imports :func:`create_app` as a factory in every worker process; settings come
from the environment (:class:`~bfx.settings.Settings`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from time import perf_counter
from typing import Any

import msgspec

from bfx.asgi import handlers, records
from bfx.asgi.access_log import AccessLog
from bfx.asgi.admission import HeavyPool, check_depth, check_items, next_chunk, watch_disconnect
from bfx.asgi.base import JSON, Request, Response, encode
from bfx.asgi.body_deadline import BodyDeadlines, BodyTimeoutError
from bfx.asgi.cors import Cors
from bfx.asgi.errors import (
    BodyTooLargeError,
    MalformedJsonError,
    MethodNotAllowedError,
    RouteNotFoundError,
    UnsupportedMediaTypeError,
    error_body,
    field_error,
)
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.router import Route, Router, allowed
from bfx.budget import Cancelled
from bfx.errors import OverloadedError
from bfx.settings import Settings

__all__ = ["App", "create_app"]

log = logging.getLogger("bfx.asgi")


#: Seconds a thread may hold the GIL while another waits (CPython's default is 5 ms).
WORKER_SWITCH_INTERVAL = 0.001

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class _ClientGone(Exception):
    """The client disconnected before its body was read: nobody to answer."""


def _decoders(routes: list[Route]) -> dict[int, msgspec.json.Decoder[Any]]:
    # One decoder per request type, built once: decoding is schema-driven and cached.
    by_type: dict[Any, msgspec.json.Decoder[Any]] = {}
    out = {}
    for r in routes:
        if r.body is not None and r.body is not bytes:
            dec = by_type.get(r.body)
            if dec is None:
                dec = by_type[r.body] = msgspec.json.Decoder(r.body)
            out[id(r)] = dec
    return out


_JSON_SUFFIX = b"+json"


def _media_type(value: bytes) -> bytes:
    if value == JSON:  # by far the most common: skip the parsing
        return JSON
    return value.split(b";", 1)[0].strip().lower()


class App:
    def __init__(
        self,
        settings: Settings | None = None,
        registry_factory: Callable[[Settings], Any] | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self._registry_factory = registry_factory or Settings.open_registry
        self.registry: Any = None
        self.router = Router(handlers.bind())
        self._decoder = _decoders(self.router.routes)
        self.cors = Cors(self.settings.cors_origins)
        self.metrics = RequestMetrics()
        self.openapi_bytes: bytes | None = None
        self.static_cache: dict[str, bytes] = {}
        self._limits = {
            "body_limit": self.settings.body_limit,
            "import_body_limit": self.settings.import_body_limit,
        }
        self.heavy = HeavyPool(self.settings.heavy_threads, self.settings.heavy_queue)
        self._body_deadlines = BodyDeadlines(self.settings.body_timeout)
        self.access_log = AccessLog(self.settings.log_format) if self.settings.access_log else None

    # -- lifespan ------------------------------------------------------------------------

    def startup(self) -> None:
        if self.registry is None:
            self.registry = self._registry_factory(self.settings)

    def shutdown(self) -> None:
        self.heavy.shutdown()
        reg, self.registry = self.registry, None
        if reg is not None:
            reg.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            kind = msg["type"]
            if kind == "lifespan.startup":
                try:
                    self.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await self._body_deadlines.close()
                try:
                    self.shutdown()
                except Exception as exc:
                    log.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests --------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            # No websocket routes: refuse the handshake.
            await receive()
            await send({"type": "websocket.close", "code": 1003})

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = perf_counter()
        metrics = self.metrics
        metrics.active += 1
        status = 500
        exchange = _Exchange()
        try:
            status = await self._respond(scope, receive, send, exchange)
        except _ClientGone:
            status = 499  # nginx's "client closed request": counted, never sent
        finally:
            metrics.active -= 1
            end = perf_counter()
            metrics.record(status, end - start, end)
            if self.access_log is not None:
                self.access_log.write(
                    scope.get("client"),
                    scope["method"],
                    exchange.route,
                    status,
                    end - start,
                    exchange.sent,
                )

    async def _respond(
        self, scope: Scope, receive: Receive, send: Send, exchange: _Exchange
    ) -> int:
        method: str = scope["method"]
        origin = None
        if self.cors.enabled:
            origin = _header(scope, b"origin")
        extra: list[tuple[bytes, bytes]] | None = None
        admitted = False
        try:
            if method == "OPTIONS":
                return await self._options(scope, origin, send)
            route, params = self.router.match(method, scope["path"])
            exchange.route = route.path
            if self.registry is None:  # a server that skipped lifespan
                self.startup()
            # Other workers' and nodes' writes, before this request reads anything:
            # read-your-writes across processes (docs/storage.md).
            self.registry.refresh()
            body = b""
            data = None
            ctype = None
            if route.body is not None:
                ctype, body = await self._read_body(scope, receive, route)
                # Before any decoder recurses into it (docs/http.md "Limits").
                check_depth(body, self.settings.max_body_depth)
                if route.body is not bytes:
                    data = _decode(self._decoder[id(route)], body or b"{}")
                    if route.items is not None:
                        check_items(data, route.items, self.settings.max_batch_items)
            req = Request(
                self, self.registry, params, scope.get("query_string", b""), body, data, ctype
            )
            first = None
            if route.runs == "heavy":
                self.heavy.admit()
                admitted = True
                resp, first = await self._run_heavy(route, req, receive)
            else:
                if route.runs == "light":
                    resp = await asyncio.to_thread(route.handler, req)
                else:
                    resp = route.handler(req)
                if resp.stream is not None:
                    # Pull the first chunk before the status goes out, so that a failure
                    # there is still answered as an error rather than a cut stream.
                    first = await asyncio.to_thread(next_chunk, resp.stream)
        except (_ClientGone, Cancelled):
            if admitted:
                self.heavy.release()
            raise _ClientGone from None
        except Exception as exc:
            if admitted:
                self.heavy.release()
                admitted = False
            status, err = error_body(exc)
            if isinstance(err, MethodNotAllowedError):
                extra = [(b"allow", ", ".join(err.allow).encode())]
            elif isinstance(err, OverloadedError):
                extra = [(b"retry-after", str(err.retry_after).encode())]
            elif isinstance(err, (BodyTimeoutError, BodyTooLargeError)):
                # The rest of the body is still coming: this connection cannot carry
                # another request.
                extra = [(b"connection", b"close")]
            resp = Response(status, encode(records.error(err)), headers=extra)
        if resp.stream is not None:
            try:
                return await self._send_stream(resp, first, origin, method, send, exchange)
            finally:
                if admitted:
                    self.heavy.release()
        if admitted:
            self.heavy.release()
        exchange.sent = len(resp.body)
        headers = [(b"content-length", str(len(resp.body)).encode())]
        if resp.content_type is not None:
            headers.append((b"content-type", resp.content_type))
        if resp.headers:
            headers += resp.headers
        if origin is not None:
            headers += self.cors.simple(origin)
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else resp.body})
        return resp.status

    async def _run_heavy(
        self, route: Route, req: Request, receive: Receive
    ) -> tuple[Response, bytes | None]:
        """The handler (and a stream's first chunk) on the heavy pool, watching for the
        client to leave meanwhile: a queued job is then dropped, a batch stops."""
        cancelled = threading.Event()
        req.cancelled = cancelled
        watcher = asyncio.ensure_future(watch_disconnect(receive, cancelled))
        try:
            resp = await self.heavy.call(cancelled, route.handler, req)
            first = None
            if resp.stream is not None:
                first = await self.heavy.call(cancelled, next_chunk, resp.stream)
            return resp, first
        finally:
            watcher.cancel()

    async def _options(self, scope: Scope, origin: bytes | None, send: Send) -> int:
        found = self.router.methods_for(scope["path"])
        if found is None:
            raise RouteNotFoundError(f"no route for {scope['path']}", {"path": scope["path"]})
        allow = allowed(found[0])
        headers = [(b"allow", ", ".join(allow).encode()), (b"content-length", b"0")]
        if origin is not None:
            headers += self.cors.preflight(
                origin,
                _header(scope, b"access-control-request-method"),
                _header(scope, b"access-control-request-headers"),
                allow,
            )
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return 204

    async def _read_body(
        self, scope: Scope, receive: Receive, route: Route
    ) -> tuple[bytes | None, bytes]:
        limit = self._limits[route.body_limit]
        ctype = None
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = _media_type(value)
            elif name == b"content-length":
                declared = value
        # Refuse what will not fit before reading a byte of it.
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLargeError(limit)
        if (
            ctype is not None
            and ctype != JSON
            and not ctype.endswith(_JSON_SUFFIX)
            and not (route.body is bytes and ctype.startswith(b"application/"))
            and declared != b"0"
        ):
            raise UnsupportedMediaTypeError(
                f"expected application/json, got {ctype.decode('latin-1')}",
                {"content_type": ctype.decode("latin-1")},
            )
        # One budget for the whole body (Granian bounds only the headers): a client
        # trickling its body in holds a connection for at most this long.
        task = self._body_deadlines.begin()
        try:
            return await self._receive_body(receive, limit, declared, ctype)
        except asyncio.CancelledError:
            if self._body_deadlines.timed_out(task):
                raise BodyTimeoutError(self._body_deadlines.budget) from None
            raise
        finally:
            self._body_deadlines.end(task)

    @staticmethod
    async def _receive_body(
        receive: Receive, limit: int, declared: bytes | None, ctype: bytes | None
    ) -> tuple[bytes | None, bytes]:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise _ClientGone
        body = msg.get("body", b"")
        # Granian sends the body, then an empty closing message; waiting for that one
        # costs a second wake-up from the server thread. When the declared length has
        # arrived there is nothing left to wait for.
        if not msg.get("more_body") or (
            declared is not None and declared.isdigit() and len(body) == int(declared)
        ):
            if len(body) > limit:
                raise BodyTooLargeError(limit)
            return ctype, body
        chunks = [body]
        size = len(body)
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _ClientGone
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError(limit)
            chunks.append(chunk)
            if not msg.get("more_body"):
                return ctype, b"".join(chunks)

    async def _send_stream(
        self,
        resp: Response,
        first: bytes | None,
        origin: bytes | None,
        method: str,
        send: Send,
        exchange: _Exchange,
    ) -> int:
        stream = resp.stream
        assert stream is not None
        headers = [(b"content-type", resp.content_type or JSON)]
        if resp.headers:
            headers += resp.headers
        if origin is not None:
            headers += self.cors.simple(origin)
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        try:
            chunk = first
            while chunk and method != "HEAD":
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                exchange.sent += len(chunk)
                chunk = await asyncio.to_thread(next_chunk, stream)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        await send({"type": "http.response.body", "body": b""})
        return resp.status


class _Exchange:
    """What the access log needs to know of a request once it is answered."""

    __slots__ = ("route", "sent")

    def __init__(self) -> None:
        self.route = "-"  # the route template; "-" when no route matched
        self.sent = 0


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        # A typed decode stops at the first shape error, before it would notice trailing
        # garbage; re-read untyped so that malformed JSON is always the 400.
        try:
            msgspec.json.decode(body)
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError as syntax:
            raise MalformedJsonError(f"request body is not valid JSON: {syntax}") from None
        raise field_error(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedJsonError(f"request body is not valid JSON: {exc}") from None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def create_app(settings: Settings | None = None) -> App:
    """The factory Granian calls in each worker: settings from ``BFX_*`` env vars."""
    # A heavy thread (an import compiling thousands of records) holds the GIL for the
    # whole switch interval each time the event loop asks for it: 1 ms instead of 5 ms
    # cut /health's median during a 100k-record import from 5.8 to 1.8 ms (p99 37 ->
    # 11 ms) at no cost to the import (benches/python/import_stall.py).
    sys.setswitchinterval(WORKER_SWITCH_INTERVAL)
    return App(settings or Settings.from_env())
