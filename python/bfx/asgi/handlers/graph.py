"""Graph routes under ``/relationships``: traverse, path, cycles, components, pagerank.

The work runs in the Rust core with the GIL released, in a worker thread (``offload``)
so one big request does not stall the event loop. Every answer is bounded: traversal by
``max_depth`` and ``max_nodes``, cycles by ``limit`` and a work budget, components and
PageRank pages by ``limit`` (1..1000, as every list) with ``next_cursor``, PageRank's
iterations by ``max_iter`` and a work budget. Every number has an upper bound: beyond
it, a 422 naming the field. ``GET /relationships/stats`` lives in
``handlers/relationships.py`` and uses ``Registry.relationship_stats``. Semantics:
``docs/graph.md``.
"""

from __future__ import annotations

from bfx import errors
from bfx.api import types as s
from bfx.asgi import records
from bfx.asgi.base import PREFIX, Request, Response, body_id, encode, path_id
from bfx.identity import format_id

BASE = f"{PREFIX}/relationships"

# --- handlers -----------------------------------------------------------------------------


def _types(text: str | None) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    return names or None


def traverse(req: Request) -> Response:
    d: s.TraverseRequest = req.data
    if d.max_nodes > s.HTTP_MAX_NODES:
        raise errors.LimitExceededError(
            f"max_nodes is {d.max_nodes}; the limit is {s.HTTP_MAX_NODES}",
            {"field": "max_nodes", "limit": s.HTTP_MAX_NODES},
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
            s.TraversedNode(
                substrate_id=format_id(n["substrate_id"]),
                depth=n["depth"],
                substrate=None if sub is None else records.substrate(sub),
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
    paths = [[format_id(x) for x in p] for p in t["paths"]]
    return Response(
        200,
        encode(
            s.TraverseResponse(
                start_substrate_id=format_id(t["start_substrate_id"]),
                nodes=nodes,
                edges=edges,
                paths=paths,
                truncated=t["truncated"],
            )
        ),
    )


def shortest_path(req: Request) -> Response:
    q: s.PathQuery = req.query(s.PathQuery)
    src, dst = path_id(req.params[0]), path_id(req.params[1])
    ids = req.registry.shortest_path(
        src, dst, relationship_types=_types(q.relationship_types), direction=q.direction
    )
    return Response(
        200,
        encode(
            s.PathResponse(
                source_id=format_id(src),
                target_id=format_id(dst),
                path=[format_id(x) for x in ids],
                length=len(ids) - 1,
            )
        ),
    )


def cycles(req: Request) -> Response:
    q: s.CyclesQuery = req.query(s.CyclesQuery)
    c = req.registry.cycles(
        limit=q.limit, relationship_types=_types(q.relationship_types), max_length=q.max_length
    )
    return Response(
        200,
        encode(
            s.CyclesResponse(
                has_cycle=c["has_cycle"],
                cycles=[[format_id(x) for x in cy] for cy in c["cycles"]],
                truncated=c["truncated"],
            )
        ),
    )


def components(req: Request) -> Response:
    q: s.ComponentsQuery = req.query(s.ComponentsQuery)
    c = req.registry.components(
        limit=q.limit,
        cursor=q.cursor,
        member_limit=q.member_limit,
        relationship_types=_types(q.relationship_types),
    )
    return Response(
        200,
        encode(
            s.ComponentsResponse(
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
        ),
    )


def pagerank(req: Request) -> Response:
    q: s.PageRankQuery = req.query(s.PageRankQuery)
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
            s.PageRankResponse(
                scores=[
                    s.Score(substrate_id=format_id(k), score=v) for k, v in p["scores"].items()
                ],
                count=p["count"],
                iterations=p["iterations"],
                converged=p["converged"],
                next_cursor=p["next_cursor"],
            )
        ),
    )
