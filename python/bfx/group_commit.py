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
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from bfx import errors

__all__ = ["MAX_GROUP", "GroupCommit"]

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
            answers = self._answers([s.row for s in group])
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

    def _answers(self, rows: list[Any]) -> list[Answer]:
        try:
            return self._write_many(rows)
        except errors.BfxError as exc:
            if len(rows) == 1:
                return [exc]
        # The transaction failed as a whole: one row at a time, so that the failure
        # reaches only the rows it belongs to.
        out: list[Answer] = []
        for row in rows:
            try:
                out.append(self._write_many([row])[0])
            except errors.BfxError as exc:
                out.append(exc)
        return out
