"""Operator semantics: exact values, 2**64 wrap-around, IEEE floats, and refusals."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bfx import operators as op
from bfx.errors import ValidationError

pytestmark = pytest.mark.timeout(60)

M = 2**64
U64 = st.integers(0, M - 1)


def test_fibonacci_and_divide() -> None:
    assert op.FIBONACCI == (0, 1, 1, 2, 3, 5, 8, 13, 21)
    dims = op.divide()
    assert [d["level"] for d in dims] == list(op.FIBONACCI)
    assert [(d["name"], d["description"]) for d in dims] == [
        ("Void", "Potential"),
        ("Identity", "Who"),
        ("Domain", "What type"),
        ("Length", "Attributes"),
        ("Area", "Relationships"),
        ("Volume", "State + change"),
        ("Frequency", "Temporal patterns"),
        ("System", "Behaviors"),
        ("Complete", "Whole object"),
    ]
    assert all(set(d) == {"level", "name", "description"} for d in dims)
    dims[0]["name"] = "changed"
    assert op.divide()[0]["name"] == "Void"  # a fresh list each time


@pytest.mark.parametrize(
    ("values", "value", "hex_"),
    [
        ([1, 1, 2, 3, 5, 8, 13, 21, 34], 2227680, "0x000000000021FDE0"),
        ([7], 7, "0x0000000000000007"),
        ([0, 5], 0, "0x0000000000000000"),
        ([2**32, 2**32], 0, "0x0000000000000000"),
        ([2**63, 2], 0, "0x0000000000000000"),
        ([2**64 - 1, 2**64 - 1], 1, "0x0000000000000001"),
        ([-1], 2**64 - 1, "0xFFFFFFFFFFFFFFFF"),
        ([-2, 3], 2**64 - 6, "0xFFFFFFFFFFFFFFFA"),
        ([2**100 + 3, 5], 15, "0x000000000000000F"),
        ([3, 2**4095], 0, "0x0000000000000000"),
    ],
)
def test_multiply_ints_wrap(values: list[int], value: int, hex_: str) -> None:
    assert op.multiply(values) == (value, hex_)


def test_multiply_floats_do_not_wrap() -> None:
    assert op.multiply([1.5, 2, 4]) == (12.0, None)
    assert op.multiply([2.0**40, 2**40]) == (2.0**80, None)
    assert op.multiply((0.1, 3)) == (0.1 * 3, None)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ([], "dimension_values"),
        ("12", "dimension_values"),
        (None, "dimension_values"),
        (["3"], "dimension_values[0]"),
        ([1, True], "dimension_values[1]"),
        ([1, None], "dimension_values[1]"),
        ([1, [2]], "dimension_values[1]"),
        ([1, math.inf], "dimension_values[1]"),
        ([1, math.nan], "dimension_values[1]"),
    ],
)
def test_multiply_refusals(values: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        op.multiply(values)  # type: ignore[arg-type]
    assert info.value.code == "validation_error"
    assert info.value.details["field"] == field


def test_multiply_float_overflow() -> None:
    with pytest.raises(ValidationError, match=r"overflow|not finite"):
        op.multiply([1e300, 1e300])
    with pytest.raises(ValidationError):
        op.multiply([2**4000, 1.5])


@pytest.mark.parametrize(
    ("a", "b", "added", "subtracted"),
    [
        (2**64 - 1, 1, 0, 2**64 - 2),
        (0, 1, 1, 2**64 - 1),
        (-7, 100, 93, (-107) % M),
        (-7, 3, (-4) % M, (-10) % M),
        (5, 5, 10, 0),
        (2**70, 0, 0, 0),
        (2**64 - 1, 2**64 - 1, 2**64 - 2, 0),
        (1.5, 2, 3.5, -0.5),
        (0.1, 0.2, 0.1 + 0.2, 0.1 - 0.2),
        (-7, 0.5, -6.5, -7.5),
    ],
)
def test_add_subtract(a: float, b: float, added: float, subtracted: float) -> None:
    assert op.add(a, b) == added
    assert op.subtract(a, b) == subtracted
    assert type(op.add(a, b)) is type(added)


def test_add_float_overflow_and_refusals() -> None:
    with pytest.raises(ValidationError):
        op.add(1.7e308, 1.7e308)
    with pytest.raises(ValidationError):
        op.subtract(-1.7e308, 1.7e308)
    with pytest.raises(ValidationError):
        op.add(2**4000, 1.0)
    for bad in ("5", None, True, [1], {"v": 1}):
        with pytest.raises(ValidationError) as info:
            op.add(1, bad)  # type: ignore[arg-type]
        assert info.value.details["field"] == "value"


@pytest.mark.parametrize(
    ("value", "m", "expressed", "residue"),
    [
        (100, 7, 2, 98),
        (-7, 3, 2, -9),
        (7, 3, 1, 6),
        (0, 5, 0, 0),
        (2**70 + 5, 2**64, 5, 2**70),
        (-(2**70), 3, (-(2**70)) % 3, -(2**70) - (-(2**70)) % 3),
        (7.5, 2, 1.5, 6.0),
        (-7.5, 2, 0.5, -8.0),
        (10, 2.5, 0.0, 10.0),
    ],
)
def test_modulus(value: float, m: float, expressed: float, residue: float) -> None:
    assert op.modulus(value, m) == (expressed, residue)


@pytest.mark.parametrize("m", [0, -3, 0.0, -0.5])
def test_modulus_must_be_positive(m: float) -> None:
    with pytest.raises(ValidationError) as info:
        op.modulus(100, m)
    assert info.value.details["field"] == "modulus"


def test_modulus_refuses_non_numbers() -> None:
    with pytest.raises(ValidationError) as info:
        op.modulus(100, "7")  # type: ignore[arg-type]
    assert info.value.details["field"] == "modulus"


@pytest.mark.parametrize(
    ("value", "exponent", "result"),
    [
        (3, 4, 81),
        (3, 0, 1),
        (0, 0, 1),
        (2, 64, 0),
        (2, 63, 2**63),
        (3, 2**64 - 1, pow(3, 2**64 - 1, M)),
        (-2, 3, (-8) % M),
        (-1, 2**64 - 1, M - 1),
        (2**64 + 3, 2, 9),
        (2.0, 10, 1024.0),
        (2, 0.5, math.sqrt(2)),
        (1.5, 2.0, 2.25),
        (0.5, 2**64 - 1, 0.0),
    ],
)
def test_power(value: float, exponent: float, result: float) -> None:
    assert op.power(value, exponent) == result


@pytest.mark.parametrize(
    ("value", "exponent"),
    [
        (3, -1),
        (3, 2**64),
        (2.0, -0.5),
        (3, 2.0**65),
        (3, True),
        (3, "2"),
    ],
)
def test_power_refused_exponents(value: float, exponent: object) -> None:
    with pytest.raises(ValidationError) as info:
        op.power(value, exponent)  # type: ignore[arg-type]
    assert info.value.details["field"] == "exponent"


def test_power_float_errors() -> None:
    with pytest.raises(ValidationError, match="overflow"):
        op.power(10.0, 400)
    with pytest.raises(ValidationError, match="real"):
        op.power(-8.0, 0.5)


@pytest.mark.parametrize(
    ("value", "degree", "result"),
    [
        (81, 2, 9),
        (80, 2, 8),
        (27, 3, 3),
        (26, 3, 2),
        (0, 5, 0),
        (1, 100, 1),
        (7, 1, 7),
        (10**40, 3, 21544346900318),
        (2**64, 2, 2**32),
        (2**200, 1, 0),  # wrapped into [0, 2**64)
        (2**4000, 4000, 2),
        (2**4000 - 1, 4000, 1),
        (3**500, 500, 3),
        (3**500 - 1, 500, 2),
        (12345, 2**64 - 1, 1),
        (81.0, 2, 9.0),
        (27.0, 3, 3.0),
        (2.0, 2, math.sqrt(2)),
        (1e300, 7, 1e300 ** (1 / 7)),
        (0.0, 3, 0.0),
        (5.5, 1, 5.5),
    ],
)
def test_root(value: float, degree: int, result: float) -> None:
    got = op.root(value, degree)
    assert got == result
    assert type(got) is type(result)


@pytest.mark.parametrize(
    ("value", "degree", "field"),
    [
        (-8, 3, "value"),
        (-1.0, 2, "value"),
        (81, 0, "degree"),
        (81, -2, "degree"),
        (81, 2.0, "degree"),
        (81, True, "degree"),
        (81, "2", "degree"),
        ("81", 2, "value"),
    ],
)
def test_root_refusals(value: object, degree: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        op.root(value, degree)  # type: ignore[arg-type]
    assert info.value.details["field"] == field


@given(st.integers(0, 2**300), st.integers(1, 40))
def test_iroot_is_the_floor_root(n: int, k: int) -> None:
    r = op.iroot(n, k)
    assert r**k <= n < (r + 1) ** k


@given(U64, U64)
def test_wrapping_matches_u64_arithmetic(a: int, b: int) -> None:
    assert op.add(a, b) == (a + b) % M
    assert op.subtract(a, b) == (a - b) % M
    assert op.multiply([a, b])[0] == (a * b) % M
    assert 0 <= op.add(a, b) < M


@given(st.integers(-(2**80), 2**80), st.integers(1, 2**70))
def test_modulus_identity(value: int, m: int) -> None:
    expressed, residue = op.modulus(value, m)
    assert 0 <= expressed < m
    assert residue + expressed == value
    assert residue % m == 0


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0x0000000000000000"),
        (2227680, "0x000000000021FDE0"),
        (2**64 - 1, "0xFFFFFFFFFFFFFFFF"),
        (0xABC, "0x0000000000000ABC"),
    ],
)
def test_to_hex(n: int, text: str) -> None:
    assert op.to_hex(n) == text


@pytest.mark.parametrize("n", [-1, 2**64, 1.0, True, "1"])
def test_to_hex_refusals(n: object) -> None:
    with pytest.raises(ValidationError):
        op.to_hex(n)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [1, -5, 2**70, 0.5, -1e300])
def test_require_number_accepts(value: float) -> None:
    op.require_number(value, "value")


@pytest.mark.parametrize(
    "value", ["5", "1.5", None, True, False, [1], {"v": 1}, math.inf, math.nan, 1j]
)
def test_require_number_refuses(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        op.require_number(value, "the field")
    assert info.value.details["field"] == "the field"
    assert "the field" in info.value.message
