"""The in-memory store: the arena is the only copy (tests, scratch work, benchmarks).

It keeps a change log too, in process memory, so that the change feed reads the same
over every store: the last ``min(retention, MEMORY_LOG)`` entries (older ones are
dropped as new ones come, and a ``since`` before them is answered 410 as on a database).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import deque
from collections.abc import Collection, Iterator, Sequence

from bfx.rows import ChangeRow, ChangeSlice, RelationshipRow, SubstrateRow
from bfx.storage.base import (
    OP_ADD_RELATIONSHIP,
    OP_ADD_SUBSTRATE,
    OP_UPDATE_SUBSTRATE,
    Store,
    Write,
    from_db,
)
from bfx.storage.catalog import (
    OP_ALIAS,
    OP_CHAIN,
    OP_LENS,
    AliasRecord,
    Chain,
    HeadMove,
    LensRecord,
    VersionEntry,
    name_id,
)

__all__ = ["MEMORY_LOG", "MemoryStore"]

#: The most entries the in-memory log keeps whatever the retention (~120 bytes each:
#: 12 MB at most), since it holds them in the process's own memory.
MEMORY_LOG = 100_000


class MemoryStore(Store):
    """Nothing to commit: the engine writes straight to the arena, and nothing
    survives the process."""

    def __init__(self) -> None:
        super().__init__()
        self._log: deque[ChangeRow] = deque(maxlen=MEMORY_LOG)
        self._head = 0

    def describe(self) -> str:
        return "in-memory (everything is lost when the process stops)"

    @property
    def seq(self) -> int:  # type: ignore[override]
        """The last entry of the log."""
        return self._head

    def set_retention(self, entries: int) -> None:
        """Keeps the last ``entries`` (0: as many as :data:`MEMORY_LOG`)."""
        with self._write_lock:
            self.retention = entries
            size = min(entries, MEMORY_LOG) if entries else MEMORY_LOG
            self._log = deque(self._log, maxlen=size)

    def log(self, op: int, identity: int) -> None:
        # Every single create on ``--memory`` comes here: kept to a few operations.
        head = self._head + 1
        self._log.append(ChangeRow(head, op, identity))
        self._head = head

    def log_many(self, op: int, ids: Sequence[int]) -> None:
        for identity in ids:
            self.log(op, identity)

    @contextlib.contextmanager
    def write(self, *, nowait: bool = False) -> Iterator[Write]:
        with self._write_lock:
            w = Write()
            yield w
            if w.after is not None:
                w.after()
            for op, identity in w.entries:
                self.log(op, identity)

    def add_substrates(self, w: Write, rows: Sequence[tuple[SubstrateRow, int]]) -> None:
        w.entries += [(OP_ADD_SUBSTRATE, i) for _, i in rows]

    def add_relationships(self, w: Write, rows: Sequence[tuple[RelationshipRow, int]]) -> None:
        w.entries += [(OP_ADD_RELATIONSHIP, i) for _, i in rows]

    def update_substrate(self, w: Write, identity: int, metadata: bytes) -> None:
        w.entries.append((OP_UPDATE_SUBSTRATE, identity))

    def changes(self, since: int, limit: int, ops: Collection[int]) -> ChangeSlice:
        with self._write_lock:
            log, head = self._log, self._head
            floor = log[0].seq - 1 if log else head
            start = max(0, since - floor)  # entries before it are at or below ``since``
            rows = []
            for row in itertools.islice(log, start, None):
                if row.op in ops:
                    rows.append(row)
                    if len(rows) == limit:
                        break
        return ChangeSlice(rows, head, floor)

    # The catalog's records are kept by the caller (``w.after``); logged here so that the
    # change feed reads the same as over a database store.

    def save_chain_step(
        self, w: Write, chain_id: int, head: int, members: Sequence[VersionEntry], move: HeadMove
    ) -> None:
        w.entries.append((OP_CHAIN, chain_id))

    def save_chain(self, w: Write, chain: Chain) -> None:
        w.entries.append((OP_CHAIN, chain.chain_id))

    def save_alias(self, w: Write, record: AliasRecord) -> None:
        w.entries.append((OP_ALIAS, from_db(name_id(record.name))))

    def remove_alias(self, w: Write, name: str) -> None:
        w.entries.append((OP_ALIAS, from_db(name_id(name))))

    def save_lens(self, w: Write, record: LensRecord) -> None:
        w.entries.append((OP_LENS, from_db(name_id(record.name))))

    def remove_lens(self, w: Write, name: str) -> None:
        w.entries.append((OP_LENS, from_db(name_id(name))))
