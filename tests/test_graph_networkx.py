"""The graph algorithms against NetworkX on hypothesis-generated graphs.

Graphs are built through the Registry with self-loops, bidirectional edges, several
typed edges between the same pair, disconnected parts and deleted substrates. The
NetworkX reference is the simple digraph of docs/graph.md: a bidirectional
relationship is both ``u -> v`` and ``v -> u``, parallel relationships collapse.
"""

from __future__ import annotations

import itertools
from typing import Any

import networkx as nx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from networkx.algorithms.link_analysis.pagerank_alg import _pagerank_python

from bfx import Registry, _core, errors

TYPES = ("DEPENDENCY", "SIBLING", "CYCLE")
DIRS = ("outgoing", "incoming", "both")


@st.composite
def graphs(draw: Any, max_nodes: int = 9) -> dict[str, Any]:
    n = draw(st.integers(1, max_nodes))
    edges = draw(
        st.lists(
            st.tuples(
                st.integers(0, n - 1), st.integers(0, n - 1), st.sampled_from(TYPES), st.booleans()
            ),
            max_size=3 * n,
        )
    )
    deleted = draw(st.sets(st.integers(0, n - 1), max_size=max(0, n - 1)))
    return {"n": n, "edges": edges, "deleted": deleted}


def build(spec: dict[str, Any]) -> tuple[Registry, list[int], list[Any]]:
    reg = Registry()
    ids = [reg.create("constant", str(i)).identity for i in range(spec["n"])]
    items = [
        {"rel_type": t, "source_id": ids[u], "target_id": ids[v], "bidirectional": b}
        for u, v, t, b in spec["edges"]
    ]
    reg.relate_many(items)  # repeats of (u, v, type) fail alone as duplicates
    for i in sorted(spec["deleted"]):
        reg.delete(ids[i])
    live = [i for k, i in enumerate(ids) if k not in spec["deleted"]]
    rels = list(reg.iter_relationships())
    return reg, live, rels


def digraph(live: list[int], rels: list[Any], types: set[str] | None = None) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_nodes_from(live)
    for r in rels:
        if types is not None and r.rel_type not in types:
            continue
        g.add_edge(r.source, r.target)
        if r.bidirectional:
            g.add_edge(r.target, r.source)
    return g


def oriented(g: nx.DiGraph, direction: str) -> nx.DiGraph:
    if direction == "outgoing":
        return g
    if direction == "incoming":
        return g.reverse(copy=True)
    u = nx.DiGraph(g)
    u.add_edges_from([(b, a) for a, b in g.edges])
    return u


def norm(cycle: list[int]) -> tuple[int, ...]:
    i = cycle.index(min(cycle))
    return tuple(cycle[i:] + cycle[:i])


@given(graphs())
def test_components_match(spec):
    reg, live, rels = build(spec)
    g = digraph(live, rels)
    want = {frozenset(c) for c in nx.strongly_connected_components(g)}
    got = reg.components(limit=1000)
    assert got["count"] == len(want)
    assert got["next_cursor"] is None
    comps = got["components"]
    assert {frozenset(c["substrate_ids"]) for c in comps} == want
    sizes = [c["size"] for c in comps]
    assert sizes == sorted(sizes, reverse=True)
    for c in comps:
        assert c["substrate_ids"] == sorted(c["substrate_ids"])
        assert not c["truncated"]
    # Paging walks the same list.
    paged, cursor = [], None
    while True:
        page = reg.components(limit=2, cursor=cursor, member_limit=1)
        paged += [(c["size"], c["substrate_ids"][0]) for c in page["components"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert paged == [(c["size"], c["substrate_ids"][0]) for c in comps]


@given(graphs(), st.sampled_from([0.85, 0.5, 0.99]))
def test_pagerank_matches(spec, damping):
    reg, live, rels = build(spec)
    g = digraph(live, rels)
    got = reg.pagerank(damping=damping)
    try:
        want = _pagerank_python(g, alpha=damping, tol=1e-6, max_iter=100)
    except nx.PowerIterationFailedConvergence:
        # NetworkX raises; the core says so and returns the last iterate.
        assert not got["converged"]
        assert got["iterations"] == 100
        assert sum(got["scores"].values()) == pytest.approx(1.0, abs=1e-9)
        return
    assert got["converged"]
    assert got["count"] == len(live)
    assert got["scores"].keys() == want.keys()
    for k, v in want.items():
        assert got["scores"][k] == pytest.approx(v, abs=1e-9)
    assert sum(got["scores"].values()) == pytest.approx(1.0, abs=1e-9)
    ranked = list(got["scores"].items())
    assert ranked == sorted(ranked, key=lambda kv: (-kv[1], kv[0]))
    top = reg.pagerank(damping=damping, limit=2)
    assert list(top["scores"].items()) == ranked[:2]


@given(graphs(max_nodes=8), st.integers(0, 40))
def test_cycles_match(spec, limit):
    reg, live, rels = build(spec)
    g = digraph(live, rels)
    got = reg.cycles(limit=limit)
    assert got["has_cycle"] == (not nx.is_directed_acyclic_graph(g))
    want = {norm(c) for c in itertools.islice(nx.simple_cycles(g), limit + 1)}
    cycles = [norm(c) for c in got["cycles"]]
    assert len(set(cycles)) == len(cycles)
    if len(want) <= limit:
        assert set(cycles) == want
        assert not got["truncated"]
    else:
        assert len(cycles) == limit
        assert got["truncated"]
        everything = {norm(c) for c in nx.simple_cycles(g)}
        assert set(cycles) <= everything


@given(graphs(max_nodes=8), st.integers(1, 4))
def test_short_cycles_match(spec, max_length):
    reg, live, rels = build(spec)
    g = digraph(live, rels)
    got = reg.cycles(limit=10_000, max_length=max_length)
    want = {norm(c) for c in nx.simple_cycles(g, length_bound=max_length)}
    assert {norm(c) for c in got["cycles"]} == want
    assert len(got["cycles"]) == len(want)
    assert not got["truncated"]
    assert got["has_cycle"] == (not nx.is_directed_acyclic_graph(g))


@given(graphs(), st.data())
def test_shortest_paths_match(spec, data):
    reg, live, rels = build(spec)
    direction = data.draw(st.sampled_from(DIRS))
    types = data.draw(st.none() | st.sets(st.sampled_from(TYPES), min_size=1))
    g = oriented(digraph(live, rels, types), direction)
    src, dst = data.draw(st.sampled_from(live)), data.draw(st.sampled_from(live))
    if nx.has_path(g, src, dst):
        path = reg.shortest_path(
            src, dst, relationship_types=types and sorted(types), direction=direction
        )
        assert len(path) == nx.shortest_path_length(g, src, dst) + 1
        assert path[0] == src
        assert path[-1] == dst
        assert all(g.has_edge(a, b) for a, b in itertools.pairwise(path))
    else:
        with pytest.raises(errors.NoPathError) as info:
            reg.shortest_path(
                src, dst, relationship_types=types and sorted(types), direction=direction
            )
        assert info.value.code == "no_path"
        assert info.value.status == 404


@given(graphs(), st.data())
def test_traverse_matches(spec, data):
    reg, live, rels = build(spec)
    direction = data.draw(st.sampled_from(DIRS))
    types = data.draw(st.none() | st.sets(st.sampled_from(TYPES), min_size=1))
    depth = data.draw(st.integers(0, 4))
    g = oriented(digraph(live, rels, types), direction)
    start = data.draw(st.sampled_from(live))
    got = reg.traverse(
        start, direction=direction, max_depth=depth, relationship_types=types and sorted(types)
    )
    want = nx.single_source_shortest_path_length(g, start, cutoff=depth)
    assert not got["truncated"]
    assert got["nodes"][0] == {"substrate_id": start, "depth": 0}
    assert {n["substrate_id"]: n["depth"] for n in got["nodes"]} == want
    depths = [n["depth"] for n in got["nodes"]]
    assert depths == sorted(depths)
    layers = _core.graph_bfs(reg.arena, start, direction, depth, types and sorted(types))
    assert [sorted(layer) for layer in layers] == [
        sorted(k for k, d in want.items() if d == level) for level in range(len(layers))
    ]
    assert sum(map(len, layers)) == len(want)
    assert len(got["paths"]) == len(got["nodes"])
    for n, path in zip(got["nodes"], got["paths"], strict=True):
        node = n["substrate_id"]
        assert len(path) == want[node] + 1
        assert path[0] == start
        assert path[-1] == node
        assert all(g.has_edge(a, b) for a, b in itertools.pairwise(path))
    # Crossed: every relationship with an orientation the direction allows from a
    # node above the depth bound to a reached node, once.
    expected = set()
    for r in rels:
        if types is not None and r.rel_type not in types:
            continue
        ways = {(r.source, r.target)}
        if direction == "incoming":
            ways = {(r.target, r.source)}
        if r.bidirectional or direction == "both":
            ways = {(r.source, r.target), (r.target, r.source)}
        if any(u in want and want[u] < depth and v in want for u, v in ways):
            expected.add(r.identity)
    crossed = [e["relationship_id"] for e in got["edges"]]
    assert len(crossed) == len(set(crossed))
    assert set(crossed) == expected


@given(graphs(), st.integers(1, 4))
def test_traverse_truncates_to_max_nodes(spec, max_nodes):
    reg, live, rels = build(spec)
    g = oriented(digraph(live, rels), "both")
    start = live[0]
    reach = nx.single_source_shortest_path_length(g, start, cutoff=3)
    got = reg.traverse(start, direction="both", max_depth=3, max_nodes=max_nodes)
    kept = {n["substrate_id"]: n["depth"] for n in got["nodes"]}
    assert len(kept) == min(max_nodes, len(reach))
    assert got["truncated"] == (len(reach) > max_nodes)
    assert all(reach[k] == d for k, d in kept.items())
    for e in got["edges"]:
        assert e["source_id"] in kept
        assert e["target_id"] in kept


@given(graphs())
def test_stats_match(spec):
    reg, live, rels = build(spec)
    stats = reg.relationship_stats()
    degree = dict.fromkeys(live, 0)
    by_type: dict[str, int] = {}
    for r in rels:
        degree[r.source] += 1
        degree[r.target] += 1
        by_type[r.rel_type] = by_type.get(r.rel_type, 0) + 1
    assert stats["total_relationships"] == len(rels)
    assert stats["total_substrates"] == len(live)
    assert stats["by_type"] == by_type
    assert stats["max_connections"] == max(degree.values())
    assert stats["isolated_substrates"] == sum(1 for d in degree.values() if d == 0)
    assert stats["avg_connections_per_substrate"] == pytest.approx(2 * len(rels) / len(live))


def test_arguments_are_bounded_and_checked():
    reg = Registry()
    a = reg.create("constant", "1").identity
    b = reg.create("constant", "2").identity
    with pytest.raises(errors.LimitExceededError):
        reg.traverse(a, max_depth=33)
    with pytest.raises(errors.LimitExceededError):
        reg.traverse(a, max_nodes=100_001)
    with pytest.raises(errors.ValidationError):
        reg.traverse(a, max_depth=-1)
    with pytest.raises(errors.ValidationError):
        reg.traverse(a, direction="sideways")
    with pytest.raises(errors.InvalidRelationshipTypeError):
        reg.traverse(a, relationship_types=["FRIEND"])
    with pytest.raises(errors.NotFoundError):
        reg.traverse(12345)
    with pytest.raises(errors.NotFoundError) as info:
        reg.shortest_path(a, 12345)
    assert not isinstance(info.value, errors.NoPathError)
    with pytest.raises(errors.NoPathError):
        reg.shortest_path(a, b)
    assert reg.shortest_path(a, a) == [a]
    with pytest.raises(errors.LimitExceededError):
        reg.cycles(limit=10_001)
    with pytest.raises(errors.ValidationError):
        reg.cycles(max_length=0)
    with pytest.raises(errors.ValidationError):
        reg.components(cursor="nope")
    with pytest.raises(errors.ValidationError):
        reg.pagerank(damping=1.5)
    with pytest.raises(errors.ValidationError):
        reg.pagerank(tol=0)
    reg.relate("DEPENDENCY", a, b)
    one = reg.pagerank(max_iter=1)
    assert one["iterations"] == 1
    assert one["converged"] is False
    empty = Registry()
    assert empty.pagerank() == {
        "scores": {},
        "count": 0,
        "iterations": 0,
        "converged": True,
        "next_cursor": None,
    }
    assert empty.components() == {"components": [], "count": 0, "next_cursor": None}
    assert empty.cycles() == {"has_cycle": False, "cycles": [], "truncated": False}


def test_include_substrates_and_relationship_filter_by_name_in_any_case():
    reg = Registry()
    a = reg.create("constant", "1").identity
    b = reg.create("constant", "2").identity
    reg.relate("dependency", a, b)
    got = reg.traverse(a, include_substrates=True, relationship_types=["Dependency"])
    assert [n["substrate"].identity for n in got["nodes"]] == [a, b]
    assert len(reg.traverse(a, relationship_types=[])["nodes"]) == 2
    assert reg.traverse(a, relationship_types="SIBLING")["nodes"] == [
        {"substrate_id": a, "depth": 0}
    ]


def test_a_big_path_graph_does_not_overflow_the_stack():
    reg = Registry()
    n = 200_000
    rows = [("constant", str(i), str(i), b"", None, None) for i in range(n)]
    ids, _ = reg.arena.insert_many(rows)
    links = [("DEPENDENCY", ids[i], ids[i + 1], False, b"", None) for i in range(n - 1)]
    links.append(("DEPENDENCY", ids[-1], ids[0], False, b"", None))
    reg.arena.link_many(links)
    comps = reg.components(limit=1, member_limit=3)
    assert comps["count"] == 1
    assert comps["components"][0]["size"] == n
    # The one cycle is longer than an answer may list: has_cycle, none listed.
    assert reg.cycles(limit=2) == {"has_cycle": True, "cycles": [], "truncated": True}
    has_cycle, cycles, truncated = _core.graph_cycles(reg.arena, 2)
    assert has_cycle
    assert [len(c) for c in cycles] == [n]
    assert not truncated
    assert len(reg.shortest_path(ids[0], ids[-1])) == n


def test_graph_calls_run_alongside_writers():
    """Algorithms hold the read lock only while computing: writers and readers
    interleave without deadlock, and every answer is of one consistent graph."""
    import random
    import threading
    from concurrent.futures import ThreadPoolExecutor

    reg = Registry()
    rows = [("constant", str(i), str(i), b"", None, None) for i in range(2000)]
    ids, _ = reg.arena.insert_many(rows)
    stop = threading.Event()

    def writer(seed: int) -> int:
        # Each writer links distinct pairs with a type of its own, so no write
        # fails: (bfx._core builds a failed write's error while still holding
        # the write lock, which two writers can deadlock on; see the report.)
        rnd = random.Random(seed)
        rel = TYPES[seed]
        made = 0
        for i in itertools.count():
            if stop.is_set() or i >= len(ids) * 50:
                break
            a, b = ids[i % len(ids)], ids[(i // len(ids) + 1 + i) % len(ids)]
            rid = reg.arena.link(rel, a, b, rnd.random() < 0.2)
            made += 1
            if rnd.random() < 0.3:
                reg.arena.unlink(rid)
        return made

    def reader() -> None:
        for _ in range(15):
            pr = reg.pagerank()
            assert pr["count"] == len(ids)
            assert sum(pr["scores"].values()) == pytest.approx(1.0, abs=1e-9)
            comps = reg.components(limit=5)
            assert sum(c["size"] for c in comps["components"]) <= len(ids)
            reg.cycles(limit=5)
            t = reg.traverse(ids[0], direction="both", max_depth=2)
            assert t["nodes"][0]["substrate_id"] == ids[0]

    with ThreadPoolExecutor(4) as pool:
        writers = [pool.submit(writer, s) for s in (1, 2)]
        readers = [pool.submit(reader) for _ in range(2)]
        for f in readers:
            f.result(timeout=120)
        stop.set()
        assert all(f.result(timeout=30) > 0 for f in writers)
