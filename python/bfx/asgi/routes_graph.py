"""Graph routes under ``/relationships``: traverse, path, cycles, components, pagerank.

The work runs in the Rust core with the GIL released, in a worker thread (``offload``)
so one big request does not stall the event loop. Every answer is bounded: traversal by
``max_depth`` and ``max_nodes``, cycles by ``limit`` and a work budget, components and
PageRank pages by ``limit`` (1..1000, as every list) with ``next_cursor``, PageRank's
iterations by ``max_iter`` and a work budget. Every number has an upper bound: beyond
it, a 422 naming the field. ``GET /relationships/stats`` lives in
``routes_relationships`` and uses ``Registry.relationship_stats``. Semantics:
``docs/graph.md``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from msgspec import Meta, Struct

from bfx import errors, graph, paging
from bfx.asgi import records
from bfx.asgi import schemas as s
from bfx.asgi.base import PREFIX, Request, Response, body_id, encode, path_id
from bfx.asgi.router import Route
from bfx.identity import format_id

BASE = f"{PREFIX}/relationships"

#: The HTTP bound on nodes per traversal (the Registry allows more in process).
HTTP_MAX_NODES = 10_000
#: Ids per component over HTTP (the Registry allows more in process).
HTTP_MAX_MEMBERS = 10_000

Direction = Literal["outgoing", "incoming", "both"]
TypeList = Annotated[
    str | None,
    Meta(description="comma-separated relationship types (any case); all types when absent"),
]
GraphLimit = Annotated[
    int, Meta(ge=1, le=paging.MAX_PAGE, description=f"page size, 1..{paging.MAX_PAGE}")
]
Cursor = s.PageCursor | None


# --- schemas ------------------------------------------------------------------------------


class TraverseRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    start_substrate_id: s.HexId
    direction: Direction = "outgoing"
    max_depth: Annotated[
        int, Meta(ge=0, description=f"steps from the start, 0..{graph.MAX_DEPTH}")
    ] = 3
    relationship_types: list[str] | None = None
    include_substrates: bool = False
    max_nodes: Annotated[
        int, Meta(ge=1, description=f"nodes returned, start included, 1..{HTTP_MAX_NODES}")
    ] = 1000


class TraversedNode(Struct, kw_only=True, omit_defaults=True):
    substrate_id: s.HexId
    depth: int
    substrate: s.SubstrateRecord | None = None


class CrossedEdge(Struct, kw_only=True):
    relationship_id: s.HexId
    rel_type: str
    source_id: s.HexId
    target_id: s.HexId
    bidirectional: bool


class TraverseResponse(Struct, kw_only=True):
    start_substrate_id: s.HexId
    nodes: list[TraversedNode]
    edges: list[CrossedEdge]
    paths: Annotated[
        list[list[s.HexId]],
        Meta(description="one per node, in the order of nodes: the ids from the start to it"),
    ]
    truncated: Annotated[bool, Meta(description="max_nodes stopped the walk")]


class PathQuery(Struct, kw_only=True):
    direction: Direction = "outgoing"
    relationship_types: TypeList = None


class PathResponse(Struct, kw_only=True):
    source_id: s.HexId
    target_id: s.HexId
    path: list[s.HexId]
    length: Annotated[int, Meta(description="number of steps")]


class CyclesQuery(Struct, kw_only=True):
    limit: Annotated[
        int, Meta(ge=0, le=graph.MAX_CYCLES, description=f"cycles listed, 0..{graph.MAX_CYCLES}")
    ] = 100
    max_length: (
        Annotated[
            int,
            Meta(
                ge=1,
                description=(
                    f"only cycles of at most this many nodes, 1..{graph.MAX_CYCLE_LENGTH}"
                ),
            ),
        ]
        | None
    ) = None
    relationship_types: TypeList = None


class CyclesResponse(Struct, kw_only=True):
    has_cycle: bool
    cycles: list[list[s.HexId]]
    truncated: Annotated[bool, Meta(description="more cycles may exist than listed")]


class ComponentsQuery(Struct, kw_only=True):
    limit: GraphLimit = 100
    cursor: Cursor = None
    member_limit: Annotated[
        int,
        Meta(ge=1, le=HTTP_MAX_MEMBERS, description=f"ids per component, 1..{HTTP_MAX_MEMBERS}"),
    ] = 1000
    relationship_types: TypeList = None


class Component(Struct, kw_only=True):
    size: int
    substrate_ids: list[s.HexId]
    truncated: Annotated[bool, Meta(description="substrate_ids cut to member_limit")]


class ComponentsResponse(Struct, kw_only=True):
    components: list[Component]
    count: Annotated[int, Meta(description="number of components")]
    next_cursor: str | None


class PageRankQuery(Struct, kw_only=True):
    damping: Annotated[float, Meta(ge=0.0, le=1.0, description="0..1")] = 0.85
    tol: Annotated[
        float,
        Meta(
            ge=graph.MIN_PAGERANK_TOL,
            le=graph.MAX_PAGERANK_TOL,
            description=f"stop when the L1 change < n * tol; {graph.MIN_PAGERANK_TOL:g}..1",
        ),
    ] = 1e-6
    max_iter: Annotated[
        int,
        Meta(
            ge=1,
            le=graph.MAX_PAGERANK_ITER,
            description=(
                f"1..{graph.MAX_PAGERANK_ITER}; a work budget may stop it earlier "
                "(converged: false)"
            ),
        ),
    ] = 100
    limit: GraphLimit = 100
    cursor: Cursor = None
    relationship_types: TypeList = None


class Score(Struct, kw_only=True):
    substrate_id: s.HexId
    score: float


class PageRankResponse(Struct, kw_only=True):
    scores: list[Score]
    count: Annotated[int, Meta(description="number of substrates ranked")]
    iterations: int
    converged: bool
    next_cursor: str | None


# --- handlers -----------------------------------------------------------------------------


def _types(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    return names or None


def traverse(req: Request) -> Response:
    d: TraverseRequest = req.data
    if d.max_nodes > HTTP_MAX_NODES:
        raise errors.LimitExceededError(
            f"max_nodes is {d.max_nodes}; the limit is {HTTP_MAX_NODES}",
            {"field": "max_nodes", "limit": HTTP_MAX_NODES},
        )
    t = req.registry.traverse(
        body_id(d.start_substrate_id, "start_substrate_id"),
        direction=d.direction,
        max_depth=d.max_depth,
        relationship_types=d.relationship_types,
        include_substrates=d.include_substrates,
        max_nodes=d.max_nodes,
    )
    nodes = []
    for n in t["nodes"]:
        sub = n.get("substrate")
        nodes.append(
            TraversedNode(
                substrate_id=format_id(n["substrate_id"]),
                depth=n["depth"],
                substrate=None if sub is None else records.substrate(sub),
            )
        )
    edges = [
        CrossedEdge(
            relationship_id=format_id(e["relationship_id"]),
            rel_type=e["rel_type"],
            source_id=format_id(e["source_id"]),
            target_id=format_id(e["target_id"]),
            bidirectional=e["bidirectional"],
        )
        for e in t["edges"]
    ]
    paths = [[format_id(x) for x in p] for p in t["paths"]]
    return Response(
        200,
        encode(
            TraverseResponse(
                start_substrate_id=format_id(t["start_substrate_id"]),
                nodes=nodes,
                edges=edges,
                paths=paths,
                truncated=t["truncated"],
            )
        ),
    )


def path(req: Request) -> Response:
    q: PathQuery = req.query(PathQuery)
    src, dst = path_id(req.params[0]), path_id(req.params[1])
    ids = req.registry.shortest_path(
        src, dst, relationship_types=_types(q.relationship_types), direction=q.direction
    )
    return Response(
        200,
        encode(
            PathResponse(
                source_id=format_id(src),
                target_id=format_id(dst),
                path=[format_id(x) for x in ids],
                length=len(ids) - 1,
            )
        ),
    )


def cycles(req: Request) -> Response:
    q: CyclesQuery = req.query(CyclesQuery)
    c = req.registry.cycles(
        limit=q.limit, relationship_types=_types(q.relationship_types), max_length=q.max_length
    )
    return Response(
        200,
        encode(
            CyclesResponse(
                has_cycle=c["has_cycle"],
                cycles=[[format_id(x) for x in cy] for cy in c["cycles"]],
                truncated=c["truncated"],
            )
        ),
    )


def components(req: Request) -> Response:
    q: ComponentsQuery = req.query(ComponentsQuery)
    c = req.registry.components(
        limit=q.limit,
        cursor=q.cursor,
        member_limit=q.member_limit,
        relationship_types=_types(q.relationship_types),
    )
    return Response(
        200,
        encode(
            ComponentsResponse(
                components=[
                    Component(
                        size=x["size"],
                        substrate_ids=[format_id(i) for i in x["substrate_ids"]],
                        truncated=x["truncated"],
                    )
                    for x in c["components"]
                ],
                count=c["count"],
                next_cursor=c["next_cursor"],
            )
        ),
    )


def pagerank(req: Request) -> Response:
    q: PageRankQuery = req.query(PageRankQuery)
    p = req.registry.pagerank(
        damping=q.damping,
        tol=q.tol,
        max_iter=q.max_iter,
        limit=q.limit,
        cursor=q.cursor,
        relationship_types=_types(q.relationship_types),
    )
    return Response(
        200,
        encode(
            PageRankResponse(
                scores=[Score(substrate_id=format_id(k), score=v) for k, v in p["scores"].items()],
                count=p["count"],
                iterations=p["iterations"],
                converged=p["converged"],
                next_cursor=p["next_cursor"],
            )
        ),
    )


def routes() -> list[Route]:
    t = "graph"
    common: dict[str, Any] = {"tag": t, "offload": True}
    return [
        Route(
            "POST",
            f"{BASE}/traverse",
            traverse,
            summary="Breadth-first traversal with depths, crossed edges and paths",
            body=TraverseRequest,
            response=TraverseResponse,
            errors=(404, 422),
            **common,
        ),
        Route(
            "GET",
            f"{BASE}/path/{{src}}/{{dst}}",
            path,
            summary="Shortest path (fewest steps); 404 no_path when there is none",
            query=PathQuery,
            response=PathResponse,
            errors=(400, 404, 422),
            **common,
        ),
        Route(
            "GET",
            f"{BASE}/cycles",
            cycles,
            summary="Whether the graph has cycles, and some",
            query=CyclesQuery,
            response=CyclesResponse,
            errors=(422,),
            **common,
        ),
        Route(
            "GET",
            f"{BASE}/components",
            components,
            summary="Strongly connected components, largest first, paged",
            query=ComponentsQuery,
            response=ComponentsResponse,
            errors=(422,),
            **common,
        ),
        Route(
            "GET",
            f"{BASE}/pagerank",
            pagerank,
            summary="PageRank scores, highest first, paged",
            query=PageRankQuery,
            response=PageRankResponse,
            errors=(422,),
            **common,
        ),
    ]
