"""The body read deadline: a client trickling its body in holds a connection for at most
``body_timeout`` seconds, then gets a 408 (Granian bounds only the headers).

A timeout around every ``receive()`` (``asyncio.timeout_at``) costs a timer scheduled and
cancelled per request — about as much as reading the body itself. Here a read costs one
dict entry: a single sweeper task per event loop wakes a few times a second and cancels
the reads past their deadline, so a stalled body is cut off within ``budget + tick``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from asyncio import current_task, get_running_loop
from time import monotonic

from bfx.errors import BfxError

__all__ = ["BodyDeadlines", "BodyTimeoutError"]


# The running tasks by loop: what asyncio.current_task() looks up. On 3.11 that function
# is Python code (a frame on every body read), so its table is read here directly;
# from 3.12 it is C, and the table may be gone.
_RUNNING: dict[asyncio.AbstractEventLoop, asyncio.Task[object]] | None = (
    getattr(asyncio.tasks, "_current_tasks", None) if sys.version_info < (3, 12) else None
)


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
        self._reads: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def begin(self) -> asyncio.Task[object]:
        """Start the clock for the current task's body read."""
        task = current_task() if _RUNNING is None else _RUNNING.get(get_running_loop())
        assert task is not None
        # time.monotonic, not loop.time(): a C call rather than a method of the loop
        # (Python code on asyncio's); the sweeper reads the same clock.
        self._reads[task] = monotonic() + self.budget
        sweeper = self._sweeper
        if sweeper is None or sweeper.done():
            self._sweeper = task.get_loop().create_task(self._sweep())
        return task

    def end(self, task: asyncio.Task[object]) -> None:
        self._reads.pop(task, None)

    def timed_out(self, task: asyncio.Task[object]) -> bool:
        """After a CancelledError: was it this deadline (then the task is uncancelled)?"""
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.tick)
            now = monotonic()
            late = [task for task, deadline in self._reads.items() if deadline <= now]
            for task in late:
                del self._reads[task]
                self._expired.add(task)
                task.cancel()

    async def close(self) -> None:
        """Stop the sweeper (at shutdown, so no task outlives its loop)."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None and not sweeper.done():
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
