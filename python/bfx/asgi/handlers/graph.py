"""Graph handlers under ``/relationships``: traverse, shortest path, cycles, components,
PageRank. The work runs in the Rust core with the GIL released, in the heavy pool; every
answer is bounded (docs/graph.md, docs/http.md "Limits")."""

from __future__ import annotations

from bfx.api import types as s
from bfx.asgi.pipeline import Input
from bfx.services import Services


def traverse(svc: Services, inp: Input) -> s.TraverseResponse:
    return svc.graph.traverse(inp.body)


def shortest_path(svc: Services, inp: Input) -> s.PathResponse:
    return svc.graph.shortest_path(inp.params[0], inp.params[1], inp.query)


def cycles(svc: Services, inp: Input) -> s.CyclesResponse:
    return svc.graph.cycles(inp.query)


def components(svc: Services, inp: Input) -> s.ComponentsResponse:
    return svc.graph.components(inp.query)


def pagerank(svc: Services, inp: Input) -> s.PageRankResponse:
    return svc.graph.pagerank(inp.query)
