"""The dimensional operators: pure functions on numbers (DESIGN.md section 2, "Operators").

Integers are unsigned 64-bit words: every integer result is reduced modulo 2**64 into
``[0, 2**64)`` (the prototype kernel's wrapping arithmetic), except ``modulus``, whose
``expressed``/``residue`` pair is exact. Floats follow IEEE 754 without wrapping; an
operation whose float result is not finite (overflow, NaN) is refused with a
:class:`~bfx.errors.ValidationError`, as is any operand that is not a number. ``bool`` and
numeric strings are not numbers. Each error's ``details["field"]`` names the offending input.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any

from bfx.errors import ValidationError

__all__ = [
    "DIMENSIONS",
    "FIBONACCI",
    "MASK",
    "MODULUS",
    "add",
    "divide",
    "iroot",
    "modulus",
    "multiply",
    "power",
    "require_number",
    "root",
    "subtract",
    "to_hex",
]

MODULUS = 1 << 64
MASK = MODULUS - 1
FIBONACCI = (0, 1, 1, 2, 3, 5, 8, 13, 21)

#: (level, name, description) of the nine Fibonacci dimensions.
DIMENSIONS: tuple[tuple[int, str, str], ...] = tuple(
    zip(
        FIBONACCI,
        (
            "Void",
            "Identity",
            "Domain",
            "Length",
            "Area",
            "Volume",
            "Frequency",
            "System",
            "Complete",
        ),
        (
            "Potential",
            "Who",
            "What type",
            "Attributes",
            "Relationships",
            "State + change",
            "Temporal patterns",
            "Behaviors",
            "Whole object",
        ),
        strict=True,
    )
)

Number = int | float


def require_number(value: Any, field: str) -> None:
    """Raise ValidationError unless ``value`` is an int or a finite float (not a bool)."""
    t = type(value)
    if t is int:
        return
    if t is float:
        if math.isfinite(value):
            return
        raise ValidationError(
            f"{field} must be a finite number, got {value!r}",
            {"field": field, "reason": "non_finite"},
        )
    raise ValidationError(
        f"{field} must be a number, got {_describe(value)}",
        {"field": field, "reason": "not_a_number", "type": _json_type(value)},
    )


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_json_type(value)} {text}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", str: "string", list: "array", tuple: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _finite(result: float, operation: str) -> float:
    if not math.isfinite(result):
        raise ValidationError(
            f"{operation}: the float result is not finite ({result!r})",
            {"field": "result", "reason": "non_finite", "operation": operation},
        )
    return result


def _float_op(operation: str, fn: Any, *args: Number) -> float:
    try:
        result = fn(*args)
    except OverflowError:
        raise ValidationError(
            f"{operation}: the float result overflows",
            {"field": "result", "reason": "overflow", "operation": operation},
        ) from None
    if type(result) is complex:
        raise ValidationError(
            f"{operation}: the result is not a real number",
            {"field": "result", "reason": "complex", "operation": operation},
        )
    return _finite(float(result), operation)


def to_hex(n: int) -> str:
    """``0x`` + 16 upper-case hex digits of ``n`` in ``[0, 2**64)``."""
    if type(n) is not int or not 0 <= n <= MASK:
        raise ValidationError(
            f"to_hex takes an integer in [0, 2**64), got {_describe(n)}",
            {"field": "value", "reason": "out_of_range"},
        )
    return f"0x{n:016X}"


def divide() -> list[dict[str, Any]]:
    """The nine Fibonacci dimensions: ``[{"level", "name", "description"}, ...]``."""
    return [
        {"level": level, "name": name, "description": description}
        for level, name, description in DIMENSIONS
    ]


def multiply(values: Sequence[Any]) -> tuple[Number, str | None]:
    """Product of ``values``: ``(unity_value, unity_hex)``.

    All ints: the product modulo 2**64 and its hex. Any float: the IEEE product, unwrapped,
    and ``unity_hex`` None (a float has no 64-bit word). Empty: ValidationError.
    """
    if type(values) not in (list, tuple):
        raise ValidationError(
            f"dimension_values must be an array of numbers, got {_describe(values)}",
            {"field": "dimension_values", "reason": "not_an_array"},
        )
    if not values:
        raise ValidationError(
            "dimension_values must not be empty",
            {"field": "dimension_values", "reason": "empty"},
        )
    floats = False
    for index, value in enumerate(values):
        require_number(value, f"dimension_values[{index}]")
        floats = floats or type(value) is float
    if floats:
        return _float_op("multiply", math.prod, values), None
    product = 1
    for value in values:
        product = product * (value & MASK) & MASK
    return product, to_hex(product)


def add(value: Number, operand: Number) -> Number:
    """``value + operand``: wrapping for two ints, IEEE otherwise."""
    require_number(value, "value")
    require_number(operand, "value")
    if type(value) is int and type(operand) is int:
        return (value + operand) & MASK
    return _float_op("add", operator.add, value, operand)


def subtract(value: Number, operand: Number) -> Number:
    """``value - operand``: wrapping for two ints, IEEE otherwise."""
    require_number(value, "value")
    require_number(operand, "value")
    if type(value) is int and type(operand) is int:
        return (value - operand) & MASK
    return _float_op("subtract", operator.sub, value, operand)


def modulus(value: Number, m: Number) -> tuple[Number, Number]:
    """``(expressed, residue)`` with ``expressed = value % m`` (floor modulo, in ``[0, m)``)
    and ``residue = value - expressed``, both exact (not wrapped). ``m`` must be > 0."""
    require_number(value, "value")
    require_number(m, "modulus")
    if m <= 0:
        raise ValidationError(
            f"modulus must be greater than 0, got {m!r}",
            {"field": "modulus", "reason": "not_positive"},
        )
    if type(value) is int and type(m) is int:
        expressed = value % m
        return expressed, value - expressed
    expressed = _float_op("modulus", operator.mod, value, m)
    return expressed, _float_op("modulus", operator.sub, value, expressed)


def power(value: Number, exponent: Number) -> Number:
    """``value ** exponent``: modulo 2**64 for two ints (fast for any exponent up to
    2**64 - 1), IEEE otherwise. A negative exponent or one above 2**64 - 1 is refused."""
    require_number(value, "value")
    require_number(exponent, "exponent")
    if exponent < 0:
        raise ValidationError(
            f"exponent must be >= 0, got {exponent!r}",
            {"field": "exponent", "reason": "negative"},
        )
    if exponent > MASK:
        raise ValidationError(
            f"exponent must be at most 2**64 - 1, got {exponent!r}",
            {"field": "exponent", "reason": "too_large"},
        )
    if type(value) is int and type(exponent) is int:
        return pow(value, exponent, MODULUS)
    return _float_op("power", pow, value, exponent)


def iroot(n: int, k: int) -> int:
    """Floor of the ``k``-th root of ``n >= 0``, exact for integers of any size (Newton)."""
    if n < 2 or k == 1:
        return n
    if k == 2:
        return math.isqrt(n)
    bits = n.bit_length()
    if k >= bits:
        return 1  # 2 ** k > n >= 1
    # Start above the root (2 ** ceil(bits / k)) and descend: Newton's iteration on integers
    # decreases monotonically until it reaches the floor root.
    x = 1 << -(-bits // k)
    while True:
        y = ((k - 1) * x + n // x ** (k - 1)) // k
        if y >= x:
            return x
        x = y


def root(value: Number, degree: int) -> Number:
    """The ``degree``-th root: floor integer root of an int (wrapped into ``[0, 2**64)``),
    real root of a float. ``degree`` is an integer >= 1; a negative value is refused."""
    require_number(value, "value")
    if type(degree) is not int:
        require_number(degree, "degree")
        raise ValidationError(
            f"degree must be an integer >= 1, got {degree!r}",
            {"field": "degree", "reason": "not_an_integer"},
        )
    if degree < 1:
        raise ValidationError(
            f"degree must be >= 1, got {degree!r}",
            {"field": "degree", "reason": "not_positive"},
        )
    if value < 0:
        raise ValidationError(
            f"root of a negative number ({value!r}) is not defined here",
            {"field": "value", "reason": "negative"},
        )
    if type(value) is int:
        return iroot(value, degree) & MASK
    if degree == 1:
        return value
    result = math.sqrt(value) if degree == 2 else _float_op("root", pow, value, 1.0 / degree)
    # x ** (1 / k) can miss an exact root by an ulp (27.0 ** (1 / 3) on some libms): prefer
    # the nearest integer when it is exact.
    nearest = round(result)
    if nearest**degree == value:
        return float(nearest)
    return result
