"""Run-time guards: the functions compiled code calls instead of risky operators and calls.

Each guard estimates the size of a result *before* computing it (``x ** y``, ``a << b``,
``'a' * n``, ``factorial(n)`` ...), refuses what would exceed a limit, and checks the deadline
of the invocation. The names under which compiled code sees them start with ``_``, which user
code can never spell (the validator rejects such names).
"""

from __future__ import annotations

import math
import threading
from functools import lru_cache
from time import perf_counter
from typing import Any, NoReturn

from bfx.errors import InvocationError

from .limits import Limits
from .tables import BUILTIN_FUNCTIONS, CONSTANTS, MATH_FUNCTIONS, key_of

__all__ = [
    "CONTAINERS",
    "check_run",
    "clear_deadline",
    "end_run",
    "guard_name",
    "namespace",
    "run_deadline",
    "set_deadline",
    "weight",
]

CONTAINERS = (list, tuple, dict)
_LOG2_10 = math.log2(10)
_LN2 = math.log(2)


class _State(threading.local):
    #: The deadline of the invocation running on this thread (guards read it).
    deadline: float | None = None
    budget_ms: float = 0.0
    #: A pipeline's deadline (``run_deadline``): no step may run past it, so one time
    #: budget covers the whole run. None outside a pipeline.
    cap: float | None = None
    cap_ms: float = 0.0


_state = _State()


def set_deadline(limits: Limits) -> None:
    deadline = perf_counter() + limits.time_budget_ms / 1000.0
    cap = _state.cap
    if cap is not None and cap < deadline:
        _state.deadline = cap
        _state.budget_ms = _state.cap_ms
        return
    _state.deadline = deadline
    _state.budget_ms = limits.time_budget_ms


def run_deadline(limits: Limits) -> float | None:
    """Starts a pipeline's one deadline on this thread, unless one runs already (a
    nested pipeline shares its outer run's); returns the cap to restore afterwards
    (``end_run``). Every step's own deadline is then the earlier of its budget and
    the pipeline's."""
    previous = _state.cap
    if previous is None:
        _state.cap = perf_counter() + limits.time_budget_ms / 1000.0
        _state.cap_ms = limits.time_budget_ms
    return previous


def end_run(previous: float | None) -> None:
    _state.cap = previous


def check_run() -> None:
    """The pipeline's deadline, checked between steps (a step of unguarded arithmetic
    never looks at the clock): the same error a slow substrate gets."""
    cap = _state.cap
    if cap is not None and perf_counter() > cap:
        raise InvocationError(
            f"time budget of {_state.cap_ms:g} ms exceeded",
            {"reason": "timeout", "limit_ms": _state.cap_ms},
        )


def clear_deadline() -> None:
    _state.deadline = None


def _tick() -> None:
    deadline = _state.deadline
    if deadline is not None and perf_counter() > deadline:
        raise InvocationError(
            f"time budget of {_state.budget_ms:g} ms exceeded",
            {"reason": "timeout", "limit_ms": _state.budget_ms},
        )


def _too_big(what: str, limit: int, reason: str = "int_too_large", **extra: Any) -> NoReturn:
    raise InvocationError(
        f"{what}: the result would exceed {limit} bits",
        {"reason": reason, "operation": what, "limit": limit, **extra},
    )


def weight(value: Any, budget: int) -> int:
    """Logical number of items in ``value`` (nested items counted, shared ones per use).

    Stops with an :class:`InvocationError` as soon as the count passes ``budget``, so the cost
    is bounded by the budget even for shared structures like ``[[0] * 1000] * 1000``.
    """
    if type(value) not in CONTAINERS:
        return 1
    total = 0
    stack = [value]
    pop, push = stack.pop, stack.append
    while stack:
        item = pop()
        total += len(item)
        if total > budget:
            raise InvocationError(
                f"a list, tuple or dict would hold more than {budget} items",
                {"reason": "sequence_too_long", "limit": budget},
            )
        children = (*item.keys(), *item.values()) if type(item) is dict else item
        for child in children:
            if type(child) in CONTAINERS:
                push(child)
    return total


def guard_name(key: str) -> str:
    """Name under which compiled code calls the whitelisted function ``key``."""
    return "_f_" + key.replace(".", "_")


@lru_cache(maxsize=16)
def namespace(limits: Limits) -> dict[str, Any]:
    """Globals of compiled code for ``limits``: the guards and whitelisted functions only."""
    cap = limits.max_int_bits
    hi = 1 << cap  # an int fits the cap when -hi < x < hi
    lo = -hi
    max_str = limits.max_string_length
    max_seq = limits.max_sequence_length
    max_modpow = limits.max_modpow_cost
    ints = (int, bool)

    def cap_int(x: Any) -> Any:
        if type(x) is int and not lo < x < hi:
            _too_big("integer arithmetic", cap)
        return x

    def repeat(seq: Any, n: int) -> Any:
        if n > 0 and len(seq):
            if type(seq) is str:
                if len(seq) * n > max_str:
                    raise InvocationError(
                        f"string repetition would exceed {max_str} characters",
                        {"reason": "string_too_long", "limit": max_str},
                    )
            elif weight(seq, max_seq) * n > max_seq:
                raise InvocationError(
                    f"sequence repetition would exceed {max_seq} items",
                    {"reason": "sequence_too_long", "limit": max_seq},
                )
            _tick()
        return seq * n

    def mul(a: Any, b: Any) -> Any:
        ta = type(a)
        tb = type(b)
        if ta is float or tb is float:
            return a * b
        if ta in ints:
            if tb in ints:
                if a.bit_length() + b.bit_length() - 1 > cap:
                    _too_big("multiplication", cap)
                r = a * b
                if lo < r < hi:
                    return r
                _too_big("multiplication", cap)
            if tb is str or tb is list or tb is tuple:
                return repeat(b, a)
        elif (ta is str or ta is list or ta is tuple) and tb in ints:
            return repeat(a, b)
        return a * b

    def add(a: Any, b: Any) -> Any:
        ta = type(a)
        if ta is int or ta is float or ta is bool:
            r = a + b
            if type(r) is int and not lo < r < hi:
                _too_big("addition", cap)
            return r
        if ta is str and type(b) is str:
            if len(a) + len(b) > max_str:
                raise InvocationError(
                    f"string concatenation would exceed {max_str} characters",
                    {"reason": "string_too_long", "limit": max_str},
                )
        elif (ta is list or ta is tuple) and type(b) is ta:
            if weight(a, max_seq) + weight(b, max_seq) > max_seq:
                raise InvocationError(
                    f"concatenation would exceed {max_seq} items",
                    {"reason": "sequence_too_long", "limit": max_seq},
                )
            _tick()
        return a + b

    def mod(a: Any, b: Any) -> Any:
        if type(a) is str:
            # '%999999999d' % 1 builds a gigabyte: printf-style formatting is not offered.
            raise InvocationError(
                "string formatting with % is not allowed", {"reason": "string_formatting"}
            )
        return a % b

    def bitor(a: Any, b: Any) -> Any:
        if type(a) is dict and type(b) is dict:
            if weight(a, max_seq) + weight(b, max_seq) > max_seq:
                raise InvocationError(
                    f"dict merge would exceed {max_seq} items",
                    {"reason": "sequence_too_long", "limit": max_seq},
                )
            _tick()
        return a | b

    def power(a: Any, b: Any) -> Any:
        if type(a) in ints and type(b) in ints and b > 1:
            m = -a if a < 0 else a
            if m > 1:
                # m ** b has more than (bits(m) - 1) * b bits.
                if (m.bit_length() - 1) * b >= cap:
                    _too_big("power", cap)
                _tick()
                r = a**b
                if lo < r < hi:
                    return r
                _too_big("power", cap)
        return a**b

    def lshift(a: Any, b: Any) -> Any:
        if type(a) in ints and type(b) in ints and b > 0 and a and a.bit_length() + b > cap:
            _too_big("left shift", cap)
        return a << b

    def check_seq(value: Any) -> Any:
        weight(value, max_seq)
        return value

    # -- guarded functions ----------------------------------------------------------------

    def g_pow(base: Any, exp: Any, mod: Any = None) -> Any:
        if mod is None:
            return power(base, exp)
        if type(base) in ints and type(exp) in ints and type(mod) in ints:
            cost = abs(exp).bit_length() * abs(mod).bit_length() ** 2
            if cost > max_modpow:
                raise InvocationError(
                    "pow(base, exp, mod): exponent and modulus too large "
                    f"(bits(exp) * bits(mod)**2 = {cost} > {max_modpow})",
                    {"reason": "too_expensive", "operation": "pow", "limit": max_modpow},
                )
            _tick()
        return pow(base, exp, mod)

    def g_round(number: Any, ndigits: Any = None) -> Any:
        if ndigits is None:
            return round(number)
        # round(n, -k) computes 10 ** k: when 10 ** k dwarfs n the answer is 0 anyway.
        if (
            type(number) in ints
            and type(ndigits) in ints
            and -ndigits > number.bit_length() / _LOG2_10 + 2
        ):
            return 0
        return round(number, ndigits)

    def g_int(*args: Any, **kwargs: Any) -> Any:
        _tick()
        return cap_int(int(*args, **kwargs))

    def g_sum(iterable: Any, /, start: Any = 0) -> Any:
        if type(start) not in (int, float, bool):
            # sum(lists, []) concatenates quadratically: only numbers are summed.
            raise InvocationError(
                "sum() start must be a number", {"reason": "bad_argument", "function": "sum"}
            )
        _tick()
        return cap_int(sum(iterable, start))

    def g_factorial(n: Any) -> Any:
        if type(n) in ints and n > 20:
            if n > 1_000_000 or math.lgamma(n + 1) / _LN2 > cap + 1:
                _too_big("factorial", cap)
            _tick()
        return cap_int(math.factorial(n))

    def _log2(n: int) -> float:
        return math.log2(n) if n > 0 else 0.0

    def g_comb(n: Any, k: Any) -> Any:
        if type(n) in ints and type(k) in ints and 0 < k < n:
            k = min(k, n - k)
            # comb(n, k) >= (n / k) ** k and >= 2 ** k (k <= n / 2).
            if k > cap + 1 or k * (_log2(n) - _log2(k)) > cap + 1:
                _too_big("comb", cap)
            _tick()
        return cap_int(math.comb(n, k))

    def g_perm(n: Any, k: Any = None) -> Any:
        if k is None:
            return g_factorial(n)
        if type(n) in ints and type(k) in ints and 0 < k <= n:
            # perm(n, k) >= (n - k + 1) ** k and >= k!.
            if k > 1_000_000 or max(k * _log2(n - k + 1), math.lgamma(k + 1) / _LN2) > cap + 1:
                _too_big("perm", cap)
            _tick()
        return cap_int(math.perm(n, k))

    def g_prod(iterable: Any, /, *, start: Any = 1) -> Any:
        result = start
        for item in iterable:
            result = mul(result, item)
        _tick()
        return result

    def g_lcm(*integers: Any) -> Any:
        result = math.lcm()
        for n in integers:
            result = cap_int(math.lcm(result, n))
        return result

    guarded = {
        "round": g_round,
        "int": g_int,
        "sum": g_sum,
        "pow": g_pow,
        "math.factorial": g_factorial,
        "math.comb": g_comb,
        "math.perm": g_perm,
        "math.prod": g_prod,
        "math.lcm": g_lcm,
    }
    ns: dict[str, Any] = {"__builtins__": {}}
    for name, fn in BUILTIN_FUNCTIONS.items():
        ns[guard_name(key_of(name, False))] = guarded.get(name, fn)
    for name, fn in MATH_FUNCTIONS.items():
        key = "math." + name
        ns[guard_name(key)] = guarded.get(key, fn)
    ns.update(
        _cap=cap_int,
        _mul=mul,
        _add=add,
        _mod=mod,
        _bor=bitor,
        _pow=power,
        _lshift=lshift,
        _seq=check_seq,
    )
    assert not set(ns) & set(CONSTANTS)
    return ns
