"""Relationships: relate (one or a batch), read, delete and the lists, over the engine.

Answers are stored rows (:class:`~bfx.rows.RelationshipRow`, the id filled in) and,
for reads, the arena's relationship records.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from bfx import errors, paging
from bfx._core import normalize_rel_type, now_us, parse_id
from bfx.domain.checks import check_page, json_object_bytes, merge, raise_if_any_failed
from bfx.domain.pipelines import edge_guard
from bfx.engine import Engine
from bfx.identity import field_id
from bfx.rows import RelationshipRow

__all__ = ["Relationships", "edge_row"]

Record = tuple[Any, ...]
_SCAN_PAGE = 4096


def edge_row(item: Mapping[str, Any], created: int) -> RelationshipRow:
    """A relationship to store (its id still to compute), checked field by field."""
    rel_type = item.get("rel_type")
    if not isinstance(rel_type, str):
        raise errors.InvalidRelationshipTypeError(
            "rel_type must be a string", {"field": "rel_type"}
        )
    bidirectional = item.get("bidirectional", False)
    if not isinstance(bidirectional, bool):
        raise errors.ValidationError("bidirectional must be a boolean", {"field": "bidirectional"})
    source = field_id(item.get("source_id"), "source_id")
    target = field_id(item.get("target_id"), "target_id")
    constraints = json_object_bytes(item.get("constraints"), "constraints")
    return RelationshipRow(
        None, normalize_rel_type(rel_type), source, target, bidirectional, constraints, created
    )


def _new_edge(
    rel_type: str,
    source_id: int | str,
    target_id: int | str,
    bidirectional: bool,
    constraints: Mapping[str, Any] | None,
) -> RelationshipRow:
    return edge_row(
        {
            "rel_type": rel_type,
            "source_id": source_id,
            "target_id": target_id,
            "bidirectional": bidirectional,
            "constraints": constraints,
        },
        now_us(),
    )


def _with_id(row: RelationshipRow, rid: int) -> RelationshipRow:
    return RelationshipRow(
        rid,
        row.rel_type,
        row.source,
        row.target,
        row.bidirectional,
        row.constraints,
        row.created_us,
    )


class Relationships:
    """The relationships of one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.arena = engine.arena
        #: Refuses deleting a pipeline's edge to its step (``bfx.domain.pipelines``).
        self._guard = edge_guard(self.arena.find)

    def relate(
        self,
        rel_type: str,
        source_id: int | str,
        target_id: int | str,
        bidirectional: bool = False,
        constraints: Mapping[str, Any] | None = None,
    ) -> RelationshipRow:
        row = _new_edge(rel_type, source_id, target_id, bidirectional, constraints)
        return _with_id(row, self.engine.insert_relationship(row))

    async def relate_async(
        self,
        rel_type: str,
        source_id: int | str,
        target_id: int | str,
        bidirectional: bool = False,
        constraints: Mapping[str, Any] | None = None,
    ) -> RelationshipRow:
        """:meth:`relate` for a coroutine on the event loop: committed with the other
        creates of the loop (``Engine.write_relationship``)."""
        row = _new_edge(rel_type, source_id, target_id, bidirectional, constraints)
        return _with_id(row, await self.engine.write_relationship(row))

    def relate_many(
        self, items: Sequence[Mapping[str, Any]], atomic: bool = False
    ) -> list[RelationshipRow | errors.BfxError]:
        """Relates in input order; each answer is the stored row or the error for that
        item. With ``atomic``, any failure raises BatchError and writes nothing."""
        created = now_us()
        prepared: list[RelationshipRow | errors.BfxError] = []
        for item in items:
            try:
                if not isinstance(item, Mapping):
                    raise errors.ValidationError("each item must be an object", {})
                prepared.append(edge_row(item, created))
            except errors.BfxError as exc:
                prepared.append(exc)
        rows = [p for p in prepared if not isinstance(p, errors.BfxError)]
        dry_run = atomic and len(rows) != len(prepared)
        answers = self.engine.insert_relationships(rows, atomic=atomic, dry_run=dry_run)
        results = merge(prepared, answers, _with_id)
        if atomic:
            raise_if_any_failed(results)
        return results

    def scan(self) -> Iterator[Record]:
        """Every relationship record of the arena, in storage order, a page at a time."""
        position: int | None = 0
        while position is not None:
            records, position = self.arena.scan_edges(position, _SCAN_PAGE)
            yield from records

    def record(self, relationship_id: int | str) -> Record:
        return self.arena.edge(relationship_id)  # type: ignore[no-any-return]

    def delete(self, relationship_id: int | str) -> None:
        self.engine.delete_relationship(parse_id(relationship_id), self._guard)

    def outgoing(
        self,
        substrate_id: int | str,
        rel_type: str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> tuple[int, list[Record]]:
        """(total, page): relationships leaving a substrate, bidirectional ones from
        either end, newest first. The page starts at ``cursor`` (a ``bfx.paging``
        position token) or ``offset`` (0..paging.MAX_OFFSET; past the total: an empty
        page)."""
        offset = paging.offset_of(cursor, offset)
        check_page(limit, offset)
        return self.arena.outgoing(substrate_id, rel_type, offset, limit)  # type: ignore[no-any-return]

    def incoming(
        self,
        substrate_id: int | str,
        rel_type: str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> tuple[int, list[Record]]:
        """Like :meth:`outgoing`, for relationships arriving at a substrate."""
        offset = paging.offset_of(cursor, offset)
        check_page(limit, offset)
        return self.arena.incoming(substrate_id, rel_type, offset, limit)  # type: ignore[no-any-return]

    def list(
        self,
        rel_type: str | None = None,
        source_id: int | str | None = None,
        target_id: int | str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> tuple[int, list[Record]]:
        """(total, page) of relationships by type and stored source/target, in storage
        order (or newest first of a source's/target's list); paged like
        :meth:`outgoing`."""
        offset = paging.offset_of(cursor, offset)
        check_page(limit, offset)
        return self.arena.edges(rel_type, source_id, target_id, offset, limit)  # type: ignore[no-any-return]
