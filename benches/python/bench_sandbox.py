"""pytest-benchmark: the expression sandbox (creation and invocation).

Run: make bench, or
    python -m pytest benches/python/bench_sandbox.py --benchmark-only \
        --benchmark-columns=min,median,mean,ops,rounds

Figures to read (see docs/sandbox.md, "Speed"):
* creation: ``test_create_*`` ops = creations per second on one core (targets: >= 20,000/s
  for parse + validate + canonicalise + hash + insert).
* invocation: ``test_invoke_many_*`` and ``test_plain_*`` run a batch of ``BATCH`` calls;
  ``extra_info["per_second"]`` gives calls per second, and the ratio of the sandbox's batch
  time to the plain lambda's is the sandbox's overhead (target < 1.5x).
"""

from __future__ import annotations

import itertools

import pytest

from bfx.sandbox import canonicalize, compile_substrate

BATCH = 10_000
KW_LAMBDA = "lambda **kw: kw.get('x', 0) * kw.get('y', 0)"
NAMED_LAMBDA = "lambda x, y=2: x * y"


def _codes():
    # Distinct codes, as a registry creating new substrates sees them.
    return (f"lambda **kw: kw.get('x', 0) * kw.get('y', {i})" for i in itertools.count())


def _batch():
    return [{"x": i, "y": i + 1} for i in range(BATCH)]


def _per_second(benchmark) -> None:
    benchmark.extra_info["calls_per_batch"] = BATCH
    benchmark.extra_info["per_second"] = round(BATCH / benchmark.stats.stats.min)


# -- creation ------------------------------------------------------------------------------------


def test_create_canonicalize_small_lambda(benchmark):
    codes = _codes()
    benchmark(lambda: canonicalize("lambda", next(codes)))


def test_create_compile_substrate_small_lambda(benchmark):
    """parse + validate + canonicalise (the function itself is compiled on first call)."""
    codes = _codes()
    benchmark(lambda: compile_substrate("lambda", next(codes)))


def test_create_compile_substrate_and_build_function(benchmark):
    """As above plus building the Python function (what a cache miss on invoke costs)."""
    codes = _codes()
    benchmark(lambda: compile_substrate("lambda", next(codes)).compile())


def test_create_with_hash_and_insert(benchmark):
    """The registry's creation path: sandbox + 64-bit identity + arena insert."""
    core = pytest.importorskip("bfx._core")
    arena = core.Arena(1_000_000, 0)
    codes = _codes()

    def create():
        code = next(codes)
        compiled = compile_substrate("lambda", code)
        return arena.insert("lambda", code, compiled.canonical)

    benchmark(create)


def test_create_medium_expression(benchmark):
    codes = (
        f"P * (1 + r / n) ** (n * t) + max(0, spot - strike) * math.exp(-{i} * t) + sqrt(x)"
        for i in itertools.count()
    )
    benchmark(lambda: compile_substrate("expression", next(codes)))


# -- invocation ----------------------------------------------------------------------------------


def test_invoke_single_cached(benchmark):
    compiled = compile_substrate("lambda", KW_LAMBDA).compile()
    params = {"x": 6, "y": 7}
    benchmark(compiled.invoke, params)


def test_invoke_many_kw_lambda(benchmark):
    compiled = compile_substrate("lambda", KW_LAMBDA).compile()
    batch = _batch()
    assert compiled.invoke_many(batch)[3] == 12
    benchmark(compiled.invoke_many, batch)
    _per_second(benchmark)


def test_plain_kw_lambda(benchmark):
    """Baseline: the same lambda as plain Python, called the way a prototype would."""
    fn = eval(KW_LAMBDA)  # trusted benchmark code, the baseline being measured
    batch = _batch()
    benchmark(lambda: [fn(**p) for p in batch])
    _per_second(benchmark)


def test_invoke_many_named_lambda(benchmark):
    compiled = compile_substrate("lambda", NAMED_LAMBDA).compile()
    batch = _batch()
    benchmark(compiled.invoke_many, batch)
    _per_second(benchmark)


def test_plain_named_lambda(benchmark):
    fn = eval(NAMED_LAMBDA)  # trusted benchmark code, the baseline being measured
    batch = _batch()
    benchmark(lambda: [fn(**p) for p in batch])
    _per_second(benchmark)


def test_invoke_many_expression(benchmark):
    compiled = compile_substrate("expression", "x * y + 1").compile()
    batch = _batch()
    benchmark(compiled.invoke_many, batch)
    _per_second(benchmark)


def test_invoke_many_guarded_power(benchmark):
    """``x ** y`` needs a guard (and a deadline) on every call."""
    compiled = compile_substrate("expression", "x ** 3 + y ** x % 7").compile()
    batch = [{"x": i % 50, "y": i % 13} for i in range(BATCH)]
    benchmark(compiled.invoke_many, batch)
    _per_second(benchmark)


def test_invoke_many_general_path(benchmark):
    """Non-numeric parameters take the fully guarded general variant."""
    compiled = compile_substrate("lambda", "lambda **kw: kw.get('s', '') * kw.get('n', 0)")
    batch = [{"s": "ab", "n": i % 5} for i in range(BATCH)]
    benchmark(compiled.invoke_many, batch)
    _per_second(benchmark)
