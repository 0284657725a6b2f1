"""Domain objects -> API records, and domain errors -> batch items.

The services build every answer with these; nothing here does I/O.
"""

from __future__ import annotations

from typing import Any

from bfx import errors
from bfx.api import types as s
from bfx.identity import format_id
from bfx.models import Relationship, Substrate

__all__ = ["error", "optional_hex", "relationship", "substrate"]


def substrate(sub: Substrate) -> s.SubstrateRecord:
    return s.SubstrateRecord(
        substrate_id=format_id(sub.identity),
        identity=sub.identity,
        created_at=sub.created_at,
        expression_type=sub.expression_type,
        expression_code=sub.expression_code,
        canonical_code=sub.canonical_code,
        metadata=sub.metadata,
        invocations=sub.invocations,
    )


def relationship(rel: Relationship) -> s.RelationshipRecord:
    return s.RelationshipRecord(
        relationship_id=format_id(rel.identity),
        rel_type=rel.rel_type,
        source_id=format_id(rel.source),
        target_id=format_id(rel.target),
        bidirectional=rel.bidirectional,
        constraints=rel.constraints,
        created_at=rel.created_at,
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
