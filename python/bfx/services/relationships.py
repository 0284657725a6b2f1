"""The local :class:`~bfx.services.interfaces.RelationshipService` and
:class:`~bfx.services.interfaces.GraphService`: the domain's relationships and the graph
algorithms (:mod:`bfx.graph`).

The graph work runs in the Rust core with the GIL released; every answer is bounded
(``docs/graph.md``): traversal by ``max_depth`` and ``max_nodes`` (at most
``HTTP_MAX_NODES``), cycles by ``limit`` and a work budget, components and PageRank pages
by ``limit`` with ``next_cursor``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bfx import errors
from bfx.api import types as s
from bfx.identity import field_id as body_id
from bfx.identity import format_id
from bfx.paging import next_offset_cursor, offset_of
from bfx.services import records
from bfx.services.inputs import one_type, query_id, type_list

if TYPE_CHECKING:
    from bfx.domain.relationships import Relationships
    from bfx.graph import Graph

__all__ = ["LocalGraph", "LocalRelationships"]

_EDGES = s.EdgeQuery()
_RELATIONSHIPS = s.RelationshipQuery()
_PATH = s.PathQuery()
_CYCLES = s.CyclesQuery()
_COMPONENTS = s.ComponentsQuery()
_PAGERANK = s.PageRankQuery()


def _page(offset: int, total: int, rels: list[Any]) -> s.RelationshipPage:
    return s.RelationshipPage(
        relationships=[records.relationship(r) for r in rels],
        count=total,
        next_cursor=next_offset_cursor(offset, len(rels), total),
    )


class LocalRelationships:
    """Relationships of the domain (:class:`~bfx.domain.relationships.Relationships`);
    their statistics come from the graph (:class:`~bfx.graph.Graph`)."""

    def __init__(self, relationships: Relationships, graph: Graph) -> None:
        self._relationships = relationships
        self._graph = graph

    def create(self, request: s.CreateRelationship) -> s.RelationshipRecord:
        d = request
        row = self._relationships.relate(
            d.rel_type,
            body_id(d.source_id, "source_id"),
            body_id(d.target_id, "target_id"),
            bidirectional=d.bidirectional,
            constraints=d.constraints,
        )
        return records.relationship_row(row)

    async def create_async(self, request: s.CreateRelationship) -> s.RelationshipRecord:
        d = request
        row = await self._relationships.relate_async(
            d.rel_type,
            body_id(d.source_id, "source_id"),
            body_id(d.target_id, "target_id"),
            bidirectional=d.bidirectional,
            constraints=d.constraints,
        )
        return records.relationship_row(row)

    def get(self, relationship_id: int) -> s.RelationshipRecord:
        return records.relationship(self._relationships.record(relationship_id))

    def delete(self, relationship_id: int) -> None:
        self._relationships.delete(relationship_id)

    def create_many(self, request: s.BatchRelate) -> s.BatchResult:
        # Ids go to the domain as text: it parses them per item, so a bad id fails that
        # item (or, atomic, the batch) like any other invalid item.
        items = [
            {
                "rel_type": x.rel_type,
                "source_id": x.source_id,
                "target_id": x.target_id,
                "bidirectional": x.bidirectional,
                "constraints": x.constraints,
            }
            for x in request.relationships
        ]
        outcome = self._relationships.relate_many(items, atomic=request.atomic)
        return records.batch_result(outcome, "relationship_id")

    def outgoing(self, substrate_id: int, query: s.EdgeQuery | None = None) -> s.RelationshipPage:
        q = query or _EDGES
        rel_type = one_type(q.rel_type, q.type, ("rel_type", "type"))
        offset = offset_of(q.cursor, q.offset)
        total, rels = self._relationships.outgoing(
            substrate_id, rel_type=rel_type, limit=q.limit, offset=offset
        )
        return _page(offset, total, rels)

    def incoming(self, substrate_id: int, query: s.EdgeQuery | None = None) -> s.RelationshipPage:
        q = query or _EDGES
        rel_type = one_type(q.rel_type, q.type, ("rel_type", "type"))
        offset = offset_of(q.cursor, q.offset)
        total, rels = self._relationships.incoming(
            substrate_id, rel_type=rel_type, limit=q.limit, offset=offset
        )
        return _page(offset, total, rels)

    def list(self, query: s.RelationshipQuery | None = None) -> s.RelationshipPage:
        q = query or _RELATIONSHIPS
        offset = offset_of(q.cursor, q.offset)
        total, rels = self._relationships.list(
            rel_type=one_type(q.type, q.rel_type, ("type", "rel_type")),
            source_id=query_id(q.source_id, "source_id"),
            target_id=query_id(q.target_id, "target_id"),
            limit=q.limit,
            offset=offset,
        )
        return _page(offset, total, rels)

    def stats(self) -> s.RelationshipStats:
        return s.RelationshipStats(**self._graph.relationship_stats())


class LocalGraph:
    """The graph algorithms (:class:`~bfx.graph.Graph`); a traversal's substrates are
    records with their counts (``counts``: the substrates' invocation counts)."""

    def __init__(self, graph: Graph, counts: dict[int, int]) -> None:
        self._graph = graph
        self._counts = counts

    def _record(self, record: tuple[Any, ...]) -> s.SubstrateRecord:
        return records.substrate(record, self._counts.get(record[0], 0))

    def traverse(self, request: s.TraverseRequest) -> s.TraverseResponse:
        d = request
        if d.max_nodes > s.HTTP_MAX_NODES:
            raise errors.LimitExceededError(
                f"max_nodes is {d.max_nodes}; the limit is {s.HTTP_MAX_NODES}",
                {"field": "max_nodes", "limit": s.HTTP_MAX_NODES},
            )
        t = self._graph.traverse(
            body_id(d.start_substrate_id, "start_substrate_id"),
            direction=d.direction,
            max_depth=d.max_depth,
            relationship_types=d.relationship_types,
            include_substrates=d.include_substrates,
            max_nodes=d.max_nodes,
            substrate=self._record,
        )
        nodes = []
        for n in t["nodes"]:
            sub = n.get("substrate")
            nodes.append(
                s.TraversedNode(
                    substrate_id=format_id(n["substrate_id"]),
                    depth=n["depth"],
                    substrate=sub,
                )
            )
        edges = [
            s.CrossedEdge(
                relationship_id=format_id(e["relationship_id"]),
                rel_type=e["rel_type"],
                source_id=format_id(e["source_id"]),
                target_id=format_id(e["target_id"]),
                bidirectional=e["bidirectional"],
            )
            for e in t["edges"]
        ]
        return s.TraverseResponse(
            start_substrate_id=format_id(t["start_substrate_id"]),
            nodes=nodes,
            edges=edges,
            paths=[[format_id(x) for x in p] for p in t["paths"]],
            truncated=t["truncated"],
        )

    def shortest_path(
        self, source_id: int, target_id: int, query: s.PathQuery | None = None
    ) -> s.PathResponse:
        q = query or _PATH
        ids = self._graph.shortest_path(
            source_id,
            target_id,
            relationship_types=type_list(q.relationship_types),
            direction=q.direction,
        )
        return s.PathResponse(
            source_id=format_id(source_id),
            target_id=format_id(target_id),
            path=[format_id(x) for x in ids],
            length=len(ids) - 1,
        )

    def cycles(self, query: s.CyclesQuery | None = None) -> s.CyclesResponse:
        q = query or _CYCLES
        c = self._graph.cycles(
            limit=q.limit,
            relationship_types=type_list(q.relationship_types),
            max_length=q.max_length,
        )
        return s.CyclesResponse(
            has_cycle=c["has_cycle"],
            cycles=[[format_id(x) for x in cy] for cy in c["cycles"]],
            truncated=c["truncated"],
        )

    def components(self, query: s.ComponentsQuery | None = None) -> s.ComponentsResponse:
        q = query or _COMPONENTS
        c = self._graph.components(
            limit=q.limit,
            cursor=q.cursor,
            member_limit=q.member_limit,
            relationship_types=type_list(q.relationship_types),
        )
        return s.ComponentsResponse(
            components=[
                s.Component(
                    size=x["size"],
                    substrate_ids=[format_id(i) for i in x["substrate_ids"]],
                    truncated=x["truncated"],
                )
                for x in c["components"]
            ],
            count=c["count"],
            next_cursor=c["next_cursor"],
        )

    def pagerank(self, query: s.PageRankQuery | None = None) -> s.PageRankResponse:
        q = query or _PAGERANK
        p = self._graph.pagerank(
            damping=q.damping,
            tol=q.tol,
            max_iter=q.max_iter,
            limit=q.limit,
            cursor=q.cursor,
            relationship_types=type_list(q.relationship_types),
        )
        return s.PageRankResponse(
            scores=[s.Score(substrate_id=format_id(k), score=v) for k, v in p["scores"].items()],
            count=p["count"],
            iterations=p["iterations"],
            converged=p["converged"],
            next_cursor=p["next_cursor"],
        )
