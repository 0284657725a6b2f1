"""Replacing a substrate's metadata in the arena, which has no update of its own.

The record is removed and inserted again with the same id, content and creation time,
and the relationships its removal took with it are linked again as they were (type,
ends, direction flag, constraints, creation time: their ids are hashes of those, so they
are the same ids). The writer does it under the store's write lock, and a follower while
applying the change log (op 6, ``substrate_updated``), so every process ends with the
same arena. A side effect: in the adjacency lists of the substrate's neighbours those
relationships become the most recently linked (docs/domain.md).
"""

from __future__ import annotations

from bfx import errors
from bfx._core import Arena

__all__ = ["set_metadata"]


def set_metadata(arena: Arena, identity: int, metadata: bytes) -> None:
    """Gives substrate ``identity`` the stored ``metadata`` (compact JSON, empty for
    ``{}``); NotFoundError when the arena does not hold it."""
    record = arena.get(identity)
    if record[4] == metadata:
        return
    edges = {}
    for listing in (arena.outgoing(identity), arena.incoming(identity)):
        for edge in listing[1]:
            edges[edge[0]] = edge
    arena.remove(identity)
    _, expression_type, code, canonical, _, created_us = record
    answers, _ = arena.insert_many(
        [(expression_type, code, canonical, metadata, created_us, identity)]
    )
    _refused(answers, "substrate")
    if edges:
        answers, _ = arena.link_many([(e[1], e[2], e[3], e[4], e[5], e[6]) for e in edges.values()])
        _refused(answers, "relationship")


def _refused(answers: list, kind: str) -> None:
    for answer in answers:
        if isinstance(answer, errors.BfxError):
            # What was just removed fits again; anything else is damage, named.
            raise errors.StorageError(
                f"the arena refuses a {kind} it held a moment before ({answer.message})",
                {"cause": answer.to_dict()},
            )
