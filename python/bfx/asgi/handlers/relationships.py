"""Handlers under ``/relationships``: typed edges, their lists and statistics (the graph
algorithms are in ``graph.py``)."""

from __future__ import annotations

from bfx.api import types as s
from bfx.asgi.base import PREFIX, Response
from bfx.asgi.handlers.substrates import created
from bfx.asgi.pipeline import Input
from bfx.services import Services

BASE = f"{PREFIX}/relationships"


async def create_relationship(svc: Services, inp: Input) -> Response:
    rec = await svc.relationships.create_async(inp.body)
    return created(rec, f"{BASE}/{rec.relationship_id}")


def get_relationship(svc: Services, inp: Input) -> s.RelationshipRecord:
    return svc.relationships.get(inp.params[0])


def delete_relationship(svc: Services, inp: Input) -> None:
    svc.relationships.delete(inp.params[0])


def create_relationships(svc: Services, inp: Input) -> s.BatchResult:
    return svc.relationships.create_many(inp.body)


def outgoing(svc: Services, inp: Input) -> s.RelationshipPage:
    return svc.relationships.outgoing(inp.params[0], inp.query)


def incoming(svc: Services, inp: Input) -> s.RelationshipPage:
    return svc.relationships.incoming(inp.params[0], inp.query)


def list_relationships(svc: Services, inp: Input) -> s.RelationshipPage:
    return svc.relationships.list(inp.query)


def relationship_stats(svc: Services, inp: Input) -> s.RelationshipStats:
    return svc.relationships.stats()
