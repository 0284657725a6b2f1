"""Stored rows and arena records -> API records, and domain errors -> batch items.

The services build every answer with these; nothing here does I/O. Metadata and
constraints go out as the stored bytes (``api.types.StoredObject``), never decoded.
"""

from __future__ import annotations

from typing import Any

from msgspec import Raw
from msgspec.structs import astuple

from bfx import errors
from bfx.api import types as s
from bfx.domain.changes import OP_NAMES, FeedPage
from bfx.identity import format_id
from bfx.models import from_micros
from bfx.rows import RelationshipRow, SubstrateRow

__all__ = [
    "error",
    "optional_hex",
    "relationship",
    "relationship_row",
    "stored",
    "substrate",
    "substrate_row",
]

#: The stored form of an empty object (the arena stores no ``{}``).
_EMPTY = Raw(b"{}")


def stored(raw: bytes) -> Raw:
    """Stored JSON bytes as an answer embeds them."""
    return Raw(raw) if raw else _EMPTY


def substrate(record: tuple[Any, ...], invocations: int) -> s.SubstrateRecord:
    """An arena record (``Arena.get``/``page``/``scan``: SubstrateRow's fields in
    order) and its count of this process. The hot read (every GET): the tuple is read
    as it is, without building a row in between."""
    identity, expression_type, code, canonical, metadata, created_us = record
    return s.SubstrateRecord(
        substrate_id=format_id(identity),
        identity=identity,
        created_at=from_micros(created_us),
        expression_type=expression_type,
        expression_code=code,
        canonical_code=canonical,
        metadata=Raw(metadata) if metadata else _EMPTY,
        invocations=invocations,
    )


def substrate_row(row: SubstrateRow, invocations: int = 0) -> s.SubstrateRecord:
    """A row just written (its id filled in): its fields are the arena record's."""
    return substrate(astuple(row), invocations)


def relationship_row(row: RelationshipRow) -> s.RelationshipRecord:
    return s.RelationshipRecord(
        relationship_id=format_id(row.identity),  # type: ignore[arg-type]
        rel_type=row.rel_type,
        source_id=format_id(row.source),
        target_id=format_id(row.target),
        bidirectional=row.bidirectional,
        constraints=stored(row.constraints),
        created_at=from_micros(row.created_us),
    )


def relationship(record: tuple[Any, ...]) -> s.RelationshipRecord:
    """An arena relationship record (``Arena.edge``/``outgoing``/``edges``)."""
    return relationship_row(RelationshipRow.from_arena(record))


def change_page(page: FeedPage) -> s.ChangePage:
    return s.ChangePage(
        changes=[
            s.Change(seq=c.seq, op=OP_NAMES[c.op], id=format_id(c.identity)) for c in page.changes
        ],
        next_since=page.next_since,
    )


def error(exc: errors.BfxError) -> s.ErrorBody:
    return s.ErrorBody(error=exc.code, message=exc.message, details=exc.details)


def optional_hex(value: Any) -> str | None:
    return None if value is None else format_id(value)


def batch_result(outcome: list[Any], id_field: str) -> s.BatchResult:
    """A batch's answers in input order: 201 with the new record's id under ``id_field``
    (``substrate_id`` or ``relationship_id``), or the item's error."""
    results = []
    for i, r in enumerate(outcome):
        if isinstance(r, errors.BfxError):
            results.append(s.BatchItem(index=i, status=r.status, error=error(r)))
        else:
            results.append(s.BatchItem(index=i, status=201, **{id_field: format_id(r.identity)}))
    return s.BatchResult(results=results)
