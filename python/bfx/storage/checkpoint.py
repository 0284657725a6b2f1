"""WAL checkpoints off the write path: a thread of the store's own copies the log back
into the database.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold (1,000
pages): that commit copies the log into the database and syncs it, so one write in a
hundred or so waits milliseconds for work that is not its own (measured: commits of
20-row groups, median 92 us, the checkpointing ones up to 8.8 ms; per row 22.6 us
with them, 13.8 us without). The store's write connection turns it off, and the store
wakes a :class:`Checkpointer` every :data:`COMMITS_PER_CHECKPOINT` commits instead: on
a connection of its own it runs a ``PASSIVE`` checkpoint, which copies what it can
without waiting for or blocking readers or writers. Once a checkpoint has copied the
whole log, the next write starts the log again from its beginning — if nothing was
written while it ran.

Under writes that never pause, a passive checkpoint rarely catches the log's end; when
the log holds more than :data:`RESTART_FRAMES` pages, the checkpointer runs a
``RESTART`` one, which waits for the writer of the moment and for the readers of older
snapshots, holding new writers back meanwhile, and lets the next write start the log
again. It runs holding the store's own write lock (``hold``): this process's writers
then wait on that lock and go on the moment the checkpoint ends, instead of polling
SQLite's lock through its busy handler, whose sleeps (1, 2, 5, 10 ms...) stretched each
restart's hold on the writers from some 5 ms of copying to 30-50 ms. Its connection
waits :data:`RESTART_WAIT` at most for another process's writer or an older reader (a
long export's snapshot must not hold the writers back), and the lock is waited for as
long: past that it gives up until the next wake-up. A checkpoint that fails (a full disk) is
logged and tried again at the next wake-up; nothing committed depends on it, and the
log keeps every commit until then. The store's last connection to close checkpoints
what is left, as SQLite always does.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable

__all__ = ["COMMITS_PER_CHECKPOINT", "RESTART_FRAMES", "RESTART_WAIT", "Checkpointer"]

log = logging.getLogger("bfx.storage")

#: Commits between two wake-ups of the checkpointer (a group commit of a few dozen rows
#: appends some ten pages: a few hundred pages per checkpoint, near SQLite's 1,000).
COMMITS_PER_CHECKPOINT = 64
#: Pages in the log past which the checkpointer waits for the writer (16 MiB of 4 KiB
#: pages) rather than copy passively.
RESTART_FRAMES = 4_096
#: Seconds a ``RESTART`` checkpoint may hold new writers back waiting for a writer or an
#: older reader (the checkpoint connection's busy timeout).
RESTART_WAIT = 0.1


class Checkpointer:
    """Checkpoints ``connect()``'s database on its own thread when woken (``connect``
    should wait :data:`RESTART_WAIT` at most for a lock).

    ``hold``, the store's write lock, is held through a ``RESTART`` (never through a
    ``PASSIVE`` one, which writers need not wait for).

    :meth:`committed` is called by the store after each commit, under its write lock;
    it counts, and every :data:`COMMITS_PER_CHECKPOINT` wakes the thread (started on
    the first wake-up in this process, so a store opened before a fork starts its own
    after it)."""

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        hold: threading.Lock | threading.RLock | None = None,
    ) -> None:
        self._connect = connect
        self._hold = hold
        self._wake = threading.Event()
        self._commits = 0
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._closed = False
        #: Checkpoints run and the last one's ``(busy, log pages, pages copied)``.
        self.runs = 0
        self.last: tuple[int, int, int] | None = None

    def committed(self, pages_hint: int = 1) -> None:
        """A commit happened; ``pages_hint`` counts a large one as several."""
        self._commits += pages_hint
        if self._commits < COMMITS_PER_CHECKPOINT or self._closed:
            return
        self._commits = 0
        if self._thread is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="bfx-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def close(self) -> None:
        """Stops the thread after the checkpoint it may be running."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join()
        self._thread = None

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                try:
                    if conn is None:
                        conn = self._connect()
                    self._checkpoint(conn)
                except sqlite3.Error:
                    log.warning("storage: a WAL checkpoint failed; retried later", exc_info=True)
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        busy, pages, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if pages > RESTART_FRAMES:
            hold = self._hold
            if hold is None:
                busy, pages, copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            elif hold.acquire(timeout=RESTART_WAIT):
                try:
                    busy, pages, copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                finally:
                    hold.release()
            else:
                busy = 1  # this process's writer held on: tried again at the next wake-up
        self.runs += 1
        self.last = (busy, pages, copied)
