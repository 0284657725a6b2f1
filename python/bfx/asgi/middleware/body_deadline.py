"""The body read deadline: a client trickling its body in holds a connection for at most
``body_timeout`` seconds, then gets a 408 (Granian bounds only the headers).

A timeout around every ``receive()`` (``asyncio.timeout_at``) costs a timer scheduled and
cancelled per request — about as much as reading the body itself. Here a read costs one
dict entry: a single sweeper task per event loop wakes a few times a second and cancels
the reads past their deadline, so a stalled body is cut off within ``budget + tick``.
Granian's RSGI body read is a future, which is cancelled itself; ASGI's is a coroutine,
cancelled through the task awaiting it. Finding that task takes ``get_running_loop()``,
which on 3.11 makes a ``getpid`` system call: the RSGI read does without.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from asyncio import current_task, get_running_loop
from collections.abc import Awaitable
from time import monotonic
from types import CoroutineType
from typing import Any, Protocol

from bfx.errors import BfxError

__all__ = ["BodyDeadlines", "BodyTimeoutError"]


# The running tasks by loop: what asyncio.current_task() looks up. On 3.11 that function
# is Python code (a frame on every body read), so its table is read here directly;
# from 3.12 it is C, and the table may be gone.
_RUNNING: dict[asyncio.AbstractEventLoop, asyncio.Task[object]] | None = (
    getattr(asyncio.tasks, "_current_tasks", None) if sys.version_info < (3, 12) else None
)


class Cancellable(Protocol):
    """What a deadline watches: a task, or a future awaited by one."""

    def cancel(self, msg: Any = None) -> bool: ...

    def get_loop(self) -> asyncio.AbstractEventLoop: ...


class BodyTimeoutError(BfxError):
    """The request body did not arrive within the body time budget."""

    code = "request_timeout"
    status = 408

    def __init__(self, budget: float) -> None:
        super().__init__(
            f"the request body did not arrive within {budget:g} seconds",
            {"body_timeout_seconds": budget},
        )


class BodyDeadlines:
    """Deadlines of the body reads in flight on one event loop."""

    def __init__(self, budget: float, tick: float = 0.25) -> None:
        self.budget = budget
        self.tick = min(tick, budget)
        self._reads: dict[Cancellable, float] = {}
        self._expired: set[Cancellable] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def begin(self, read: Awaitable[object]) -> Cancellable:
        """Start the clock for a body read about to be awaited; returns what the
        sweeper cancels when it runs late. A future (Granian's RSGI body read) is
        cancelled itself; a coroutine (ASGI's) through the task that awaits it."""
        if type(read) is not CoroutineType and hasattr(read, "cancel"):
            watched: Cancellable = read  # type: ignore[assignment]
        else:
            task = current_task() if _RUNNING is None else _RUNNING.get(get_running_loop())
            assert task is not None
            watched = task
        # time.monotonic, not loop.time(): a C call rather than a method of the loop
        # (Python code on asyncio's); the sweeper reads the same clock.
        self._reads[watched] = monotonic() + self.budget
        sweeper = self._sweeper
        if sweeper is None or sweeper.done():
            self._sweeper = watched.get_loop().create_task(self._sweep())
        return watched

    def end(self, watched: Cancellable) -> None:
        self._reads.pop(watched, None)

    def timed_out(self, watched: Cancellable) -> bool:
        """After a CancelledError: was it this deadline? A task cancelled for it is
        uncancelled (a future's cancellation ends with the future)."""
        if watched in self._expired:
            self._expired.discard(watched)
            uncancel = getattr(watched, "uncancel", None)
            if uncancel is not None:
                uncancel()
            return True
        return False

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = monotonic()
            late = [read for read, deadline in self._reads.items() if deadline <= now]
            for read in late:
                del self._reads[read]
                # A read that completed meanwhile is not cancelled, and not marked.
                if read.cancel():
                    self._expired.add(read)

    async def close(self) -> None:
        """Stop the sweeper (at shutdown, so no task outlives its loop)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
