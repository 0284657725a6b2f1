"""pytest-benchmark: the Rust arena through the Python boundary.

Paired with benches/rust/core.rs (the same operations without Python).
Run: make bench, or
    python -m pytest benches/python/bench_core.py --benchmark-only
"""

from __future__ import annotations

import itertools

import pytest

from bfx._core import Arena

N = 100_000


def _code(i: int) -> str:
    return f"lambda **kw: kw.get('x', 0) * {i}"


@pytest.fixture(scope="module")
def filled():
    arena = Arena(N, 3 * N)
    rows = [("lambda", _code(i), _code(i), b'{"name":"bench"}', None, None) for i in range(N)]
    ids, _ = arena.insert_many(rows)
    for i, s in enumerate(ids):
        for k in (1, 2, 3):
            arena.link(
                ("SIBLING", "DEPENDENCY", "ADJACENCY")[k - 1], s, ids[(i * 31 + k * 7919) % N]
            )
    return arena, ids


def test_get_single(benchmark, filled):
    arena, ids = filled
    cycle = itertools.cycle(ids[::97])
    benchmark(lambda: arena.get(next(cycle)))


def test_get_single_bound_method(benchmark, filled):
    """The bare call cost: one fixed id, no Python-side iteration."""
    arena, ids = filled
    benchmark(arena.get, ids[12345])


def test_get_many_1000(benchmark, filled):
    arena, ids = filled
    batch = ids[:1000]
    benchmark(arena.get_many, batch)


def test_insert_single_x1000(benchmark):
    counter = itertools.count()

    def run():
        arena = Arena()
        base = next(counter) * 1000
        for i in range(base, base + 1000):
            code = _code(i)
            arena.insert("lambda", code, code)

    benchmark(run)


def test_insert_many_1m(benchmark):
    rows = [("lambda", _code(i), _code(i), b"", None, None) for i in range(1_000_000)]

    def run():
        arena = Arena(1_000_000)
        results, _ = arena.insert_many(rows)
        assert len(results) == 1_000_000

    benchmark.pedantic(run, rounds=3, iterations=1)


def test_outgoing_typical(benchmark, filled):
    arena, ids = filled
    cycle = itertools.cycle(ids[::89])
    benchmark(lambda: arena.outgoing(next(cycle)))


def test_registry_get(benchmark):
    from bfx import Registry

    reg = Registry()
    s = reg.create("lambda", "lambda x, y=2: x * y", {"name": "double"})
    benchmark(reg.get, s.identity)
