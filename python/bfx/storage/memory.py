"""The in-memory store: the arena is the only copy (tests, scratch work, benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

from bfx import errors
from bfx.storage.base import Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Writes go straight to the arena; nothing survives the process."""

    def describe(self) -> str:
        return "in-memory (everything is lost when the process stops)"

    def insert_substrates(
        self, rows: Sequence[tuple], atomic: bool, dry_run: bool
    ) -> list[int | errors.BfxError]:
        return self._arena.insert_many(rows, atomic=atomic, dry_run=dry_run)[0]

    def insert_relationships(
        self, rows: Sequence[tuple], atomic: bool, dry_run: bool
    ) -> list[int | errors.BfxError]:
        return self._arena.link_many(rows, atomic=atomic, dry_run=dry_run)[0]

    def delete_substrate(self, identity: int) -> int:
        return self._arena.remove(identity)

    def delete_relationship(self, rid: int) -> None:
        self._arena.unlink(rid)
