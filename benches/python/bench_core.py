"""pytest-benchmark: the Rust arena through the Python boundary.

Paired with benches/rust/core.rs (group ``pair``): the tests that set
``extra_info["pair"]`` run the same operations on the same data as the Rust
benchmark of that name, ``extra_info["ops"]`` operations per call, so
``benches/summary.py`` can print Rust ns vs Python ns per operation.

Run: make bench, or
    python -m pytest benches/python/bench_core.py --benchmark-only
"""

from __future__ import annotations

import itertools

import pytest

from bfx._core import REL_TYPES, Arena

N = 100_000
CALLS = 1000
STRIDE = 7919
METADATA = b'{"name":"bench"}'


def _code(i: int) -> str:
    return f"lambda **kw: kw.get('x', 0) * {i}"


def _rows(start: int, n: int) -> list[tuple]:
    return [("lambda", _code(i), _code(i), METADATA, None, None) for i in range(start, start + n)]


def _pair(benchmark, name: str, ops: int) -> None:
    benchmark.extra_info["pair"] = name
    benchmark.extra_info["ops"] = ops


@pytest.fixture(scope="module")
def filled():
    """The fixture of benches/rust/core.rs: N substrates, 3 relationships each, a hub."""
    arena = Arena(N, 3 * N + 10_000)
    ids, _ = arena.insert_many(_rows(0, N))
    edges = [
        (REL_TYPES[k], s, ids[(i * 31 + k * 7919) % N], k == 3, b"", None)
        for i, s in enumerate(ids)
        for k in (1, 2, 3)
    ]
    edges += [("DEPENDENCY", ids[0], t, False, b"", None) for t in ids[1:10_001]]
    results, _ = arena.link_many(edges)
    assert all(isinstance(r, int) for r in results)
    return arena, ids


@pytest.fixture(scope="module")
def visit(filled):
    """Every id once, in a scattered order (as in Rust): each call pays the cache
    misses of a random lookup rather than hitting a small hot set."""
    _, ids = filled
    return [ids[(j * STRIDE) % N] for j in range(N)]


# -- paired with Rust -----------------------------------------------------------------------------


def test_insert_single_x1000(benchmark):
    """Arena.insert, one call per substrate, into a fresh arena (as Rust pair/insert)."""
    _pair(benchmark, "insert", CALLS)
    rows = _rows(10_000_000, CALLS)
    codes = [r[1] for r in rows]

    def run(arena):
        insert = arena.insert
        for code in codes:
            insert("lambda", code, code, METADATA)

    benchmark.pedantic(run, setup=lambda: ((Arena(),), {}), rounds=300, iterations=1)


def test_insert_many_100k(benchmark):
    _pair(benchmark, "insert_many", N)
    rows = _rows(0, N)

    def run(arena):
        results, _ = arena.insert_many(rows)
        assert len(results) == N

    benchmark.pedantic(run, setup=lambda: ((Arena(N),), {}), rounds=10, iterations=1)


def test_get_all(benchmark, filled, visit):
    """Arena.get of every id, scattered order (as Rust pair/get)."""
    _pair(benchmark, "get", N)
    get = filled[0].get

    def run():
        for i in visit:
            get(i)

    benchmark(run)


def test_get_many_1000(benchmark, filled, visit):
    _pair(benchmark, "get_many", CALLS)
    benchmark(filled[0].get_many, visit[:CALLS])


def test_outgoing_all(benchmark, filled, visit):
    """Arena.outgoing of every id, typical degree (~4: three edges plus the reverse of
    a bidirectional one), scattered order (as Rust pair/outgoing)."""
    _pair(benchmark, "outgoing", N)
    outgoing = filled[0].outgoing

    def run():
        for i in visit:
            outgoing(i)

    benchmark(run)


def test_outgoing_hub_page_of_100(benchmark, filled):
    _pair(benchmark, "outgoing_hub_page", 1)
    arena, ids = filled
    benchmark(arena.outgoing, ids[0], None, 0, 100)


def test_link_unlink(benchmark, filled):
    _pair(benchmark, "link_unlink", 1)
    arena, ids = filled
    a, b = ids[1], ids[2]

    def run():
        arena.unlink(arena.link("ORTHOGONAL", a, b))

    benchmark(run)


def test_link_many_30k(benchmark):
    """30,000 relationships into a fresh arena of 10,000 substrates."""
    _pair(benchmark, "link_many", 30_000)
    n = 10_000

    def setup():
        arena = Arena(n, 3 * n)
        sids, _ = arena.insert_many(_rows(0, n))
        rows = [
            (REL_TYPES[k], sids[i], sids[(i * 31 + k * 7919) % n], k == 3, b"", None)
            for i in range(n)
            for k in (1, 2, 3)
        ]
        return (arena, rows), {}

    def run(arena, rows):
        results, _ = arena.link_many(rows)
        assert len(results) == 3 * n

    benchmark.pedantic(run, setup=setup, rounds=15, iterations=1)


def test_dump(benchmark, filled):
    _pair(benchmark, "dump", 1)
    benchmark.pedantic(filled[0].dump, rounds=10, iterations=1)


def test_load(benchmark, filled):
    _pair(benchmark, "load", 1)
    blob = filled[0].dump()
    again = benchmark.pedantic(Arena.from_dump, args=(blob,), rounds=10, iterations=1)
    assert len(again) == N


# -- Python only (context for the figures in BENCHMARKS.md) ---------------------------------------


def test_get_single_bound_method(benchmark, filled):
    """The bare call cost: one fixed id, no Python-side iteration."""
    benchmark.extra_info["note"] = "the call itself: one fixed (cached) id"
    arena, ids = filled
    benchmark(arena.get, ids[12345])


def test_get_single_cycling(benchmark, filled):
    benchmark.extra_info["note"] = "one get per benchmark call, cycling over 1,031 ids"
    arena, ids = filled
    cycle = itertools.cycle(ids[::97])
    benchmark(lambda: arena.get(next(cycle)))


def test_insert_many_1m(benchmark):
    """The issue-2 target: 1,000,000 rows in one call in < 1 s."""
    benchmark.extra_info["note"] = "issue-2 target: 1M rows in one call < 1 s"
    benchmark.extra_info["ops"] = 1_000_000
    rows = [("lambda", _code(i), _code(i), b"", None, None) for i in range(1_000_000)]

    def run():
        arena = Arena(1_000_000)
        results, _ = arena.insert_many(rows)
        assert len(results) == 1_000_000

    benchmark.pedantic(run, rounds=3, iterations=1)


def test_registry_get(benchmark):
    from bfx import Registry

    benchmark.extra_info["note"] = "the Registry facade: record -> Substrate object"
    reg = Registry()
    s = reg.create("lambda", "lambda x, y=2: x * y", {"name": "double"})
    benchmark(reg.get, s.identity)
    reg.close()
