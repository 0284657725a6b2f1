"""The ASGI protocol adapter: lifespan, and each HTTP request turned into a
:class:`~bfx.asgi.pipeline.Call`, run through the pipeline, and its answer sent.

Everything a request meets on the way — errors, CORS, routing, freshness, body limits,
metrics, the access log, admission — is middleware (``bfx.asgi.middleware``), and the
handlers below it take typed input and never see this class. This file only speaks ASGI;
``bfx.asgi.rsgi`` drives the same pipeline over Granian's RSGI.

Granian imports :func:`create_app` as a factory in every worker process; settings come
from the environment (:class:`~bfx.settings.Settings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from bfx import switching, tracing
from bfx.asgi import change_stream, handlers
from bfx.asgi.base import JSON, Puller, Response
from bfx.asgi.live import LiveStreams, MetricsFeed, send_bounded
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware import assemble
from bfx.asgi.middleware.access_log import DRAIN_SECONDS, AccessLog, open_access_log
from bfx.asgi.middleware.body_deadline import BodyDeadlines
from bfx.asgi.middleware.dispatch import HeavyPool, dispatch
from bfx.asgi.pipeline import Call, Handle, build
from bfx.asgi.prometheus import Exporter
from bfx.asgi.router import Router
from bfx.asgi.worker_signals import chain_shutdown_signals
from bfx.budget import Cancelled
from bfx.services import Services, local_services
from bfx.services.auth import LocalAuth
from bfx.settings import Settings

__all__ = ["App", "create_app"]

log = logging.getLogger("bfx.asgi")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


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
        self.metrics = RequestMetrics()
        #: The Prometheus side of the counters: every worker's, under ``bfx serve``.
        self.exporter = Exporter(self.metrics)
        self.services: Services | None = None
        self.heavy = HeavyPool(self.settings.heavy_threads, self.settings.heavy_queue)
        self._body_deadlines = BodyDeadlines(self.settings.body_timeout)
        self._pipeline: Handle | None = None
        #: The worker's live streams (bounded, ended at shutdown) and the metrics ticks.
        self.live = LiveStreams(self.settings.stream_clients)
        self.feed = MetricsFeed(self._metrics_document)
        #: The worker's tracer while tracing is on (set up by startup).
        self._tracer: Any = None
        #: The access log (its lines are written by a thread of the core; the rest
        #: are waited for, briefly, at shutdown), or None when it is off.
        self.access_log: AccessLog | None = None

    # -- lifespan ------------------------------------------------------------------------

    def startup(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Opens the registry and builds the pipeline. ``loop``: the event loop the
        worker will serve on, when it is not running yet (RSGI's ``__rsgi_init__``);
        the metrics' once-a-second copy is scheduled on it."""
        if self.registry is None:
            self.registry = self._registry_factory(self.settings)
        settings = self.settings
        self.metrics.cache = self.registry.substrates.cache
        self.services = local_services(
            self.registry,
            max_answer_bytes=settings.max_answer_bytes,
            batch_time_budget=settings.batch_time_budget,
            request_metrics=self.exporter.snapshot,
            exposition=self.exporter.exposition,
            auth=login_service(settings, self.registry.store),
            metrics_ticks=lambda: self.live.stream(self.feed.ticks()),
        )
        # Each worker its own provider, made here, after fork or spawn (bfx.tracing).
        self._tracer = tracing.setup()
        if self.access_log is None:
            self.access_log = open_access_log(settings)
        middleware = assemble(
            self.settings,
            router=self.router,
            store=self.registry.store,
            counters=self.metrics,
            deadlines=self._body_deadlines,
            tracer=self._tracer,
            log=self.access_log,
        )
        engine = self.registry.engine
        store_write = engine.run_write if engine.store.durable else None
        self._pipeline = build(middleware, dispatch(self.heavy, self.services, store_write))
        self.exporter.start(loop)
        change_stream.SLOTS.configure(settings.stream_clients, settings.stream_poll)
        if loop is None:
            with contextlib.suppress(RuntimeError):  # no loop: an app driven by hand
                loop = asyncio.get_running_loop()
        if loop is not None:
            # Under Granian: end the streams as soon as the shutdown signal arrives.
            chain_shutdown_signals(loop, self.end_streams)

    def _metrics_document(self) -> Any:
        services = self.services
        if services is None:
            raise RuntimeError("the app has stopped")
        return services.system.metrics()

    async def end_streams(self) -> bool:
        """Ends the open streams (their clients see a clean end: an SSE answer
        finishes, a WebSocket gets a close frame) before the worker stops, so that
        Granian's graceful shutdown has nothing left to wait for: the live metric
        streams at once, the change streams within a poll interval. True when some
        were open."""
        slots = change_stream.SLOTS
        had = self.live.open > 0 or slots.open > 0
        slots.close()
        self.feed.close()
        await self.live.close()
        await slots.drain(2 * self.settings.stream_poll + 1)
        return had

    def shutdown(self) -> None:
        change_stream.SLOTS.close()
        self.exporter.stop()
        if self._tracer is not None:  # the last spans out, then the exporter stopped
            self._tracer = None
            tracing.shutdown()
        self.heavy.shutdown()
        self._pipeline = None
        if self.access_log is not None:  # the last lines out (bounded: a stuck reader)
            self.access_log.drain(DRAIN_SECONDS)
        reg, self.registry = self.registry, None
        if reg is not None:
            reg.close()

    async def stop(self) -> None:
        """Shutdown from inside the event loop: the change streams (they end within a
        poll interval), the live metric streams, the body-deadline sweeper, then the
        rest."""
        await self.end_streams()
        await self._body_deadlines.close()
        self.shutdown()

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
                change_stream.SLOTS.close()
                await change_stream.SLOTS.drain(2 * self.settings.stream_poll + 1)
                await self.end_streams()
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
            await self._websocket(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._pipeline is None:  # a server that skipped lifespan
            self.startup()
        assert self._pipeline is not None
        method: str = scope["method"]
        call = Call(
            method,
            scope["path"],
            scope.get("query_string", b""),
            scope["headers"],
            scope.get("client"),
            receive,
        )
        try:
            resp = await self._pipeline(call)
        except Cancelled:
            return  # the client left: counted and logged as 499; nobody to answer
        status = 499  # what the middleware learns if sending fails: the client left
        try:
            if resp.astream is not None:
                await _send_live(resp, call, method, send)
            elif resp.stream is not None:
                await _send_stream(resp, call, method, send)
            else:
                call.sent = len(resp.body)
                headers = [(b"content-length", str(call.sent).encode())]
                if resp.content_type is not None:
                    headers.append((b"content-type", resp.content_type))
                if resp.headers:
                    headers += resp.headers
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": headers}
                )
                await send(
                    {"type": "http.response.body", "body": b"" if method == "HEAD" else resp.body}
                )
            status = resp.status
        finally:
            if resp._after is not None:  # someone waits for the answer to be out
                resp.sent(status)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket handshake through the same pipeline as a GET (routing, auth,
        the stream bound, the access log): an answer that is not an accepted stream is
        sent as the HTTP answer to the handshake (ASGI's ``websocket.http.response``)."""
        if self._pipeline is None:
            self.startup()
        assert self._pipeline is not None
        call = Call(
            "GET",
            scope["path"],
            scope.get("query_string", b""),
            scope.get("headers", []),
            scope.get("client"),
            receive,
        )
        msg = await receive()  # websocket.connect
        if msg["type"] != "websocket.connect":
            return
        try:
            resp = await self._pipeline(call)
        except Cancelled:
            return
        status = 499
        try:
            if resp.websocket and resp.astream is not None:
                await send({"type": "websocket.accept"})
                await _pump_websocket(resp, receive, send)
                await send({"type": "websocket.close", "code": 1001 if self.live.closing else 1000})
            else:
                await _refuse_websocket(scope, resp, send)
            status = resp.status
        except OSError:
            pass  # the client left: 499
        finally:
            if resp.astream is not None:
                await resp.astream.aclose()
            if resp._after is not None:
                resp.sent(status)


async def _pump_websocket(resp: Response, receive: Receive, send: Send) -> None:
    """Sends the stream's texts until it ends or the client closes (a bounded send)."""
    assert resp.astream is not None

    async def client_closed() -> None:
        while (await receive())["type"] != "websocket.disconnect":
            pass  # incoming messages are not part of the protocol: ignored

    reader = asyncio.ensure_future(client_closed())
    try:
        async for text in resp.astream:
            if reader.done():
                return
            if not await send_bounded(send({"type": "websocket.send", "text": text})):
                return
    finally:
        reader.cancel()


async def _refuse_websocket(scope: Scope, resp: Response, send: Send) -> None:
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})  # the server answers 403
        return
    headers = [(b"content-length", str(len(resp.body)).encode())]
    if resp.content_type is not None:
        headers.append((b"content-type", resp.content_type))
    headers += resp.headers or []
    await send({"type": "websocket.http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": resp.body})


async def _send_live(resp: Response, call: Call, method: str, send: Send) -> None:
    """A live stream (SSE): each chunk as it comes, each send bounded in time."""
    astream = resp.astream
    assert astream is not None
    headers = [(b"content-type", resp.content_type or JSON), *(resp.headers or ())]
    try:
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        if method != "HEAD":
            async for chunk in astream:
                if not await send_bounded(
                    send({"type": "http.response.body", "body": chunk, "more_body": True})
                ):
                    return  # not reading: dropped
                call.sent += len(chunk)
        await send_bounded(send({"type": "http.response.body", "body": b""}))
    finally:
        await astream.aclose()


async def _send_stream(resp: Response, call: Call, method: str, send: Send) -> None:
    stream = resp.stream
    assert stream is not None
    headers = [(b"content-type", resp.content_type or JSON)]
    if resp.headers:
        headers += resp.headers
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    puller = Puller(stream, call.disconnected())
    try:
        chunk = resp.first
        while chunk and method != "HEAD":
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            call.sent += len(chunk)
            chunk = await puller.next()
    finally:
        puller.close()
    await send({"type": "http.response.body", "body": b""})


def login_service(settings: Settings, store: Any) -> LocalAuth:
    """Login as the settings say: token lifetime and secret, failed-login limits."""
    from bfx.security.login import LoginGuard
    from bfx.security.users import prepare

    prepare()
    return LocalAuth(
        lambda: store,
        ttl=settings.jwt_ttl,
        secret=settings.jwt_secret.encode() or None,
        guard=LoginGuard(settings.login_failures_per_user, settings.login_failures_per_address),
    )


def create_app(settings: Settings | None = None) -> App:
    """The factory Granian calls in each worker: settings from ``BFX_*`` env vars."""
    # The GIL switch interval follows what runs beside the loop (bfx.switching).
    switching.install()
    return App(settings or Settings.from_env())
