"""Live streams of a worker: their bound, their end at shutdown, and the metrics ticks.

:class:`LiveStreams` admits a stream (at most ``max_clients`` open at once per worker;
past it a 503 ``overloaded`` with ``Retry-After``), ends every open one when the worker
shuts down (:meth:`LiveStreams.close`, from the app's lifespan: Granian's graceful
shutdown then has no open answer to wait for) and is what any stream source goes
through: the metrics ticks here, a change feed later (:meth:`LiveStreams.guard`).

:class:`MetricsFeed` is the metrics stream's source: one task per worker computes the
metrics document once a second (in a thread: it reads every worker's files), encodes it
once, and hands it to every subscriber's queue without waiting. A subscriber whose queue
holds :data:`BUFFER_TICKS` undelivered ticks is not reading: it is dropped (its stream
ends), so a slow client never delays the others or grows the worker's memory. The task
runs only while someone subscribes.

The adapters send each chunk with :func:`send_bounded`: a send the client does not take
within :data:`SEND_TIMEOUT` seconds ends that stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from bfx import errors, switching
from bfx.asgi.base import encode

__all__ = [
    "BUFFER_TICKS",
    "CLOSE_GRACE",
    "FLUSH_SECONDS",
    "SEND_TIMEOUT",
    "TICK_SECONDS",
    "Admitted",
    "LiveStreams",
    "MetricsFeed",
    "send_bounded",
]

log = logging.getLogger("bfx.asgi")
T = TypeVar("T")

#: Seconds between two metrics ticks.
TICK_SECONDS = 1.0
#: Ticks a subscriber may leave unread before it is dropped.
BUFFER_TICKS = 8
#: Seconds one send may wait for the client to take it; past it the stream ends.
SEND_TIMEOUT = 10.0
#: Seconds shutdown waits for open streams to finish after telling them to end.
CLOSE_GRACE = 2.0
#: Seconds between the streams ending and Granian's shutdown starting: Granian's runtime
#: writes the last bytes (a WebSocket's close frame under RSGI) after the app's call
#: returns, and its shutdown drops upgraded connections at once.
FLUSH_SECONDS = 0.3


class LiveStreams:
    """The open live streams of one worker: admission, and their end at shutdown."""

    def __init__(self, max_clients: int) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        self.max_clients = max_clients
        self.open = 0
        self.closing = False
        self._stop: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    def admit(self) -> None:
        """Take a slot, or 503 ``overloaded`` (with Retry-After) when every one is taken
        or the worker is shutting down. The caller releases it (:meth:`release`) once
        its answer is out, whatever happened (``Response.on_sent``)."""
        if self.closing:
            raise errors.OverloadedError(
                "the server is shutting down; reconnect shortly", {"reason": "shutdown"}
            )
        if self.open >= self.max_clients:
            raise errors.OverloadedError(
                f"{self.open} live streams are open in this worker, its limit; retry shortly",
                {"stream_clients": self.max_clients},
                retry_after=5,
            )
        self.open += 1

    def release(self) -> None:
        self.open -= 1
        if self.open == 0 and self._idle is not None:
            self._idle.set()

    def stream(self, source: AsyncIterator[T]) -> Admitted[T]:
        """``source`` as an admitted stream (:meth:`admit`, else the 503): its slot is
        freed when it ends or is closed, and it ends at shutdown (:meth:`guard`). The
        adapter sending it closes it (``aclose``) whatever happens."""
        self.admit()
        return Admitted(self, self.guard(source))

    async def guard(self, source: AsyncIterator[T]) -> AsyncIterator[T]:
        """``source``'s items until it ends or the worker shuts down."""
        if self._stop is None:
            self._stop = asyncio.Event()
        stop = asyncio.ensure_future(self._stop.wait())
        it = source.__aiter__()
        step: asyncio.Future[T] | None = None
        try:
            while not self.closing:
                step = asyncio.ensure_future(it.__anext__())
                await asyncio.wait((step, stop), return_when=asyncio.FIRST_COMPLETED)
                if not step.done():
                    return  # shutting down (the step is cancelled below)
                done, step = step, None
                try:
                    item = done.result()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            stop.cancel()
            if step is not None and not step.done():
                # The source must have stopped running before it can be closed.
                step.cancel()
                with contextlib.suppress(BaseException):
                    await step
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Ends every open stream and waits (at most ``grace`` seconds) for their answers
        to finish; refuses new ones from now on."""
        self.closing = True
        if self._stop is not None:
            self._stop.set()
        if self.open == 0:
            return
        self._idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)


class Admitted(Generic[T]):
    """An async iterator holding one of :class:`LiveStreams`' slots until it ends or is
    closed (a plain object, not a generator: a generator never started would never run
    the ``finally`` that frees the slot)."""

    def __init__(self, streams: LiveStreams, it: AsyncIterator[T]) -> None:
        self._streams: LiveStreams | None = streams
        self._it = it

    def __aiter__(self) -> Admitted[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self._it.__anext__()
        except BaseException:
            self.free()
            raise

    async def aclose(self) -> None:
        try:
            aclose = getattr(self._it, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            self.free()

    def free(self) -> None:
        """Frees the slot (once; later calls do nothing). The answer carrying the stream
        calls it when it is sent (``Response.on_sent``), in case the stream was wrapped
        in a generator that was never started and so never closes it."""
        streams, self._streams = self._streams, None
        if streams is not None:
            streams.release()


class MetricsFeed:
    """The metrics document once a second, encoded once, fanned out to subscribers."""

    def __init__(
        self,
        snapshot: Callable[[], Any],
        interval: float = TICK_SECONDS,
        buffer: int = BUFFER_TICKS,
    ) -> None:
        self._snapshot = snapshot
        self.interval = interval
        self.buffer = buffer
        self._queues: set[asyncio.Queue[str | None]] = set()
        self._task: asyncio.Task[None] | None = None
        #: Subscribers dropped for not reading (since start).
        self.dropped = 0

    async def ticks(self) -> AsyncIterator[str]:
        """One subscriber: the metrics document as JSON text, each second, until it is
        dropped or the feed closes."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(self.buffer)
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())
        try:
            while True:
                text = await queue.get()
                if text is None:
                    return
                yield text
        finally:
            self._queues.discard(queue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queues:
            started = loop.time()
            try:
                doc = await switching.to_thread(self._snapshot)
                text = encode(doc).decode()
            except Exception:  # a tick lost, not the stream: the next one tries again
                log.exception("metrics stream: computing the metrics failed")
                text = None
            if text is not None:
                for queue in list(self._queues):
                    try:
                        queue.put_nowait(text)
                    except asyncio.QueueFull:
                        self.dropped += 1
                        self._end(queue)
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    def _end(self, queue: asyncio.Queue[str | None]) -> None:
        self._queues.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        for queue in list(self._queues):
            self._end(queue)


async def send_bounded(send: Awaitable[None], timeout: float = SEND_TIMEOUT) -> bool:
    """Awaits one send; False when the client did not take it within ``timeout``."""
    try:
        await asyncio.wait_for(send, timeout)
    except TimeoutError:
        return False
    return True
