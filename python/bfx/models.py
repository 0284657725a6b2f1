"""The records the Registry hands out: immutable msgspec Structs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from bfx._core import format_id, utc_datetime
from bfx.rows import RelationshipRow, SubstrateRow

__all__ = [
    "EPOCH",
    "MAX_MICROS",
    "MIN_MICROS",
    "Invocation",
    "Relationship",
    "Substrate",
    "format_time",
    "from_micros",
    "to_micros",
]

#: The Unix epoch, aware (times are stored as microseconds since it).
EPOCH = _EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_TIME = datetime.min.replace(tzinfo=UTC)
_MAX_TIME = datetime.max.replace(tzinfo=UTC)
_json_decode = msgspec.json.decode


def to_micros(dt: datetime) -> int:
    """An aware datetime -> microseconds since the Unix epoch (exact).

    A naive datetime is taken to be UTC. The result may lie outside
    [MIN_MICROS, MAX_MICROS] (``0001-01-01T00:00:00+14:00`` is in year 0 in UTC):
    callers that store it check the range first.
    """
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


#: The first and last microsecond a datetime can hold in UTC (years 1 to 9999).
MIN_MICROS = to_micros(_MIN_TIME)
MAX_MICROS = to_micros(_MAX_TIME)


#: Microseconds since the Unix epoch -> aware UTC datetime (``us`` an int).
#:
#: Exact within [MIN_MICROS, MAX_MICROS]. A stored value outside that range (a
#: database written by an older bfx, or edited by hand) is clamped to the first
#: or last representable instant, so that a read never fails on it. The core splits
#: the value into ``datetime``'s fields (rust/src/civil.rs): every record read calls
#: this, and ``EPOCH + timedelta(microseconds=us)`` cost more than twice as much.
from_micros = utc_datetime


def format_time(dt: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``: ``2026-11-22T10:00:00.123456Z``."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_object(raw: bytes) -> dict[str, Any]:
    # Empty bytes stand for an empty object (the arena stores no "{}").
    return _json_decode(raw) if raw else {}


class Substrate(msgspec.Struct, frozen=True):
    identity: int
    expression_type: str
    expression_code: str
    canonical_code: str
    metadata: dict[str, Any]
    created_at: datetime
    invocations: int = 0

    @property
    def substrate_id(self) -> str:
        return format_id(self.identity)

    @classmethod
    def from_row(cls, row: SubstrateRow, invocations: int = 0) -> Substrate:
        """From a stored row (metadata decoded here)."""
        return cls(
            row.identity,  # type: ignore[arg-type]
            row.expression_type,
            row.expression_code,
            row.canonical_code,
            _json_object(row.metadata),
            from_micros(row.created_us),
            invocations,
        )

    @classmethod
    def from_record(cls, record: tuple, invocations: int = 0) -> Substrate:
        """From the arena's record (``Arena.get``) and its count of this process
        (:class:`bfx.invocations.InvocationCounts`: counts are not in the arena)."""
        # The hot read path (every GET): the record's fields in SubstrateRow's order
        # (rows.SubstrateRow.from_arena), without building the row in between.
        identity, expression_type, code, canonical, metadata, created_us = record
        return cls(
            identity,
            expression_type,
            code,
            canonical,
            _json_object(metadata),
            from_micros(created_us),
            invocations,
        )


class Relationship(msgspec.Struct, frozen=True):
    identity: int
    rel_type: str
    source: int
    target: int
    bidirectional: bool
    constraints: dict[str, Any]
    created_at: datetime

    @property
    def relationship_id(self) -> str:
        return format_id(self.identity)

    @property
    def source_id(self) -> str:
        return format_id(self.source)

    @property
    def target_id(self) -> str:
        return format_id(self.target)

    @classmethod
    def from_row(cls, row: RelationshipRow) -> Relationship:
        """From a stored row (constraints decoded here)."""
        return cls(
            row.identity,  # type: ignore[arg-type]
            row.rel_type,
            row.source,
            row.target,
            row.bidirectional,
            _json_object(row.constraints),
            from_micros(row.created_us),
        )

    @classmethod
    def from_record(cls, record: tuple) -> Relationship:
        """From the arena's relationship record (``Arena.edge``)."""
        return cls.from_row(RelationshipRow.from_arena(record))


class Invocation(msgspec.Struct, frozen=True):
    substrate: int
    result: Any
    elapsed_ms: float

    @property
    def substrate_id(self) -> str:
        return format_id(self.substrate)
