"""Benign formulas: physics, finance, geometry and friends, with exact expected results."""

from __future__ import annotations

import math

import pytest

from bfx.errors import InvocationError
from bfx.sandbox import (
    DEFAULT_LIMITS,
    EXPRESSION_TYPES,
    Compiled,
    Limits,
    compile_substrate,
    validate_parameters,
)

pytestmark = pytest.mark.timeout(60)

L, E, C = "lambda", "expression", "constant"

# (type, code, parameters, expected result)
CASES: list[tuple[str, str, dict | None, object]] = [
    # -- the design's own examples
    (L, "lambda **kw: kw.get('x', 0) * kw.get('y', 0)", {"x": 6, "y": 7}, 42),
    (L, "lambda **kw: kw.get('x', 0) * kw.get('y', 0)", {}, 0),
    (L, "lambda **kw: kw.get('x', 0) * kw.get('y', 0)", {"x": 2.5}, 0.0),
    (L, "lambda x, y=2: x * y", {"x": 21}, 42),
    (L, "lambda x, y=2: x * y", {"x": 3, "y": 5}, 15),
    (E, "x * y + 1", {"x": 6, "y": 7}, 43),
    (C, "42", None, 42),
    (C, "-7", None, -7),
    (C, "3.5", None, 3.5),
    (C, "1e3", None, 1000.0),
    (C, "0x2A", {"ignored": 1}, 42),
    # -- physics
    (L, "lambda m, v: 0.5 * m * v ** 2", {"m": 2, "v": 3}, 9.0),
    (L, "lambda m, c=299792458: m * c ** 2", {"m": 1}, 89875517873681764),
    (E, "m * g * h", {"m": 10, "g": 9.81, "h": 2}, 10 * 9.81 * 2),
    (E, "v0 * t + 0.5 * a * t ** 2", {"v0": 3, "a": 2, "t": 4}, 3 * 4 + 0.5 * 2 * 4**2),
    (E, "sqrt(2 * h / g)", {"h": 19.62, "g": 9.81}, math.sqrt(2 * 19.62 / 9.81)),
    (
        E,
        "G * m1 * m2 / r ** 2",
        {"G": 6.674e-11, "m1": 5.972e24, "m2": 70, "r": 6.371e6},
        6.674e-11 * 5.972e24 * 70 / 6.371e6**2,
    ),
    (L, "lambda **kw: kw['q'] * kw['v'] * kw.get('B', 1.0)", {"q": 2, "v": 3}, 6.0),
    (E, "2 * pi * sqrt(l / g)", {"l": 1.0, "g": 9.81}, 2 * math.pi * math.sqrt(1.0 / 9.81)),
    (E, "v / f", {"v": 343, "f": 440}, 343 / 440),
    (
        E,
        "p * V / (n * R)",
        {"p": 101325, "V": 0.0224, "n": 1, "R": 8.314},
        101325 * 0.0224 / (1 * 8.314),
    ),
    (E, "1 / (1 / r1 + 1 / r2)", {"r1": 4, "r2": 4}, 2.0),
    (
        E,
        "q1 * q2 * 8.9875e9 / r ** 2",
        {"q1": 1e-6, "q2": 2e-6, "r": 0.5},
        1e-6 * 2e-6 * 8.9875e9 / 0.5**2,
    ),
    (E, "math.exp(-lam * t)", {"lam": 0.1, "t": 10}, math.exp(-0.1 * 10)),
    # -- finance
    (
        E,
        "P * (1 + r / n) ** (n * t)",
        {"P": 1000, "r": 0.05, "n": 12, "t": 10},
        1000 * (1 + 0.05 / 12) ** (12 * 10),
    ),
    (
        L,
        "lambda P, r, n: P * r / (1 - (1 + r) ** -n)",
        {"P": 200000, "r": 0.004, "n": 360},
        200000 * 0.004 / (1 - (1 + 0.004) ** -360),
    ),
    (E, "fv / (1 + r) ** n", {"fv": 1000, "r": 0.1, "n": 2}, 1000 / 1.1**2),
    (E, "P * math.exp(r * t)", {"P": 100, "r": 0.05, "t": 2}, 100 * math.exp(0.05 * 2)),
    (
        E,
        "round(price * (1 - discount), 2)",
        {"price": 19.99, "discount": 0.15},
        round(19.99 * (1 - 0.15), 2),
    ),
    (E, "(end - start) / start * 100", {"start": 80, "end": 100}, 25.0),
    (
        L,
        "lambda **kw: sum(kw.get('cashflows', [])) - kw.get('cost', 0)",
        {"cashflows": [100, 200, 300], "cost": 500},
        100,
    ),
    (
        E,
        "math.log(target / principal) / math.log(1 + rate)",
        {"target": 2000, "principal": 1000, "rate": 0.07},
        math.log(2) / math.log(1.07),
    ),
    (E, "revenue - cost if revenue > cost else 0", {"revenue": 120, "cost": 150}, 0),
    (E, "max(0, spot - strike)", {"spot": 105.5, "strike": 100}, 5.5),
    # -- geometry
    (E, "pi * r ** 2", {"r": 3}, math.pi * 9),
    (E, "math.pi * r ** 2", {"r": 2.0}, math.pi * 4.0),
    (E, "4 / 3 * pi * r ** 3", {"r": 2}, 4 / 3 * math.pi * 8),
    (E, "hypot(a, b)", {"a": 3, "b": 4}, 5.0),
    (E, "math.sqrt(a ** 2 + b ** 2)", {"a": 5, "b": 12}, 13.0),
    (E, "degrees(atan2(y, x))", {"y": 1, "x": 1}, 45.0),
    (E, "math.dist(p, q)", {"p": [0, 0], "q": [3, 4]}, 5.0),
    (
        E,
        "0.5 * abs(x1 * (y2 - y3) + x2 * (y3 - y1) + x3 * (y1 - y2))",
        {"x1": 0, "y1": 0, "x2": 4, "y2": 0, "x3": 0, "y3": 3},
        6.0,
    ),
    (E, "2 * (w + h)", {"w": 3, "h": 4.5}, 15.0),
    (E, "radians(180)", {}, math.pi),
    (
        E,
        "math.sin(pi / 6) ** 2 + cos(pi / 6) ** 2",
        {},
        math.sin(math.pi / 6) ** 2 + math.cos(math.pi / 6) ** 2,
    ),
    (E, "tau * r", {"r": 0.5}, math.tau * 0.5),
    # -- integers, number theory, big ints
    (E, "math.factorial(n)", {"n": 20}, 2432902008176640000),
    (E, "comb(n, k)", {"n": 52, "k": 5}, 2598960),
    (E, "math.perm(n, k)", {"n": 10, "k": 3}, 720),
    (E, "gcd(a, b) * lcm(a, b) == a * b", {"a": 12, "b": 18}, True),
    (E, "math.isqrt(n)", {"n": 10**40}, 10**20),
    (E, "2 ** 4095", {}, 2**4095),
    (E, "-(2 ** 4096 - 1)", {}, -(2**4096 - 1)),
    (E, "pow(3, 200, 1000007)", {}, pow(3, 200, 1000007)),
    (E, "pow(base=2, exp=10)", {}, 1024),
    (E, "x << 10 | 5", {"x": 3}, (3 << 10) | 5),
    (E, "(x ^ y) & 0xFF", {"x": 0x1234, "y": 0xFF}, (0x1234 ^ 0xFF) & 0xFF),
    (E, "x // 7, x % 7", {"x": 100}, [14, 2]),
    (E, "-7 // 2", {}, -4),
    (E, "~x", {"x": 5}, -6),
    (E, "int(x)", {"x": 3.99}, 3),
    (E, "int('ff', base=16)", {}, 255),
    (E, "float(s)", {"s": "2.5"}, 2.5),
    (E, "round(x)", {"x": 2.5}, 2),
    (E, "round(x, -2)", {"x": 1234567}, 1234600),
    (E, "math.floor(x) + math.ceil(x) + trunc(x)", {"x": -2.5}, -3 + -2 + -2),
    (E, "math.prod([1, 2, 3, 4])", {}, 24),
    (E, "fsum([0.1] * 10)", {}, 1.0),
    # -- strings, containers, logic
    (E, "'abc' * 3", {}, "abcabcabc"),
    (E, "s[::-1]", {"s": "hello"}, "olleh"),
    (E, "name + '!'", {"name": "bfx"}, "bfx!"),
    (E, "len(items)", {"items": [1, 2, 3]}, 3),
    (E, "min(items) + max(items)", {"items": [4, 1, 9]}, 10),
    (E, "max(a, b, c)", {"a": 1, "b": 7, "c": 3}, 7),
    (E, "sorted_ if False else [x, y]", {"x": 1, "y": 2, "sorted_": 0}, [1, 2]),
    (
        E,
        "{'area': w * h, 'perimeter': 2 * (w + h)}",
        {"w": 2, "h": 3},
        {"area": 6, "perimeter": 10},
    ),
    (E, "(1, (2, 3), [4])", {}, [1, [2, 3], [4]]),
    (E, "data['a'][1]", {"data": {"a": [10, 20]}}, 20),
    (E, "x is None", {"x": None}, True),
    (E, "a and b or c", {"a": 0, "b": 1, "c": 5}, 5),
    (E, "not x", {"x": []}, True),
    (E, "0 < x < 10", {"x": 5}, True),
    (E, "'ell' in s", {"s": "hello"}, True),
    (E, "x if x > 0 else -x", {"x": -4}, 4),
    (E, "None", {}, None),
    (E, "'naïve ☃'", {}, "naïve ☃"),  # non-ASCII inside strings is fine
    (L, "lambda: 42", None, 42),
    (L, "lambda *, scale=2: scale * 21", {}, 42),
    (L, "lambda x, **rest: x + rest.get('y', 1)", {"x": 1, "y": 2}, 3),
    (L, "lambda **kw: len(kw)", {"a": 1, "b": 2}, 2),
    (L, "lambda **kw: 'x' in kw", {"x": 0}, True),
    (L, "lambda **params: params['x'] ** 2", {"x": 12}, 144),
    (L, "lambda e: e * 2", {"e": 4}, 8),  # a parameter shadows the constant e
    (L, "lambda x=-1.5, y=None, z='s', w=True: (x, y, z, w)", {}, [-1.5, None, "s", True]),
]


def _ids() -> list[str]:
    return [f"{i:02d}-{t}-{code[:40]}" for i, (t, code, _, _) in enumerate(CASES)]


def test_table_is_large() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(("typ", "code", "params", "expected"), CASES, ids=_ids())
def test_benign(typ: str, code: str, params: dict | None, expected: object) -> None:
    compiled = compile_substrate(typ, code)
    result = compiled.invoke(params)
    assert result == expected
    assert type(result) is type(expected)
    # The batch path agrees with the single path.
    assert compiled.invoke_many([params, params]) == [expected, expected]


@pytest.mark.parametrize(("typ", "code", "params", "expected"), CASES, ids=_ids())
def test_benign_recompiles_from_canonical(
    typ: str, code: str, params: dict | None, expected: object
) -> None:
    # The registry stores the canonical code and recompiles it on a cache miss.
    canonical = compile_substrate(typ, code).canonical
    again = compile_substrate(typ, canonical)
    assert again.canonical == canonical
    assert again.invoke(params) == expected


def test_expression_types() -> None:
    assert EXPRESSION_TYPES == ("lambda", "constant", "expression")


def test_parameters_attribute() -> None:
    assert compile_substrate(L, "lambda x, y=2: x * y").parameters == ("x", "y")
    assert compile_substrate(L, "lambda **kw: kw['x']").parameters is None
    assert compile_substrate(L, "lambda x, **kw: x").parameters is None
    assert compile_substrate(E, "y * x + pi + sqrt(z)").parameters == ("x", "y", "z")
    assert compile_substrate(C, "1").parameters == ()


def test_compiled_attributes() -> None:
    compiled = compile_substrate(E, "x  +  1")
    assert isinstance(compiled, Compiled)
    assert compiled.expression_type == E
    assert compiled.canonical == "x + 1"
    assert compiled.limits is DEFAULT_LIMITS
    assert compiled.numeric
    assert not compile_substrate(E, "'a' + x").numeric
    assert compiled.compile() is compiled
    assert "x + 1" in repr(compiled)


def test_expression_ignores_extra_parameters() -> None:
    assert compile_substrate(E, "x + 1").invoke({"x": 1, "unused": [1, 2]}) == 2


def test_missing_parameter_is_named() -> None:
    with pytest.raises(InvocationError, match="missing parameter 'y'") as info:
        compile_substrate(E, "x * y").invoke({"x": 1})
    assert info.value.details["missing"] == ["y"]
    with pytest.raises(InvocationError, match="missing parameter 'x'"):
        compile_substrate(L, "lambda x, y=2: x * y").invoke({"y": 1})


def test_unexpected_parameter_of_a_named_lambda() -> None:
    with pytest.raises(InvocationError, match="unexpected parameter 'z'") as info:
        compile_substrate(L, "lambda x: x").invoke({"x": 1, "z": 2})
    assert info.value.details["reason"] == "unexpected_parameter"


def test_kw_lookup_error_is_an_invocation_error() -> None:
    with pytest.raises(InvocationError, match="KeyError: 'x'"):
        compile_substrate(L, "lambda **kw: kw['x']").invoke({})


def test_runtime_errors_become_invocation_errors() -> None:
    with pytest.raises(InvocationError, match="ZeroDivisionError: division by zero") as info:
        compile_substrate(E, "1 / x").invoke({"x": 0})
    assert info.value.code == "invocation_error"
    assert info.value.details == {"reason": "runtime_error", "exception": "ZeroDivisionError"}
    with pytest.raises(InvocationError, match="TypeError"):
        compile_substrate(E, "x + 1").invoke({"x": "a"})
    with pytest.raises(InvocationError, match="ValueError: math domain error"):
        compile_substrate(E, "sqrt(x)").invoke({"x": -1})


def test_invoke_many_mixed_batch() -> None:
    compiled = compile_substrate(L, "lambda **kw: kw.get('x', 0) * kw.get('y', 0)")
    batch = [
        {"x": 2, "y": 3},
        {"x": "ab", "y": 2},
        {"x": 1 << 4000, "y": 1 << 4000},
        None,
        {"x": 1.5, "y": 2},
        {"x": [1], "y": 2},
    ]
    out = compiled.invoke_many(batch, return_exceptions=True)
    assert out[0] == 6
    assert out[1] == "abab"
    assert isinstance(out[2], InvocationError)
    assert out[3] == 0
    assert out[4] == 3.0
    assert out[5] == [1, 1]
    with pytest.raises(InvocationError):
        compiled.invoke_many(batch)
    assert compiled.invoke_many(iter([{"x": 1, "y": 1}])) == [1]
    assert compiled.invoke_many([]) == []


def test_invoke_many_constant_and_guarded() -> None:
    assert compile_substrate(C, "7").invoke_many([{}, None]) == [7, 7]
    guarded = compile_substrate(E, "x ** y")
    assert guarded.invoke_many([{"x": 2, "y": 10}, {"x": 3, "y": 3}]) == [1024, 27]


def test_validate_parameters_accepts_json() -> None:
    assert validate_parameters(None, DEFAULT_LIMITS) is True
    assert validate_parameters({"a": 1, "b": 2.5, "c": None, "d": True}) is True
    assert validate_parameters({"a": [1, {"b": "c"}], "t": (1, 2)}) is False


def test_custom_limits() -> None:
    small = Limits(max_int_bits=64, time_budget_ms=50)
    assert compile_substrate(E, "2 ** 63", small).invoke() == 2**63
    with pytest.raises(InvocationError):
        compile_substrate(E, "2 ** 64", small).invoke()
    with pytest.raises(ValueError, match="max_int_bits"):
        Limits(max_int_bits=0)
    with pytest.raises(ValueError, match="time_budget_ms"):
        Limits(time_budget_ms=0)


def test_any_mapping_is_accepted_as_parameters() -> None:
    from types import MappingProxyType

    compiled = compile_substrate(E, "x + 1")
    assert compiled.invoke(MappingProxyType({"x": 1})) == 2
