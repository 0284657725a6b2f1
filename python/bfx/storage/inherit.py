"""The arena `bfx serve`'s main process loads once and its forked workers share.

Granian starts its workers with ``multiprocessing`` (``fork`` on Linux, which ``bfx
serve`` asks for explicitly), after ``bfx serve`` has run. So the main process loads
the arena (from the snapshot or in full) before Granian starts, keeps it, and every
worker forked from it starts with the same pages, shared copy-on-write: the records
live in Rust memory, which neither reads nor invocations write (the invocation counts
are per worker, in :mod:`bfx.invocations`), so the pages stay shared until a write
touches them, and a write touches only the few pages of the records it changes.

A worker's store adopts the inherited arena (:meth:`take`) instead of loading its own,
after checking it belongs to this store and the change log still holds the entry it
ends at, then catches up with the log like a snapshot would: writes committed since
the main process loaded (by other workers, by a respawned worker's predecessors, by
other nodes) reach it before it answers. Anything that does not match means the
worker loads for itself, as it did before sharing (``docs/storage.md``, Workers share
the arena).

Only a forked child takes it: in the process that loaded it the arena is nobody's
(the store that filled it is closed), and handing it to a second store there would
let two stores write one arena.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

from bfx._core import Arena

__all__ = ["Inherited", "held", "load", "take"]

log = logging.getLogger("bfx.storage")


@dataclass(frozen=True, slots=True)
class Inherited:
    store_id: str
    #: The last change-log entry the arena reflects, and that entry's (op, id).
    seq: int
    last_change: tuple[int, int] | None
    arena: Arena
    #: The process that loaded it (a child has another pid).
    pid: int
    seconds: float


_held: Inherited | None = None


def load(settings: Any) -> Inherited:
    """Loads the store's arena in this process, for the workers it will fork; the
    store is closed again (no database connection may cross a fork)."""
    global _held
    t0 = time.perf_counter()
    store = settings.open_store()
    try:
        arena = store.open_arena()
        seq = store.seq
        inherited = Inherited(
            store.store_id,
            seq,
            store.change_at(seq),
            arena,
            os.getpid(),
            time.perf_counter() - t0,
        )
        # Writing a snapshot here (after a start from a stale one) would delay every
        # worker by a whole dump; the workers write one when they stop, as before.
        store.release_arena()
    finally:
        store.close()
    _held = inherited
    return inherited


def held() -> Inherited | None:
    return _held


def take(store_id: str) -> Inherited | None:
    """The inherited arena for the store ``store_id``, once per process, in a forked
    child only."""
    global _held
    inherited = _held
    if inherited is None or inherited.pid == os.getpid():
        return None
    _held = None
    if inherited.store_id != store_id:
        log.warning("storage: the inherited arena belongs to another store; loading in full")
        return None
    return inherited
