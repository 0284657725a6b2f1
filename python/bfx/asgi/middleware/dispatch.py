"""Admission: what the service agrees to start, and where heavy work runs.

Three checks run before a handler sees a request — the body's JSON nesting depth, the
number of items in a batch — and heavy routes (batches, search, query, graph
algorithms, export, import) run in :class:`HeavyPool`: a fixed number of threads and a
bounded queue in front of them. When both are full the request is refused at once with
503 ``overloaded`` and ``Retry-After`` rather than queued without end, so cheap routes
(get, create, invoke, health), which run on the event loop, keep answering.

A heavy request also learns when its client goes away (:func:`watch_disconnect`): a job
still queued is dropped, and a batch invoke stops between steps (:mod:`bfx.budget`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bfx import errors
from bfx._core import json_nesting_exceeds
from bfx.budget import Cancelled

__all__ = ["HeavyPool", "check_depth", "check_items", "watch_disconnect"]

T = TypeVar("T")


def check_depth(body: bytes, limit: int) -> None:
    """422 for a body nesting arrays/objects deeper than ``limit``, before decoding it:
    a decoder would recurse (and fail far less gracefully) long before."""
    if body and json_nesting_exceeds(body, limit):
        raise errors.ValidationError(
            f"request body is nested more than {limit} levels deep",
            {"reason": "too_deep", "limit": limit, "location": "body"},
        )


def check_items(data: Any, field: str, limit: int) -> None:
    """413 ``too_many_items`` for a batch longer than ``limit``: nothing is computed."""
    n = len(getattr(data, field))
    if n > limit:
        raise errors.TooManyItemsError(
            f"{field} holds {n} items; the limit is {limit} per request",
            {"field": field, "items": n, "limit": limit},
        )


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

    def release(self) -> None:
        self.admitted -= 1

    async def call(self, cancelled: threading.Event, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a pool thread, unless the client left while it queued."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, _unless_cancelled, cancelled, fn, args)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _unless_cancelled(cancelled: threading.Event, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    if cancelled.is_set():
        raise Cancelled
    return fn(*args)


async def watch_disconnect(receive: Callable[[], Any], cancelled: threading.Event) -> None:
    """Set ``cancelled`` when the client disconnects (the body is already read, so the
    next message an ASGI server delivers is ``http.disconnect``)."""
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            cancelled.set()
            return


def next_chunk(stream: Iterator[bytes]) -> bytes:
    return next(stream, b"")
