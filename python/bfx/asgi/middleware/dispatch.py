"""The endpoint: runs the operation's handler where the operation says (admission).

Cheap operations (get, invoke: microseconds) run on the event loop; ``write`` ones
(single creates) too, checked there and then awaiting their commit, which the creates
of the same loop pass share (``bfx.group_commit``: written on the loop when the store
need not wait, else on the engine's write thread); ``light`` ones run in a plain
thread; ``heavy`` ones (batches, search, query, graph algorithms, export, import) in
:class:`HeavyPool`: a fixed number of threads and a bounded queue in front of
them. When both are full the request is refused at once with 503 ``overloaded`` and
``Retry-After`` rather than queued without end, so cheap operations keep answering.

A heavy request also learns when its client goes away (:func:`watch_disconnect`): a job
still queued is dropped, and a batch invoke stops between steps (:mod:`bfx.budget`).
A streamed answer's first chunk is pulled here too, so that a failure there is still
answered as an error rather than a cut stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bfx import errors, switching
from bfx.asgi.base import Response, encode, no_content
from bfx.asgi.pipeline import Call, Handle
from bfx.budget import Cancelled

__all__ = ["HeavyPool", "dispatch", "next_chunk", "watch_disconnect"]

T = TypeVar("T")


class HeavyPool:
    """``threads`` workers for heavy routes, at most ``queue`` more jobs waiting.

    The count of admitted jobs is only touched on the event loop thread, so it needs no
    lock; a streamed answer holds its slot until its last chunk is pulled.
    """

    def __init__(self, threads: int, queue: int) -> None:
        if threads < 1 or queue < 0:
            raise ValueError("heavy pool needs at least 1 thread and a queue of 0 or more")
        self.threads = threads
        self.capacity = threads + queue
        self.admitted = 0
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="bfx-heavy")

    def admit(self) -> None:
        """Take a slot, or 503 ``overloaded`` when every one is taken."""
        if self.admitted >= self.capacity:
            raise errors.OverloadedError(
                f"the server is busy with {self.admitted} heavy requests; retry shortly",
                {"heavy_threads": self.threads, "heavy_capacity": self.capacity},
                retry_after=1,
            )
        self.admitted += 1
        switching.enter()  # a heavy thread beside the loop: switch the GIL often

    def release(self) -> None:
        if self.admitted > 0:  # a stream finishing after shutdown() released it already
            self.admitted -= 1
            switching.leave()

    async def call(self, cancelled: threading.Event, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a pool thread, unless the client left while it queued.

        It runs in a copy of the request's context (as ``asyncio.to_thread`` does and
        ``run_in_executor`` does not), so what the request set there — its trace span —
        is still current in the thread."""
        loop = asyncio.get_running_loop()
        run = contextvars.copy_context().run
        return await loop.run_in_executor(
            self._executor, run, _unless_cancelled, cancelled, fn, args
        )

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        while self.admitted:  # nothing more runs here: not at work any more
            self.release()


def _unless_cancelled(cancelled: threading.Event, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    if cancelled.is_set():
        raise Cancelled
    return fn(*args)


async def watch_disconnect(call: Call, cancelled: threading.Event) -> None:
    """Set ``cancelled`` when the client disconnects (whatever the protocol: the call
    knows how to wait for it)."""
    await call.disconnected()
    cancelled.set()


def next_chunk(stream: Iterator[bytes]) -> bytes:
    return next(stream, b"")


def dispatch(
    pool: HeavyPool,
    services: Any,
    store_write: Callable[..., Awaitable[Any]] | None = None,
) -> Handle:
    """The innermost stage: the operation's handler on the services, on the loop (a
    ``write`` one awaited there), in a plain thread, in the heavy pool, or (a ``store``
    one) through ``store_write(fn, *args)``, the engine's
    :meth:`~bfx.engine.Engine.run_write` (None: on the loop); its typed answer becomes
    the Response."""

    def run_and_pull(call: Call) -> Response:
        route = call.route
        resp = answer(route.op, route.handler(services, call))
        if resp.stream is not None and resp.first is None:  # a live stream sets its own
            resp.first = next_chunk(resp.stream)
        return resp

    # Where the other writes have no thread to go to (in memory), they run here too.
    inline = ("loop",) if store_write is not None else ("loop", "store")

    def on_the_loop(call: Call) -> Response | None:
        """A cheap operation answered right here, without a coroutine of its own (the
        pipeline calls this first); None for the others."""
        route = call.route
        if route.runs not in inline:
            return None
        # answer(), inlined: this runs for every GET, invoke and create.
        value = route.handler(services, call)
        if type(value) is Response:
            if value.stream is not None:
                # Loop operations answer in microseconds and do not stream; one that
                # did would pull its first chunk here.
                value.first = next_chunk(value.stream)
            return value
        if value is None:
            return no_content()
        return Response(route.op.status, encode(value), value=value)

    async def handle(call: Call) -> Response:
        runs = call.route.runs
        if runs == "heavy":
            return await _heavy(pool, run_and_pull, call)
        if runs == "light":
            return await switching.to_thread(run_and_pull, call)
        if runs == "write":
            # A coroutine: it checks and builds the row here, then awaits the commit.
            route = call.route
            return answer(route.op, await route.handler(services, call))
        if runs == "store" and store_write is not None:
            route = call.route
            return answer(route.op, await store_write(route.handler, services, call))
        return on_the_loop(call)  # type: ignore[return-value]

    handle.sync = on_the_loop  # type: ignore[attr-defined]
    return handle


def answer(op: Any, value: Any) -> Response:
    """A handler's answer as a Response: a typed answer is encoded with the operation's
    status, None is a 204, a Response (streams, headers) passes as it is."""
    if type(value) is Response:
        return value
    if value is None:
        return no_content()
    return Response(op.status, encode(value), value=value)


async def _heavy(pool: HeavyPool, run: Callable[[Call], Response], call: Call) -> Response:
    pool.admit()
    cancelled = threading.Event()
    call.cancelled = cancelled
    watcher = asyncio.ensure_future(watch_disconnect(call, cancelled))
    try:
        resp = await pool.call(cancelled, run, call)
    except BaseException:
        pool.release()
        raise
    finally:
        watcher.cancel()
    if resp.stream is None:
        pool.release()
    else:  # a streamed answer holds its slot until its last chunk is out
        resp.on_sent(lambda _status: pool.release())
    return resp
