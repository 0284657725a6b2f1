"""Graph traversal and algorithms over the relationship graph.

:class:`Graph` is composed by :class:`bfx.Registry` (its graph methods) and used by the
local graph service; the work runs in the Rust
core (``bfx._core.graph_*``) with the GIL released. This module validates arguments,
bounds every answer, and shapes the results. Semantics (how bidirectional edges,
multi-edges and self-loops count) are in ``docs/graph.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bfx import _core, errors, paging
from bfx._core import normalize_rel_type, parse_id
from bfx.tracing import span

__all__ = [
    "DIRECTIONS",
    "MAX_COMPONENTS_PAGE",
    "MAX_CYCLES",
    "MAX_CYCLE_IDS",
    "MAX_CYCLE_LENGTH",
    "MAX_DEPTH",
    "MAX_MEMBERS",
    "MAX_NODES",
    "MAX_PAGERANK_ITER",
    "MIN_PAGERANK_TOL",
    "PAGERANK_WORK",
    "Graph",
    "pagerank_iterations",
]

DIRECTIONS = ("outgoing", "incoming", "both")
#: Bounds that keep one call from pinning a server.
MAX_DEPTH = 32
MAX_NODES = 100_000
MAX_CYCLES = 10_000
#: Edge inspections one cycle enumeration may spend (``truncated`` when it runs out).
CYCLE_WORK = 20_000_000
#: Ids listed over all cycles of one answer, and the largest ``max_length``.
MAX_CYCLE_IDS = 100_000
MAX_CYCLE_LENGTH = 1000
#: Components and PageRank page like every list (``bfx.paging``).
MAX_COMPONENTS_PAGE = paging.MAX_PAGE
MAX_MEMBERS = 100_000
#: PageRank knobs: ``max_iter`` 1..1000, ``tol`` 1e-15..1 (below ~1e-15 the L1 change of
#: doubles cannot get under ``n * tol``), ``damping`` 0..1.
MAX_PAGERANK_ITER = 1000
MIN_PAGERANK_TOL = 1e-15
MAX_PAGERANK_TOL = 1.0
#: PageRank's work budget: iterations x (substrates + relationships) per call. One unit
#: costs ~3-6 ns, so a call runs at most ~2-3 s whatever the knobs (on 1M substrates /
#: 5M relationships: 83 iterations; on 50k / 250k: max_iter, 1000). When it runs out
#: first, the answer is the last iterate with ``converged: false``, as for ``max_iter``.
PAGERANK_WORK = 500_000_000


def _int(value: Any, field: str, low: int, high: int) -> int:
    """An integer within [low, high]: a wrong type or a value below is a
    ValidationError, a value above the bound a LimitExceededError."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise errors.ValidationError(f"{field} must be an integer", {"field": field})
    if value < low:
        raise errors.ValidationError(f"{field} must be at least {low}", {"field": field})
    if value > high:
        raise errors.LimitExceededError(
            f"{field} is {value}; the limit is {high}", {"field": field, "limit": high}
        )
    return value


def _direction(value: Any) -> str:
    if value not in DIRECTIONS:
        raise errors.ValidationError(
            "direction must be outgoing, incoming or both",
            {"field": "direction", "allowed": list(DIRECTIONS)},
        )
    return value


def _types(value: Iterable[str] | str | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out = []
    for name in value:
        if not isinstance(name, str):
            raise errors.InvalidRelationshipTypeError(
                "relationship_types must be a list of type names", {"field": "relationship_types"}
            )
        out.append(normalize_rel_type(name))
    # An empty list is no filter, as an empty query parameter is.
    return out or None


def _cursor(value: Any) -> int:
    """A page's offset: a ``bfx.paging`` position token (``next_cursor``), or in
    process an integer offset (0..paging.MAX_OFFSET)."""
    if value is None or isinstance(value, str):
        return paging.offset_of(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return paging.check_offset(value, "cursor")
    raise errors.ValidationError(
        "cursor must be a value returned as next_cursor", {"field": "cursor"}
    )


def _next_cursor(offset: int, page: int, total: int) -> str | None:
    return paging.next_offset_cursor(offset, page, total)


def pagerank_iterations(substrates: int, relationships: int, max_iter: int) -> int:
    """The iterations one PageRank call may run on a graph of this size: ``max_iter``
    within the work budget (``PAGERANK_WORK``), at least one."""
    return max(1, min(max_iter, PAGERANK_WORK // max(1, substrates + relationships)))


def _float(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise errors.ValidationError(f"{field} must be a number", {"field": field})
    return float(value)


class Graph:
    """The graph algorithms over an arena's relationships (the work runs in the Rust
    core with the GIL released). ``substrate`` makes an arena record the substrate a
    traversal includes (the Registry's makes a ``Substrate`` with its count)."""

    def __init__(self, arena: _core.Arena, substrate: Callable[[tuple], Any]) -> None:
        self._arena = arena
        self._substrate = substrate

    def traverse(
        self,
        start_id: int | str,
        direction: str = "outgoing",
        max_depth: int = 3,
        relationship_types: Iterable[str] | None = None,
        include_substrates: bool = False,
        max_nodes: int = 10_000,
        *,
        substrate: Callable[[tuple], Any] | None = None,
    ) -> dict[str, Any]:
        """Breadth-first walk from ``start_id`` (depth 0) up to ``max_depth`` steps.

        Returns ``nodes`` (``{"substrate_id", "depth"}`` in breadth-first order, plus
        ``"substrate"`` with ``include_substrates``: the arena record made a
        ``Substrate``, or whatever ``substrate(record)`` makes it), ``edges`` (each relationship
        crossed from a node above ``max_depth`` to a returned node, once),
        ``paths`` (a list, one per node in the order of ``nodes``: the ids from
        the start to that node) and ``truncated`` (``max_nodes`` stopped the walk).
        """
        start = parse_id(start_id)
        direction = _direction(direction)
        max_depth = _int(max_depth, "max_depth", 0, MAX_DEPTH)
        max_nodes = _int(max_nodes, "max_nodes", 1, MAX_NODES)
        if not isinstance(include_substrates, bool):
            raise errors.ValidationError(
                "include_substrates must be a boolean", {"field": "include_substrates"}
            )
        with span("bfx.graph.traverse"):  # the core call, GIL released
            nodes, edges, truncated = _core.graph_traverse(
                self._arena, start, direction, max_depth, _types(relationship_types), max_nodes
            )
        out_nodes: list[dict[str, Any]] = []
        paths: list[list[int]] = []
        for node_id, depth, parent, _via in nodes:
            paths.append([node_id] if parent < 0 else [*paths[parent], node_id])
            out_nodes.append({"substrate_id": node_id, "depth": depth})
        if include_substrates:
            as_substrate = substrate or self._substrate
            records = self._arena.get_many([n["substrate_id"] for n in out_nodes])
            for n, r in zip(out_nodes, records, strict=True):
                n["substrate"] = None if r is None else as_substrate(r)
        out_edges = [
            {
                "relationship_id": rid,
                "rel_type": rel,
                "source_id": src,
                "target_id": dst,
                "bidirectional": bi,
            }
            for rid, rel, src, dst, bi in edges
        ]
        return {
            "start_substrate_id": start,
            "nodes": out_nodes,
            "edges": out_edges,
            "paths": paths,
            "truncated": truncated,
        }

    def shortest_path(
        self,
        source_id: int | str,
        target_id: int | str,
        relationship_types: Iterable[str] | None = None,
        direction: str = "outgoing",
    ) -> list[int]:
        """The fewest-steps path from source to target, both included.

        Raises NotFoundError for an unknown substrate and NoPathError (``no_path``,
        404) when none exists.
        """
        src, dst = parse_id(source_id), parse_id(target_id)
        with span("bfx.graph.shortest_path"):  # the core call, GIL released
            path = _core.graph_shortest_path(
                self._arena, src, dst, _direction(direction), _types(relationship_types)
            )
        if path is None:
            raise errors.NoPathError(
                "no path between the substrates",
                {
                    "source_id": _core.format_id(src),
                    "target_id": _core.format_id(dst),
                    "direction": direction,
                },
            )
        return path

    def cycles(
        self,
        limit: int = 100,
        relationship_types: Iterable[str] | None = None,
        max_length: int | None = None,
    ) -> dict[str, Any]:
        """``has_cycle`` (exact), up to ``limit`` simple cycles (lists of ids; a
        self-loop is a one-node cycle, a bidirectional edge a two-node cycle) of at
        most ``max_length`` nodes each (any length when None), and ``truncated`` when
        more may exist than were listed. At most ``MAX_CYCLE_IDS`` ids are listed in
        all: on a large graph, pass ``max_length`` to get short cycles."""
        limit = _int(limit, "limit", 0, MAX_CYCLES)
        if max_length is not None:
            max_length = _int(max_length, "max_length", 1, MAX_CYCLE_LENGTH)
        with span("bfx.graph.cycles"):  # the core call, GIL released
            has_cycle, cycles, truncated = _core.graph_cycles(
                self._arena,
                limit,
                CYCLE_WORK,
                _types(relationship_types),
                max_length,
                MAX_CYCLE_IDS,
            )
        return {"has_cycle": has_cycle, "cycles": cycles, "truncated": truncated}

    def components(
        self,
        limit: int = 100,
        cursor: int | str | None = None,
        member_limit: int = 1000,
        relationship_types: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """A page of the strongly connected components (singletons included),
        largest first, then by smallest id. Each is ``{"size", "substrate_ids",
        "truncated"}`` with ids ascending, at most ``member_limit`` of them;
        ``count`` is the number of components, ``next_cursor`` the next page."""
        limit = _int(limit, "limit", 1, MAX_COMPONENTS_PAGE)
        member_limit = _int(member_limit, "member_limit", 1, MAX_MEMBERS)
        offset = _cursor(cursor)
        with span("bfx.graph.components"):  # the core call, GIL released
            count, page = _core.graph_components(
                self._arena, offset, limit, member_limit, _types(relationship_types)
            )
        return {
            "components": [
                {"size": size, "substrate_ids": ids, "truncated": size > len(ids)}
                for size, ids in page
            ],
            "count": count,
            "next_cursor": _next_cursor(offset, len(page), count),
        }

    def pagerank(
        self,
        damping: float = 0.85,
        tol: float = 1e-6,
        max_iter: int = 100,
        limit: int | None = None,
        cursor: int | str | None = None,
        relationship_types: Iterable[str] | None = None,
    ) -> dict[str, Any]:
        """PageRank over the whole graph (NetworkX semantics, scores sum to 1).

        ``scores`` maps id -> score, highest first (ties by smaller id), for the
        page ``cursor..cursor + limit`` (everything when ``limit`` is None);
        ``count`` is the number of substrates, ``converged`` False when
        ``max_iter`` or the work budget (``PAGERANK_WORK``) ran out first (the last
        iterate is returned). Knobs out of range are 422s naming the field:
        ``damping`` 0..1, ``tol`` ``MIN_PAGERANK_TOL``..1, ``max_iter``
        1..``MAX_PAGERANK_ITER``, ``limit`` 1..``paging.MAX_PAGE``.
        """
        damping = _float(damping, "damping")
        if not 0.0 <= damping <= 1.0:
            raise errors.ValidationError("damping must be within [0, 1]", {"field": "damping"})
        tol = _float(tol, "tol")
        if not MIN_PAGERANK_TOL <= tol <= MAX_PAGERANK_TOL:
            raise errors.ValidationError(
                f"tol must be within [{MIN_PAGERANK_TOL:g}, {MAX_PAGERANK_TOL:g}]",
                {"field": "tol", "minimum": MIN_PAGERANK_TOL, "maximum": MAX_PAGERANK_TOL},
            )
        max_iter = _int(max_iter, "max_iter", 1, MAX_PAGERANK_ITER)
        if limit is not None:
            limit = _int(limit, "limit", 1, paging.MAX_PAGE)
        offset = _cursor(cursor)
        budget = pagerank_iterations(len(self._arena), self._arena.relationship_count, max_iter)
        with span("bfx.graph.pagerank"):  # the core call, GIL released
            count, page, iterations, converged = _core.graph_pagerank(
                self._arena, damping, tol, budget, offset, limit, _types(relationship_types)
            )
        return {
            "scores": dict(page),
            "count": count,
            "iterations": iterations,
            "converged": converged,
            "next_cursor": _next_cursor(offset, len(page), count),
        }

    def relationship_stats(self) -> dict[str, Any]:
        """Totals by type, degrees and isolated substrates, in one O(V + E) pass.

        The degree of a substrate is the number of relationship ends at it (a
        relationship adds one at its source and one at its target, bidirectional or
        not; a self-loop adds two). Keys match the ``/relationships/stats`` answer.
        """
        s = _core.graph_stats(self._arena)
        return {
            "total_relationships": s["total_relationships"],
            "total_substrates": s["total_substrates"],
            "by_type": dict(sorted(s["by_type"].items())),
            "avg_connections_per_substrate": round(s["avg_degree"], 6),
            "max_connections": s["max_degree"],
            "isolated_substrates": s["isolated_substrates"],
        }
