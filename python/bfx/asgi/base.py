"""What the pipeline passes back up: the response, and the few helpers around it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import msgspec

from bfx import errors, switching
from bfx.api.operations import PREFIX
from bfx.identity import parse_id

__all__ = ["JSON", "PREFIX", "Puller", "Response", "encode", "no_content", "path_id"]

JSON = b"application/json"

#: One encoder for every answer: msgspec encoders are not type-bound, and big ints,
#: datetimes (RFC 3339) and Structs all encode natively.
encode = msgspec.json.Encoder().encode


class Response(msgspec.Struct, eq=False):
    """Status, body and headers; ``stream`` (an iterator of chunks, pulled on a thread,
    or an async one, pulled on the event loop: a live stream that waits) replaces ``body``.

    ``astream`` (an async iterator, pulled on the event loop) is a live stream: SSE bytes
    sent as they come (``bfx.asgi.sse``), or, with ``websocket``, the text messages of an
    accepted WebSocket (``bfx.asgi.live``); it ends when the iterator does.

    ``value`` is the typed answer (or the error) the body was encoded from, for middleware
    that counts by it; ``on_sent`` callbacks run once the adapter has sent the last byte.

    A Struct rather than a plain class: every request builds one, and msgspec fills in
    the defaults in C (a third of what a Python ``__init__`` of ten fields costs).
    """

    status: int
    body: bytes = b""
    content_type: bytes | None = JSON
    headers: list[tuple[bytes, bytes]] | None = None
    stream: Iterator[bytes] | AsyncIterator[bytes] | None = None
    value: Any = None
    astream: AsyncIterator[Any] | None = None
    websocket: bool = False
    #: A stream's first chunk, pulled before the status goes out.
    first: bytes | None = None
    _after: list[Callable[[int], None]] | None = None

    def on_sent(self, callback: Callable[[int], None]) -> None:
        """Run ``callback(status)`` after the answer is sent (or the client left: 499)."""
        if self._after is None:
            self._after = [callback]
        else:
            self._after.append(callback)

    def sent(self, status: int) -> None:
        """Called by the adapter once: the answer is out (or cut off with ``status``)."""
        after, self._after = self._after, None
        if after:
            for callback in reversed(after):  # innermost middleware first
                callback(status)


class Puller:
    """Pulls a streamed answer's chunks for an adapter, ``b""`` at its end. A plain
    iterator is pulled on a thread (it may read a database). An async one (a live
    stream, which waits for news) is awaited while the client is watched, so that a
    client that leaves ends it at once rather than at the next chunk sent."""

    __slots__ = ("_watch", "stream")

    def __init__(self, stream: Iterator[bytes] | AsyncIterator[bytes], gone: Any) -> None:
        self.stream = stream
        #: ``gone``: a coroutine that returns when the client disconnects.
        self._watch: asyncio.Future[Any] | None = None
        if isinstance(stream, AsyncIterator):
            self._watch = asyncio.ensure_future(gone)
        else:
            gone.close()  # never awaited

    async def next(self) -> bytes:
        stream = self.stream
        if self._watch is None:
            return await switching.to_thread(next, stream, b"")  # type: ignore[call-overload]
        pending = asyncio.ensure_future(stream.__anext__())  # type: ignore[union-attr]
        await asyncio.wait((pending, self._watch), return_when=asyncio.FIRST_COMPLETED)
        if not pending.done():  # the client left
            pending.cancel()
            return b""
        try:
            return pending.result()  # type: ignore[no-any-return]
        except StopAsyncIteration:
            return b""

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()


def no_content() -> Response:
    """A fresh 204 (answers carry per-request callbacks, so none is shared)."""
    return Response(204, b"", None)


def path_id(text: str) -> int:
    """An id from the URL; a malformed one is a 400 ``invalid_id``."""
    try:
        return parse_id(text)
    except errors.InvalidIdError as exc:
        raise errors.UrlIdError(exc.message, {**exc.details, "value": text}) from None
