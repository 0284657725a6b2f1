"""The sandbox whitelist: which names exist, which keywords they take, which are guarded.

The tables are fixed here (not derived from ``dir(math)``) so that what is accepted does not
depend on the Python version: math functions added after 3.11 are not available.
"""

from __future__ import annotations

import math

__all__ = [
    "BUILTIN_FUNCTIONS",
    "CONSTANTS",
    "FUNCTIONS",
    "GUARDED_FUNCTIONS",
    "KEYWORDS",
    "MATH_FUNCTIONS",
    "NUMERIC_FUNCTIONS",
]

BUILTIN_FUNCTIONS: dict[str, object] = {
    "abs": abs,
    "min": min,
    "max": max,
    "round": round,
    "int": int,
    "float": float,
    "sum": sum,
    "len": len,
    "pow": pow,
}

_MATH_FUNCTION_NAMES = (
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "cbrt",
    "ceil",
    "comb",
    "copysign",
    "cos",
    "cosh",
    "degrees",
    "dist",
    "erf",
    "erfc",
    "exp",
    "exp2",
    "expm1",
    "fabs",
    "factorial",
    "floor",
    "fmod",
    "frexp",
    "fsum",
    "gamma",
    "gcd",
    "hypot",
    "isclose",
    "isfinite",
    "isinf",
    "isnan",
    "isqrt",
    "lcm",
    "ldexp",
    "lgamma",
    "log",
    "log10",
    "log1p",
    "log2",
    "modf",
    "nextafter",
    "perm",
    "pow",
    "prod",
    "radians",
    "remainder",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
    "ulp",
)

#: ``math.<name>`` functions (``math.pow`` is the float one; bare ``pow`` is the builtin).
MATH_FUNCTIONS: dict[str, object] = {name: getattr(math, name) for name in _MATH_FUNCTION_NAMES}

#: Bare-name functions: the builtins, then every math function not shadowing one.
FUNCTIONS: dict[str, object] = {**MATH_FUNCTIONS, **BUILTIN_FUNCTIONS}

#: Constants, as bare names and as ``math.<name>``; inlined as literals when compiled.
CONSTANTS: dict[str, float] = {
    "pi": math.pi,
    "e": math.e,
    "tau": math.tau,
    "inf": math.inf,
    "nan": math.nan,
}

#: Keyword arguments accepted per function (by the function's qualified key, see ``key_of``);
#: any other keyword is rejected at creation.
KEYWORDS: dict[str, frozenset[str]] = {
    "round": frozenset({"ndigits"}),
    "int": frozenset({"base"}),
    "sum": frozenset({"start"}),
    "min": frozenset({"default"}),
    "max": frozenset({"default"}),
    "pow": frozenset({"base", "exp", "mod"}),
    "math.isclose": frozenset({"rel_tol", "abs_tol"}),
    "math.prod": frozenset({"start"}),
}

#: Functions whose arguments can make them slow or their result huge: always called through
#: a guard (keys as in ``KEYWORDS``).
GUARDED_FUNCTIONS = frozenset(
    {
        "round",
        "int",
        "sum",
        "pow",
        "math.factorial",
        "math.comb",
        "math.perm",
        "math.prod",
        "math.lcm",
    }
)

#: Functions that take and return plain numbers only (an expression calling nothing else can
#: use the numeric fast path). ``len``, ``sum``, ``min``/``max`` of one iterable, ``fsum``,
#: ``prod``, ``dist``, ``frexp`` and ``modf`` touch sequences and are not in this set.
NUMERIC_FUNCTIONS = frozenset(
    {"abs", "min", "max", "round", "int", "float", "pow"}
    | {
        "math." + name
        for name in _MATH_FUNCTION_NAMES
        if name not in {"fsum", "prod", "dist", "frexp", "modf"}
    }
)


def key_of(name: str, via_math: bool) -> str:
    """The table key of a function: ``math.x`` for math functions, the bare builtin name."""
    if via_math or name not in BUILTIN_FUNCTIONS:
        return "math." + name
    return name
