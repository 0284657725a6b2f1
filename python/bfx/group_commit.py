"""Group commit: concurrent single writes share one lock hold and one transaction.

A durable store pays per transaction (SQLite: the lock, the log append and the commit;
PostgreSQL: the round trips), not per row. When several threads each write one row at
the same time, :class:`GroupCommit` writes the rows that queued meanwhile in one
transaction (leader/follower):

- a writer queues its row; if no group is being written it leads: it takes the whole
  queue (its own row and whatever queued before it), writes it through the engine's
  ordinary batch path (check, commit, apply once; each row its own answer) and wakes
  the writers of that group;
- a writer that finds a group being written waits on its own lock; when that group is
  committed, the first writer still queued is woken to lead the next group with every
  row that queued meanwhile.

So every writer is answered only after the commit that holds its row, with its own
answer: a duplicate or a refused row fails its own request, never the group. A group
whose transaction fails as a whole (a storage error) is retried one row at a time, so
that the error reaches only the rows it belongs to. The change log stays gap-free: a
group is one write of the store, numbered like any batch. A lone writer leads a group
of one at once, never waiting for company; a group holds at most :data:`MAX_GROUP`
rows (the rest lead the next one).

:class:`LoopGroupCommit` is the same for writers on an event loop (``bfx serve``): the
creates of one pass of the loop form a group, written in one transaction; the creates
that arrive while a group is out queue and form the next one. Each writer awaits its
own answer. Where the store can write without waiting (SQLite, no other process
writing, nothing to catch up with: ``Store.write(nowait=True)``) the group is written
on the loop itself, as the in-memory store's creates are — a commit of a few dozen
rows takes a fraction of a millisecond, and a second thread taking the GIL back at
every statement would cost the loop more than that; otherwise the group goes to the one
write thread, which waits as long as it must while the loop serves on.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

from bfx import errors
from bfx.switching import while_running

__all__ = ["MAX_GROUP", "GroupCommit", "LoopGroupCommit"]

#: Rows in one group at most: bounds one transaction's time and size.
MAX_GROUP = 256

Answer = Any  # an id (int) or the row's BfxError


class _Slot:
    """One queued row, its answer once written, and the lock its writer waits on."""

    __slots__ = ("answer", "lead", "row", "wake")

    def __init__(self, row: Any) -> None:
        self.row = row
        self.answer: Answer = None
        self.lead = False
        self.wake = threading.Lock()
        self.wake.acquire()


class GroupCommit:
    """Writes single rows in groups through ``write_many(rows) -> answers`` (the
    engine's non-atomic batch write: one answer per row, in order)."""

    def __init__(self, write_many: Callable[[Sequence[Any]], list[Answer]]) -> None:
        self._write_many = write_many
        self._mutex = threading.Lock()
        self._queue: list[_Slot] = []
        self._busy = False
        #: Groups written and rows in them (the benchmark's and the tests' view).
        self.groups = 0
        self.rows = 0

    def write(self, row: Any) -> Any:
        """``row``'s answer (its id) once the transaction holding it has committed, or
        the error refusing or failing it, raised. Blocks the calling thread until then."""
        slot = _Slot(row)
        with self._mutex:
            self._queue.append(slot)
            if self._busy:
                leader = False
            else:
                self._busy = leader = True
        if not leader:
            slot.wake.acquire()  # released with an answer, or to lead the next group
            if slot.lead:
                self._lead()
        else:
            self._lead()
        answer = slot.answer
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _lead(self) -> None:
        with self._mutex:
            group = self._queue[:MAX_GROUP]
            del self._queue[:MAX_GROUP]
        try:
            answers = write_group(self._write_many, [s.row for s in group])
        except BaseException as exc:  # not a BfxError (a bug, an interrupt): all fail
            answers = [exc] * len(group)
        with self._mutex:
            successor = self._queue[0] if self._queue else None
            if successor is None:
                self._busy = False
        self.groups += 1
        self.rows += len(group)
        # The successor leads before the others wake: it writes while they answer.
        if successor is not None:
            successor.lead = True
            successor.wake.release()
        for slot, answer in zip(group, answers, strict=True):
            slot.answer = answer
            slot.wake.release()


def write_group(
    write_many: Callable[[Sequence[Any]], list[Answer]], rows: list[Any]
) -> list[Answer]:
    """One answer per row: ``write_many``'s, or, when the transaction failed as a whole
    (a storage error), each row written on its own, so that the failure reaches only
    the rows it belongs to."""
    try:
        return write_many(rows)
    except errors.BfxError as exc:
        if len(rows) == 1:
            return [exc]
    out: list[Answer] = []
    for row in rows:
        try:
            out.append(write_many([row])[0])
        except errors.BfxError as exc:
            out.append(exc)
    return out


class _Waiting:
    """A row queued on the loop, the future its writer awaits, and the writer's context
    (its trace span) when tracing is on."""

    __slots__ = ("context", "future", "row")

    def __init__(self, row: Any, future: asyncio.Future[Any], context: Any) -> None:
        self.row = row
        self.future = future
        self.context = context


class _LoopQueue:
    """One event loop's rows waiting for the next group, and whether one is out."""

    __slots__ = ("busy", "waiting")

    def __init__(self) -> None:
        self.waiting: list[_Waiting] = []
        self.busy = False


class LoopGroupCommit:
    """Writes single rows from coroutines in groups through ``write_many`` on
    ``executor`` (one thread: the groups are written one after another).

    A row submitted while no group is out starts one at the loop's next pass, so the
    rows submitted in the same pass join it; rows submitted while a group is out wait
    for it to commit and then all go in the next group (at most :data:`MAX_GROUP`).
    A lone writer never waits for company. A writer that stops awaiting (its client
    left) does not take its row back: the row is written and answered to nobody, as a
    create whose answer was lost on the wire would be.

    ``traced``: called at submit; true when the writer's context should be kept (the
    group's write then runs in the context of its first row's writer, so that its
    span is a child of that request's). ``write_now``: writes a group on the loop,
    or answers None, having written nothing, when it would have to wait.
    """

    def __init__(
        self,
        write_many: Callable[[Sequence[Any]], list[Answer]],
        executor: Executor,
        traced: Callable[[], bool] = lambda: False,
        write_now: Callable[[Sequence[Any]], list[Answer] | None] | None = None,
    ) -> None:
        self._write_many = write_many
        self._executor = executor
        self._traced = traced
        self._write_now = write_now
        # Per loop, so that an engine driven from two loops keeps their futures apart;
        # a loop's entry goes once it has nothing out.
        self._loops: dict[asyncio.AbstractEventLoop, _LoopQueue] = {}
        #: Groups written and rows in them, and the groups written on the loop (the
        #: benchmark's and the tests' view).
        self.groups = 0
        self.rows = 0
        self.on_loop = 0

    def submit(self, row: Any) -> asyncio.Future[Any]:
        """A future of ``row``'s answer (its id), or of the error refusing or failing
        it, set once the transaction holding it has committed."""
        loop = asyncio.get_running_loop()
        queue = self._loops.get(loop)
        if queue is None:
            queue = self._loops[loop] = _LoopQueue()
        future = loop.create_future()
        context = contextvars.copy_context() if self._traced() else None
        queue.waiting.append(_Waiting(row, future, context))
        if not queue.busy:
            queue.busy = True
            loop.call_soon(self._send, loop, queue)
        return future

    def _send(self, loop: asyncio.AbstractEventLoop, queue: _LoopQueue) -> None:
        group = queue.waiting[:MAX_GROUP]
        del queue.waiting[:MAX_GROUP]
        rows = [w.row for w in group]
        context = group[0].context
        if self._write_now is not None:
            try:
                if context is None:
                    answers = self._write_now(rows)
                else:
                    answers = context.run(self._write_now, rows)
            except BaseException as exc:  # a bug: the group's writers fail, none hangs
                answers = [exc] * len(group)
            if answers is not None:
                self.on_loop += 1
                self._done(group, answers)
                if queue.waiting:  # more than a group's worth: the rest on the next pass
                    loop.call_soon(self._send, loop, queue)
                else:
                    self._idle(loop, queue)
                return
        job: tuple[Any, ...] = (write_group, self._write_many, rows)
        if context is not None:  # the first writer's span, in the thread
            job = (context.run, *job)
        try:
            out = while_running(lambda: loop.run_in_executor(self._executor, *job))
        except RuntimeError:  # the write thread is shut: the engine is closing
            group += queue.waiting
            queue.waiting = []
            self._idle(loop, queue)
            closing = errors.StorageError("the store is closing; nothing was written", {})
            self._done(group, [closing] * len(group))
            return
        out.add_done_callback(lambda done: self._answer(loop, queue, group, done))

    def _answer(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: _LoopQueue,
        group: list[_Waiting],
        done: asyncio.Future[list[Answer]],
    ) -> None:
        try:
            answers = done.result()
        except BaseException as exc:  # not a BfxError (a bug, the executor shut): all fail
            answers = [exc] * len(group)
        # The next group goes out before this one is answered: it is written while
        # these writers run on.
        if queue.waiting:
            self._send(loop, queue)
        else:
            self._idle(loop, queue)
        self._done(group, answers)

    def _idle(self, loop: asyncio.AbstractEventLoop, queue: _LoopQueue) -> None:
        queue.busy = False
        del self._loops[loop]

    def _done(self, group: list[_Waiting], answers: list[Answer]) -> None:
        self.groups += 1
        self.rows += len(group)
        for waiting, answer in zip(group, answers, strict=True):
            future = waiting.future
            if future.done():  # its writer stopped awaiting
                continue
            if isinstance(answer, asyncio.CancelledError):
                future.cancel()
            elif isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)
