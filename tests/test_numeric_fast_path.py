"""The sandbox's fast path in the core (``bfx._core.call_numeric``): a compiled
expression called with a flat dict of numbers answers exactly what the general path
answers, and anything the fast path does not take is left to the general path whole."""

from __future__ import annotations

import enum
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bfx._core import call_numeric, call_numeric_many
from bfx.errors import InvocationError
from bfx.sandbox import compile_substrate
from bfx.sandbox.compiled import Compiled

MISS = object()
BITS = 4096

_numbers = st.one_of(
    st.integers(-(2**70), 2**70),
    st.integers(-(2**BITS) - 5, -(2**BITS) + 5),
    st.integers(2**BITS - 5, 2**BITS + 5),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
_values = st.one_of(_numbers, st.text(max_size=3), st.lists(st.integers(), max_size=2))
_params = st.dictionaries(st.sampled_from(("x", "y", "z", "q")), _values, max_size=4)

_CODES = (
    ("lambda", "lambda x, y=2: x * y"),
    ("lambda", "lambda x, y=0: x / y"),
    ("lambda", "lambda x: x ** 3"),
    ("lambda", "lambda x, y=1: x if x > y else y"),
    ("lambda", "lambda x: x << 4000"),
    ("lambda", "lambda **kw: len(kw)"),
    ("lambda", "lambda x, **kw: x + len(kw)"),
    ("expression", "x * 2 + 1"),
    ("expression", "x / 3"),
    ("expression", "x > 1 and x"),
)


def _outcome(compiled: Compiled, params: Any) -> tuple[str, Any]:
    try:
        result = compiled.invoke(params)
    except InvocationError as exc:
        return "error", (exc.message, exc.details)
    if isinstance(result, float) and math.isnan(result):
        return "nan", None
    return "ok", (type(result), result)


@given(st.sampled_from(_CODES), _params)
def test_the_fast_path_answers_what_the_general_path_answers(code: Any, params: dict) -> None:
    fast = compile_substrate(*code).compile()
    general = compile_substrate(*code).compile()
    general._hot = None  # every call on the general path
    assert _outcome(fast, params) == _outcome(general, params)
    assert _outcome(fast, params) == _outcome(general, params)  # and again, built


def test_the_fast_path_is_on_only_where_no_deadline_is_needed() -> None:
    numeric = compile_substrate("lambda", "lambda x, y=2: x * y").compile()
    assert numeric._hot is not None
    constant = compile_substrate("constant", "7").compile()
    assert constant._hot is None
    assert constant.invoke({"x": 1}) == 7


def _double(p: dict) -> Any:
    return p["x"] * 2


@pytest.mark.parametrize(
    "params",
    [
        None,
        [("x", 1)],
        {"x": "1"},
        {"x": [1]},
        {"x": 2**BITS},
        {"x": -(2**BITS)},
        {"x": enum.IntEnum("E", "a").a},  # an int subclass: the general path decides
        {"x": 1, "nope": 2},  # a name the expression does not have
        {f"k{i}": 1 for i in range(5)},  # more than max_items
    ],
)
def test_what_the_fast_path_leaves_to_the_general_path(params: Any) -> None:
    allowed = frozenset({"x", "k0", "k1", "k2", "k3", "k4"}) - ({"nope"})
    assert call_numeric(_double, params, BITS, 4, allowed, MISS) is MISS


def test_a_dict_subclass_is_left_to_the_general_path() -> None:
    class Params(dict):  # type: ignore[type-arg]
        pass

    assert call_numeric(_double, Params(x=1), BITS, 10, None, MISS) is MISS


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (lambda p: p["x"] * 2, 42),
        (lambda p: 0.5, 0.5),
        (lambda p: True, True),
        (lambda p: None, None),
        (lambda p: 2 ** (BITS - 1), 2 ** (BITS - 1)),
        (lambda p: -(2**BITS) + 1, -(2**BITS) + 1),
    ],
)
def test_numbers_come_back_as_they_are(fn: Any, expected: Any) -> None:
    result = call_numeric(fn, {"x": 21}, BITS, 10, None, MISS)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "fn",
    [
        lambda p: float("inf"),
        lambda p: float("nan"),
        lambda p: 2**BITS,
        lambda p: "text",
        lambda p: [1],
        lambda p: 1 / 0,
        lambda p: p["missing"],
    ],
)
def test_other_answers_and_errors_are_left_to_the_general_path(fn: Any) -> None:
    assert call_numeric(fn, {"x": 21}, BITS, 10, None, MISS) is MISS


def test_an_exception_that_is_not_an_error_goes_on_out() -> None:
    def interrupted(p: dict) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_numeric(interrupted, {"x": 1}, BITS, 10, None, MISS)


def test_a_small_int_bound_is_respected() -> None:
    # |n| < 2**bits, as the sandbox's integer cap reads.
    assert call_numeric(_double, {"x": 7}, 4, 10, None, MISS) == 14
    assert call_numeric(_double, {"x": -7}, 4, 10, None, MISS) == -14
    assert call_numeric(_double, {"x": 8}, 4, 10, None, MISS) is MISS  # 16: the answer
    assert call_numeric(_double, {"x": 16}, 4, 10, None, MISS) is MISS  # the parameter


def test_a_batch_runs_until_the_first_item_it_cannot_take() -> None:
    out: list[Any] = []
    batch = [{"x": 1}, {"x": 2}, {"x": "3"}, {"x": 4}]
    assert call_numeric_many(_double, True, batch, 0, out, BITS, 10, None) == 2
    assert out == [2, 4]
    assert call_numeric_many(_double, True, batch, 3, out, BITS, 10, None) == 4
    assert out == [2, 4, 8]


def test_a_batch_calls_with_keywords_when_asked() -> None:
    out: list[Any] = []
    batch = [{"x": 1}, {"x": 2, "y": 1}]
    n = call_numeric_many(lambda x: x + 1, False, batch, 0, out, BITS, 10, None)
    assert (n, out) == (1, [2])  # the second call raised TypeError: left to the caller
