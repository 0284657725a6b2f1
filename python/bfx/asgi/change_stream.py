"""``GET /api/v1/changes/stream``: the change feed as Server-Sent Events.

Each change is one event (``event: change``, ``id: <seq>``, ``data: {"seq","op","id"}``);
a client that reconnects sends the last ``id`` it saw as ``Last-Event-ID`` (or ``since``)
and continues exactly after it. Without either, the stream starts at the log's head
(changes from now on). The stream looks at the log every ``--stream-poll`` seconds (one
indexed read on a connection of its own, off the event loop), writes a comment line
after :data:`HEARTBEAT` seconds of silence (so proxies and clients see it alive, and a
departed client is noticed), and ends:

* when the worker shuts down (within one poll interval of the signal: :func:`end_on_signals`);
* with an ``event: error`` (the error body as data) when reading the log fails, e.g. a
  410 ``changes_pruned`` for a stream that fell behind the retained log.

At most ``--stream-clients`` streams are open per worker; one more is a 503 ``overloaded``
with ``Retry-After``. The framing is small on purpose: SSE's ``event``/``id``/``data``
lines, ``retry`` once at the start.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from bfx import errors, switching
from bfx.api import types as s
from bfx.asgi.base import Response, encode
from bfx.services.interfaces import ChangeService

__all__ = ["HEARTBEAT", "SLOTS", "ChangeStream", "StreamSlots", "open_stream"]

#: Seconds without an event after which a comment line is sent.
HEARTBEAT = 15.0
#: What a client waits before reconnecting (SSE ``retry``, milliseconds).
RETRY_MS = 2_000
#: Changes read per look at the log (more wait for the next look, at once).
PAGE = s.MAX_PAGE

_MEDIA_TYPE = b"text/event-stream"
_HEADERS = [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]


class StreamSlots:
    """This worker's open streams: a bound on their number, their poll interval, and
    the shutdown that ends them. Admission runs on request threads: under a lock."""

    def __init__(self, limit: int = 64, poll: float = 0.5) -> None:
        self.limit = limit
        self.poll = poll
        self.open = 0
        self.closing = False
        self._lock = threading.Lock()

    def configure(self, limit: int, poll: float) -> None:
        """At a worker's start-up (the settings), which also reopens after a close."""
        self.limit, self.poll, self.closing = limit, poll, False

    def admit(self) -> None:
        with self._lock:
            if self.closing:
                raise errors.OverloadedError(
                    "the server is shutting down", {"stream_clients": self.limit}, retry_after=1
                )
            if self.open >= self.limit:
                raise errors.OverloadedError(
                    f"{self.open} change streams are open in this worker, the most it serves; "
                    "retry shortly",
                    {"stream_clients": self.limit},
                    retry_after=1,
                )
            self.open += 1

    def release(self) -> None:
        with self._lock:
            self.open -= 1

    def close(self) -> None:
        """Ends every stream at its next look (within one poll interval)."""
        self.closing = True

    async def drain(self, timeout: float) -> None:
        """Waits (bounded) for the open streams to end after :meth:`close`."""
        deadline = time.monotonic() + timeout
        while self.open > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


#: The streams of this worker process (one app per worker under ``bfx serve``).
SLOTS = StreamSlots()


def event(change: s.Change) -> bytes:
    return b"event: change\nid: %d\ndata: %s\n\n" % (change.seq, encode(change))


def events(page: s.ChangePage) -> bytes:
    return b"".join(event(c) for c in page.changes)


def _error_event(exc: errors.BfxError) -> bytes:
    return b"event: error\ndata: %s\n\n" % encode(exc.to_dict())


def start_from(since: int | None, last_event_id: bytes | None) -> int | None:
    """The cursor a stream starts from: ``since``, else ``Last-Event-ID``, else None
    (from the head). A ``Last-Event-ID`` that is not a sequence number is a 422."""
    if since is not None:
        return since
    if last_event_id is None or not last_event_id.strip():
        return None
    text = last_event_id.strip()
    if not text.isdigit() or int(text) > s.MAX_SEQ:
        raise errors.ValidationError(
            "Last-Event-ID must be the id of an event of this stream (a sequence number)",
            {"field": "Last-Event-ID", "location": "header"},
        )
    return int(text)


class ChangeStream:
    """The events after a cursor, as an async iterator of chunks (the adapters pull it
    on the event loop); :meth:`close` gives its slot back, once."""

    def __init__(self, changes: ChangeService, since: int, slots: StreamSlots) -> None:
        self._changes = changes
        self.since = since
        self._slots = slots
        self._more = False  # the last look filled a page: look again at once
        self._closed = False
        self._held = True  # its slot, given back by close()

    def __aiter__(self) -> ChangeStream:
        return self

    async def __anext__(self) -> bytes:
        slots = self._slots
        quiet = 0.0
        while not slots.closing and not self._closed:
            if not self._more:
                await asyncio.sleep(slots.poll)
                if slots.closing:
                    break
            try:
                page = await switching.to_thread(self._read)
            except errors.BfxError as exc:
                self._closed = True
                return _error_event(exc)
            self.since = page.next_since
            self._more = len(page.changes) == PAGE
            if page.changes:
                return events(page)
            quiet += slots.poll
            if quiet >= HEARTBEAT:
                return b": keep-alive\n\n"
        self.close()
        raise StopAsyncIteration

    def _read(self) -> s.ChangePage:
        return self._changes.read(s.ChangesQuery(since=self.since, limit=PAGE))

    def close(self) -> None:
        self._closed = True
        if self._held:
            self._held = False
            self._slots.release()


def open_stream(
    changes: ChangeService, since: int | None, last_event_id: bytes | None, slots: Any = None
) -> Response:
    """The answer of ``changes_stream`` (run off the event loop: it reads the log once).
    Errors (a bad cursor, 410 past the retention, a full worker) are answered as such,
    before anything is streamed."""
    slots = slots or SLOTS
    start = start_from(since, last_event_id)
    query = s.ChangesQuery(since=s.MAX_SEQ if start is None else start, limit=PAGE)
    page = changes.read(query)  # 410 here when ``start`` was pruned
    slots.admit()
    stream = ChangeStream(changes, page.next_since, slots)
    stream._more = len(page.changes) == PAGE
    resp = Response(200, b"", _MEDIA_TYPE, headers=_HEADERS, stream=stream)
    resp.first = b"retry: %d\n\n" % RETRY_MS + (b"" if start is None else events(page))
    return resp
