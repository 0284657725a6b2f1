"""Routes under ``/relationships``: typed edges, their lists and statistics.

The graph algorithms (traverse, path, cycles, components, pagerank) are in
``handlers/graph.py``.
"""

from __future__ import annotations

from typing import Any

from bfx import errors
from bfx.api import types as s
from bfx.asgi import records
from bfx.asgi.base import PREFIX, Request, Response, body_id, encode, no_content, path_id, query_id
from bfx.identity import format_id
from bfx.paging import next_offset_cursor, offset_of

BASE = f"{PREFIX}/relationships"


def create_relationship(req: Request) -> Response:
    d: s.CreateRelationship = req.data
    rel = req.registry.relate(
        d.rel_type,
        body_id(d.source_id, "source_id"),
        body_id(d.target_id, "target_id"),
        bidirectional=d.bidirectional,
        constraints=d.constraints,
    )
    rec = records.relationship(rel)
    return Response(
        201, encode(rec), headers=[(b"location", f"{BASE}/{rec.relationship_id}".encode())]
    )


def get_relationship(req: Request) -> Response:
    rel = req.registry.get_relationship(path_id(req.params[0]))
    return Response(200, encode(records.relationship(rel)))


def delete_relationship(req: Request) -> Response:
    req.registry.delete_relationship(path_id(req.params[0]))
    return no_content()


def create_relationships(req: Request) -> Response:
    d: s.BatchRelate = req.data
    # Ids go to the registry as text: it parses them per item, so a bad id fails that
    # item (or, atomic, the batch) like any other invalid item.
    items = [
        {
            "rel_type": x.rel_type,
            "source_id": x.source_id,
            "target_id": x.target_id,
            "bidirectional": x.bidirectional,
            "constraints": x.constraints,
        }
        for x in d.relationships
    ]
    results = []
    for i, r in enumerate(req.registry.relate_many(items, atomic=d.atomic)):
        if isinstance(r, errors.BfxError):
            results.append(s.BatchItem(index=i, status=r.status, error=records.error(r)))
        else:
            results.append(s.BatchItem(index=i, status=201, relationship_id=format_id(r.identity)))
    return Response(200, encode(s.BatchResult(results=results)))


def _page(offset: int, total: int, rels: list[Any]) -> Response:
    return Response(
        200,
        encode(
            s.RelationshipPage(
                relationships=[records.relationship(r) for r in rels],
                count=total,
                next_cursor=next_offset_cursor(offset, len(rels), total),
            )
        ),
    )


def _one_type(a: str | None, b: str | None, names: tuple[str, str]) -> str | None:
    if a is not None and b is not None and a.upper() != b.upper():
        raise errors.ValidationError(
            f"{names[0]} and {names[1]} disagree; give one",
            {"field": names[0], "location": "query"},
        )
    return a if a is not None else b


def outgoing(req: Request) -> Response:
    q: s.EdgeQuery = req.query(s.EdgeQuery)
    rel_type = _one_type(q.rel_type, q.type, ("rel_type", "type"))
    offset = offset_of(q.cursor, q.offset)
    total, rels = req.registry.outgoing(
        path_id(req.params[0]), rel_type=rel_type, limit=q.limit, offset=offset
    )
    return _page(offset, total, rels)


def incoming(req: Request) -> Response:
    q: s.EdgeQuery = req.query(s.EdgeQuery)
    rel_type = _one_type(q.rel_type, q.type, ("rel_type", "type"))
    offset = offset_of(q.cursor, q.offset)
    total, rels = req.registry.incoming(
        path_id(req.params[0]), rel_type=rel_type, limit=q.limit, offset=offset
    )
    return _page(offset, total, rels)


def list_relationships(req: Request) -> Response:
    q: s.RelationshipQuery = req.query(s.RelationshipQuery)
    offset = offset_of(q.cursor, q.offset)
    total, rels = req.registry.relationships(
        rel_type=_one_type(q.type, q.rel_type, ("type", "rel_type")),
        source_id=query_id(q.source_id, "source_id"),
        target_id=query_id(q.target_id, "target_id"),
        limit=q.limit,
        offset=offset,
    )
    return _page(offset, total, rels)


def relationship_stats(req: Request) -> Response:
    # One O(V + E) pass in the core; off the event loop (offload) for large graphs.
    return Response(200, encode(s.RelationshipStats(**req.registry.relationship_stats())))
