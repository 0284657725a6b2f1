"""Server-Sent Events: the framing, and an async iterator of events turned into a
streaming :class:`~bfx.asgi.base.Response` that both protocol adapters send.

A stream of any kind (the metrics ticks, a change feed) is an ``AsyncIterator[Event]``;
:func:`response` wraps it: a comment line at once (the answer is under way), then each
event as it comes, the first one carrying the ``retry:`` hint (in a block of its own,
some clients would report an empty event), a comment line as a heartbeat whenever nothing was sent for ``heartbeat`` seconds (so a
proxy or a browser does not take an idle stream for a dead one), and the stream ends
when the iterator does (the server shutting down, the client dropped for not reading:
``bfx.asgi.live``). The adapters send the chunks as they come (``Response.astream``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bfx.asgi.base import Response

__all__ = ["EVENT_STREAM", "HEARTBEAT_SECONDS", "RETRY_MS", "Event", "comment", "frame", "response"]

EVENT_STREAM = b"text/event-stream; charset=utf-8"
#: What a browser's EventSource waits before it reconnects (the ``retry:`` field).
RETRY_MS = 3000
#: Seconds without an event after which a comment line is sent.
HEARTBEAT_SECONDS = 15.0
_HEADERS = [
    (b"cache-control", b"no-cache"),
    # nginx buffers a proxied answer unless told not to: a stream would arrive in lumps.
    (b"x-accel-buffering", b"no"),
]


@dataclass(frozen=True, slots=True)
class Event:
    """One event: ``data`` (text, split on its line breaks into ``data:`` lines), the
    ``event:`` name (None: the default ``message``) and the ``id:`` (what a reconnecting
    EventSource sends back as ``Last-Event-ID``)."""

    data: str
    event: str | None = None
    id: str | None = None


def frame(event: Event) -> bytes:
    """The event's wire form, ending with the blank line that dispatches it."""
    lines = []
    if event.event is not None:
        lines.append(f"event: {_field(event.event)}")
    if event.id is not None:
        lines.append(f"id: {_field(event.id)}")
    for line in event.data.splitlines() or [""]:
        lines.append(f"data: {line}")
    return ("\n".join(lines) + "\n\n").encode()


def comment(text: str = "") -> bytes:
    """A comment line: ignored by clients, keeps the connection visibly alive."""
    return f": {_field(text)}\n\n".encode()


def _field(text: str) -> str:
    # A line break inside a name or an id would start a field of the client's choosing.
    if "\n" in text or "\r" in text:
        raise ValueError(f"an SSE field may not hold a line break: {text!r}")
    return text


async def _chunks(
    events: AsyncIterator[Event], retry_ms: int, heartbeat: float
) -> AsyncIterator[bytes]:
    yield comment("stream open")
    retry = f"retry: {retry_ms}\n".encode()
    it = events.__aiter__()
    pending: asyncio.Future[Event] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(it.__anext__())
            # Waited on, never cancelled on a timeout: cancelling would end the source.
            done, _ = await asyncio.wait((pending,), timeout=heartbeat)
            if not done:
                yield comment("heartbeat")
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                return
            finally:
                pending = None
            if retry:
                yield retry + frame(event)
                retry = b""
            else:
                yield frame(event)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


def response(
    events: AsyncIterator[Event],
    *,
    retry_ms: int = RETRY_MS,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> Response:
    """A 200 ``text/event-stream`` answer streaming ``events`` until they end."""
    return Response(
        200,
        content_type=EVENT_STREAM,
        headers=list(_HEADERS),
        astream=_chunks(events, retry_ms, heartbeat),
    )
