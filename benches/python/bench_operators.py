"""pytest-benchmark: the Registry's invoke and operators.

These exist only in Python (DESIGN.md §1: the sandbox and the operator
semantics are Python; the Rust core stores and hashes), so they have no
criterion pair; ``benches/summary.py`` lists them as Python only.

Run: make bench, or
    python -m pytest benches/python/bench_operators.py --benchmark-only
"""

from __future__ import annotations

import itertools

import pytest

from bfx import Registry

WHY = "sandbox and operators are Python (DESIGN.md §1)"
BATCH = 1000


def _python_only(benchmark, ops: int = 1) -> None:
    benchmark.extra_info["python_only"] = WHY
    benchmark.extra_info["ops"] = ops


@pytest.fixture(scope="module")
def reg():
    registry = Registry()
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def mul(reg):
    return reg.create("lambda", "lambda x, y=2: x * y", {"name": "double"}).identity


@pytest.fixture(scope="module")
def kw(reg):
    return reg.create("lambda", "lambda **kw: kw.get('x', 0) * kw.get('y', 0)").identity


def test_registry_create(benchmark, reg):
    """sandbox compile + identity hash + arena insert (+ the store, if any)."""
    _python_only(benchmark)
    codes = (f"lambda **kw: kw.get('x', 0) * kw.get('y', {i})" for i in itertools.count(1_000))
    benchmark(lambda: reg.create("lambda", next(codes), {"name": "bench"}))


def test_registry_invoke(benchmark, reg, kw):
    _python_only(benchmark)
    params = {"x": 6, "y": 7}
    benchmark(reg.invoke, kw, params)


def test_registry_invoke_many_1000(benchmark, reg, kw):
    _python_only(benchmark, BATCH)
    items = [(kw, {"x": i, "y": 3}) for i in range(BATCH)]
    benchmark(reg.invoke_many, items)


def test_operator_multiply(benchmark, reg):
    _python_only(benchmark)
    benchmark(reg.multiply, [1, 1, 2, 3, 5, 8, 13, 21, 34])


def test_operator_divide(benchmark, reg, mul):
    _python_only(benchmark)
    benchmark(reg.divide, mul)


def test_operator_add(benchmark, reg, mul):
    _python_only(benchmark)
    benchmark(reg.add, mul, 5, {"x": 21})


def test_operator_modulus(benchmark, reg, mul):
    _python_only(benchmark)
    benchmark(reg.modulus, mul, 7, {"x": 50})


def test_operator_power(benchmark, reg, mul):
    _python_only(benchmark)
    benchmark(reg.power, mul, 2**40 + 3, {"x": 3})


def test_operator_root(benchmark, reg, mul):
    _python_only(benchmark)
    benchmark(reg.root, mul, 3, {"x": 2**40})
