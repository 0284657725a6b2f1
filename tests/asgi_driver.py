"""A tiny in-process ASGI driver: builds the scope, feeds the body, collects the answer.

It runs the app on one private event loop, so ``asyncio.to_thread`` offloading works as
under a server, and it speaks the lifespan protocol so start-up and shut-down are tested
as Granian drives them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlencode

import msgspec

_MISSING: Any = object()


class Result:
    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, chunks: int
    ) -> None:
        self.status = status
        self.raw_headers = headers
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        self.body = body
        #: How many body messages the app sent (streamed answers send several).
        self.chunks = chunks

    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    def __repr__(self) -> str:
        return f"<Result {self.status} {self.body[:200]!r}>"


class Driver:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self._lifespan_task: asyncio.Task[None] | None = None
        self._to_app: asyncio.Queue[dict[str, Any]] | None = None
        self._from_app: asyncio.Queue[dict[str, Any]] | None = None

    # -- lifespan ----------------------------------------------------------------------

    def startup(self) -> dict[str, Any]:
        return self.loop.run_until_complete(self._startup())

    async def _startup(self) -> dict[str, Any]:
        self._to_app, self._from_app = asyncio.Queue(), asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._lifespan_task = asyncio.ensure_future(
            self.app(scope, self._to_app.get, self._from_app.put)
        )
        await self._to_app.put({"type": "lifespan.startup"})
        return await asyncio.wait_for(self._from_app.get(), 10)

    def shutdown(self) -> dict[str, Any]:
        return self.loop.run_until_complete(self._shutdown())

    async def _shutdown(self) -> dict[str, Any]:
        assert self._to_app is not None
        assert self._from_app is not None
        await self._to_app.put({"type": "lifespan.shutdown"})
        msg = await asyncio.wait_for(self._from_app.get(), 10)
        assert self._lifespan_task is not None
        await asyncio.wait_for(self._lifespan_task, 10)
        return msg

    def close(self) -> None:
        task = self._lifespan_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                self.loop.run_until_complete(task)
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    # -- requests ------------------------------------------------------------------------

    def request(self, method: str, path: str, **kw: Any) -> Result:
        """One request, run to its answer on the driver's loop (see :meth:`scope`)."""
        return self.loop.run_until_complete(self._run(*self.scope(method, path, **kw)))

    async def arequest(self, method: str, path: str, **kw: Any) -> Result:
        """The same from a coroutine on the driver's loop: requests that overlap."""
        return await self._run(*self.scope(method, path, **kw))

    def scope(
        self,
        method: str,
        path: str,
        *,
        json: Any = _MISSING,
        body: bytes | None = None,
        chunks: Sequence[bytes] | None = None,
        headers: Iterable[tuple[str, str]] = (),
        query: dict[str, Any] | str | None = None,
        content_type: str | None = _MISSING,
        client: tuple[str, int] = ("127.0.0.1", 50000),
    ) -> tuple[dict[str, Any], list[bytes]]:
        """A request's ASGI scope and body messages (from ``client``, the peer address). ``json`` is encoded (content-type application/json unless
        ``content_type`` says otherwise; ``None`` sends no content-type); ``chunks``
        sends the body in several messages (no content-length)."""
        hdrs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        if json is not _MISSING:
            body = msgspec.json.encode(json)
            if content_type is _MISSING:
                content_type = "application/json"
        if content_type is not _MISSING and content_type is not None:
            hdrs.append((b"content-type", content_type.encode()))
        if chunks is None:
            parts = [body or b""]
            if body is not None and not any(k == b"content-length" for k, _ in hdrs):
                hdrs.append((b"content-length", str(len(body)).encode()))
        else:
            parts = list(chunks) or [b""]
        qs = query if isinstance(query, str) else urlencode(query or {}, doseq=True)
        raw_path, _, inline_qs = path.partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": raw_path,
            "raw_path": raw_path.encode(),
            "query_string": (inline_qs or qs).encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver"), *hdrs],
            "client": client,
            "server": ("127.0.0.1", 8000),
        }
        return scope, parts

    async def _run(self, scope: dict[str, Any], parts: list[bytes]) -> Result:
        queue = [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
            for i, p in enumerate(parts)
        ]
        done = asyncio.Event()

        async def receive() -> dict[str, Any]:
            if queue:
                return queue.pop(0)
            await done.wait()
            return {"type": "http.disconnect"}

        start: dict[str, Any] = {}
        body = bytearray()
        count = 0

        async def send(msg: dict[str, Any]) -> None:
            nonlocal count
            if msg["type"] == "http.response.start":
                assert not start, "response started twice"
                start.update(msg)
            elif msg["type"] == "http.response.body":
                assert start, "body before start"
                assert not done.is_set(), "body after the last message"
                count += 1
                body.extend(msg.get("body", b""))
                if not msg.get("more_body"):
                    done.set()

        await asyncio.wait_for(self.app(scope, receive, send), 30)
        assert start, "no response"
        assert done.is_set(), "response not finished"
        return Result(start["status"], list(start.get("headers", [])), bytes(body), count)

    def get(self, path: str, **kw: Any) -> Result:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = _MISSING, **kw: Any) -> Result:
        return self.request("POST", path, json=json, **kw)

    def delete(self, path: str, **kw: Any) -> Result:
        return self.request("DELETE", path, **kw)


def started(settings: Any = None, **kw: Any) -> Driver:
    """A driver over a fresh app whose lifespan has started (in-memory registry)."""
    from bfx.asgi import App, Settings

    driver = Driver(App(settings or Settings(**kw)))
    msg = driver.startup()
    assert msg["type"] == "lifespan.startup.complete", msg
    return driver


def finish(driver: Driver) -> None:
    try:
        driver.shutdown()
    finally:
        driver.close()
