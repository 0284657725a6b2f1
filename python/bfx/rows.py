"""The stored records as typed rows: one definition per kind, used by the engine,
the stores, import/export and the models.

A row is what the database and the arena hold, in their units: ids as unsigned
64-bit integers, metadata and constraints as the stored JSON bytes (empty bytes mean
``{}``; they are decoded only by whoever needs a dict, and the HTTP layer can embed
them as they are), times as microseconds since the epoch.

The Rust arena's bindings speak tuples (the cheapest thing to cross PyO3); the
conversions between those tuples and rows live here and nowhere else.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["ChangeRow", "ChangeSlice", "RelationshipRow", "SubstrateRow"]


class SubstrateRow(msgspec.Struct, frozen=True, gc=False):
    #: The id. On a write, None means "compute it from the content"; a given id is
    #: the one the content must hash to (an import), checked by the arena.
    identity: int | None
    expression_type: str
    expression_code: str
    canonical_code: str
    metadata: bytes
    created_us: int

    @classmethod
    def from_arena(cls, record: tuple[Any, ...]) -> SubstrateRow:
        """From ``Arena.get``/``scan``'s record (fields beyond the row's are not
        part of the stored record and are ignored)."""
        return cls(record[0], record[1], record[2], record[3], record[4], record[5])

    def arena_item(self) -> tuple[Any, ...]:
        """The item ``Arena.insert_many`` and ``check_insert_many`` take."""
        return (
            self.expression_type,
            self.expression_code,
            self.canonical_code,
            self.metadata,
            self.created_us,
            self.identity,
        )


class RelationshipRow(msgspec.Struct, frozen=True, gc=False):
    #: The id; None on a write (it is computed from source, target and type).
    identity: int | None
    rel_type: str
    source: int
    target: int
    bidirectional: bool
    constraints: bytes
    created_us: int

    @classmethod
    def from_arena(cls, record: tuple[Any, ...]) -> RelationshipRow:
        """From ``Arena.edge``/``scan_edges``/``outgoing``'s record."""
        return cls(*record)

    def arena_item(self) -> tuple[Any, ...]:
        """The item ``Arena.link_many`` and ``check_link_many`` take."""
        return (
            self.rel_type,
            self.source,
            self.target,
            self.bidirectional,
            self.constraints,
            self.created_us,
        )


class ChangeRow(msgspec.Struct, frozen=True, gc=False):
    """One entry of the change log: its sequence number, its op (``bfx.storage.base``'s
    ``OP_*``) and the id it names (a u64: a substrate's, a relationship's...)."""

    seq: int
    op: int
    identity: int


class ChangeSlice(msgspec.Struct, frozen=True, gc=False):
    """A read of the change log in one consistent snapshot: the entries after a cursor,
    the log's head, and ``floor``, the oldest cursor the retained log still continues
    (entries up to it were pruned, or never existed)."""

    changes: list[ChangeRow]
    head: int
    floor: int
