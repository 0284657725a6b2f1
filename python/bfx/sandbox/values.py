"""Values crossing the sandbox boundary: parameters going in, results coming out."""

from __future__ import annotations

import re
from typing import Any

from bfx.errors import InvocationError

from .limits import DEFAULT_LIMITS, Limits

__all__ = ["check_result", "find_surrogate", "scan_parameters", "validate_parameters"]

_SCALARS = (int, float, bool, type(None))
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def find_surrogate(text: str) -> int:
    """Index of the first lone surrogate in ``text`` (-1 if none).

    A str holding one cannot be encoded as UTF-8 (nor as JSON): such text must never reach
    a result, a stored record or an answer. ASCII text is cleared without a search.
    """
    if text.isascii():
        return -1
    found = _SURROGATE.search(text)
    return -1 if found is None else found.start()


def _surrogate(where: str, text: str, index: int, **extra: Any) -> InvocationError:
    return InvocationError(
        f"{where} holds a lone surrogate (U+{ord(text[index]):04X} at index {index}): it is "
        "not valid Unicode text and cannot be encoded as UTF-8 or JSON",
        {"reason": "surrogate", "character": f"U+{ord(text[index]):04X}", **extra},
    )


def _bad(message: str, reason: str, path: str, **extra: Any) -> InvocationError:
    return InvocationError(message, {"reason": reason, "path": path, **extra})


def validate_parameters(params: Any, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Check a parameter payload; return True when it is flat and numeric.

    ``params`` must be ``None`` or a dict with str keys whose values are JSON values:
    None, bool, int (at most ``max_int_bits`` bits), float, str (at most ``max_string_length``
    characters, no lone surrogate), lists/tuples and dicts with str keys of those, nested at most
    ``max_param_depth`` deep, with at most ``max_sequence_length`` items in all and an
    estimated JSON size of at most ``max_param_bytes``. Anything else raises
    :class:`InvocationError` (code ``invocation_error``, HTTP 422) whose ``details`` give the
    ``reason`` and the ``path`` of the offending value (``x[3].y``).

    The return value tells whether every value is a plain number, bool or None (the numeric
    fast path applies).
    """
    if params is None:
        return True
    if type(params) is not dict:
        raise _bad(
            f"parameters must be an object (dict), not {type(params).__name__}",
            "bad_type",
            "",
        )
    max_bits = limits.max_int_bits
    max_str = limits.max_string_length
    max_items = limits.max_sequence_length
    max_bytes = limits.max_param_bytes
    max_depth = limits.max_param_depth
    items = 0
    size = 2
    flat = True
    # (value, path, depth); the path is built lazily from the parent's for messages.
    stack: list[tuple[Any, str, int]] = [(params, "", 1)]
    while stack:
        value, path, depth = stack.pop()
        t = type(value)
        if t is dict or t is list or t is tuple:
            if depth > max_depth:
                raise _bad(
                    f"parameters are nested deeper than {max_depth} levels at {path or 'top'}",
                    "too_deep",
                    path,
                    limit=max_depth,
                )
            items += len(value)
            if items > max_items:
                raise _bad(
                    f"parameters hold more than {max_items} items",
                    "too_many_items",
                    path,
                    limit=max_items,
                )
            size += 2 + len(value)
            if t is dict:
                for key, child in value.items():
                    if type(key) is not str:
                        raise _bad(
                            f"parameter keys must be strings, got {type(key).__name__} "
                            f"at {path or 'top'}",
                            "bad_key",
                            path,
                        )
                    size += len(key) + 3
                    index = find_surrogate(key)
                    if index >= 0:
                        raise _surrogate(
                            f"a parameter key at {path or 'top'}", key, index, path=path
                        )
                    stack.append((child, f"{path}.{key}" if path else key, depth + 1))
            else:
                for index, child in enumerate(value):
                    stack.append((child, f"{path}[{index}]", depth + 1))
            if depth > 1:
                flat = False
        elif t is int:
            bits = value.bit_length()
            if bits > max_bits:
                raise _bad(
                    f"parameter {path or 'value'} is an integer of {bits} bits; the limit is "
                    f"{max_bits}",
                    "int_too_large",
                    path,
                    limit=max_bits,
                )
            size += bits // 3 + 2
        elif t is str:
            if len(value) > max_str:
                raise _bad(
                    f"parameter {path} is a string of {len(value)} characters; the limit is "
                    f"{max_str}",
                    "string_too_long",
                    path,
                    limit=max_str,
                )
            index = find_surrogate(value)
            if index >= 0:
                raise _surrogate(f"parameter {path}", value, index, path=path)
            size += len(value) + 2
            flat = False
        elif t is float or t is bool or value is None:
            size += 8
        else:
            raise _bad(
                f"parameter {path} has type {t.__name__}: only JSON values (null, booleans, "
                "numbers, strings, lists and objects) are accepted",
                "bad_type",
                path,
                type=t.__name__,
            )
        if size > max_bytes:
            raise _bad(
                f"parameters are larger than {max_bytes} bytes",
                "too_large",
                path,
                limit=max_bytes,
            )
    return flat


def scan_parameters(params: dict[str, Any], lo: int, hi: int, limits: Limits) -> bool:
    """Fast path of :func:`validate_parameters` for the common flat numeric dict.

    Checks the values as the slow path does, but neither the byte estimate nor the type of
    the keys: only the keys could fail those, and the sandbox never copies, grows or
    computes with keys (JSON keys are strings anyway; a returned dict's keys are checked).
    """
    if len(params) > limits.max_sequence_length:
        return validate_parameters(params, limits)
    for value in params.values():
        t = type(value)
        if t is int:
            if lo < value < hi:
                continue
        elif t is float or t is bool or value is None:
            continue
        return validate_parameters(params, limits)
    return True


def check_result(value: Any, limits: Limits) -> Any:
    """Return ``value`` as a JSON-ready result or raise :class:`InvocationError`.

    Ints must fit ``max_int_bits``, floats must be finite, strings at most
    ``max_string_length`` characters and encodable as UTF-8 (no lone surrogate); tuples
    become lists; dict keys must be strings (encodable too); a
    container may hold at most ``max_result_items`` items in all, and the estimated JSON size
    is capped at ``max_param_bytes``.
    """
    t = type(value)
    if t is int:
        if value.bit_length() <= limits.max_int_bits:
            return value
    elif t is float:
        if value - value == 0.0:
            return value
    elif t is bool or value is None:
        return value
    budget = [limits.max_result_items, limits.max_param_bytes]
    return _convert(value, limits, budget, 0)


def _convert(value: Any, limits: Limits, budget: list[int], depth: int) -> Any:
    t = type(value)
    if t is int:
        if value.bit_length() > limits.max_int_bits:
            raise InvocationError(
                f"result is an integer of {value.bit_length()} bits; the limit is "
                f"{limits.max_int_bits}",
                {
                    "reason": "int_too_large",
                    "bits": value.bit_length(),
                    "limit": limits.max_int_bits,
                },
            )
        budget[1] -= value.bit_length() // 3 + 2
    elif t is float:
        if value - value != 0.0:
            raise InvocationError(
                f"result is not a finite number ({value!r})",
                {"reason": "non_finite", "value": repr(value)},
            )
        budget[1] -= 24
    elif t is bool or value is None:
        budget[1] -= 5
    elif t is str:
        if len(value) > limits.max_string_length:
            raise InvocationError(
                f"result is a string of {len(value)} characters; the limit is "
                f"{limits.max_string_length}",
                {"reason": "string_too_long", "limit": limits.max_string_length},
            )
        index = find_surrogate(value)
        if index >= 0:
            raise _surrogate("result string", value, index)
        budget[1] -= len(value) + 2
    elif t is list or t is tuple or t is dict:
        if depth >= 200:
            raise InvocationError(
                "result is nested too deeply", {"reason": "too_deep", "limit": 200}
            )
        budget[0] -= len(value)
        if budget[0] < 0:
            raise InvocationError(
                f"result holds more than {limits.max_result_items} items",
                {"reason": "result_too_large", "limit": limits.max_result_items},
            )
        budget[1] -= 2 + len(value)
        if t is dict:
            out = {}
            for key, child in value.items():
                if type(key) is not str:
                    raise InvocationError(
                        f"result object keys must be strings, got {type(key).__name__}",
                        {"reason": "bad_key", "type": type(key).__name__},
                    )
                index = find_surrogate(key)
                if index >= 0:
                    raise _surrogate("result object key", key, index)
                budget[1] -= len(key) + 3
                out[key] = _convert(child, limits, budget, depth + 1)
            value = out
        else:
            value = [_convert(child, limits, budget, depth + 1) for child in value]
    else:
        raise InvocationError(
            f"result of type {t.__name__} cannot be returned (only numbers, booleans, null, "
            "strings, lists and objects)",
            {"reason": "bad_result_type", "type": t.__name__},
        )
    if budget[1] < 0:
        raise InvocationError(
            f"result is larger than {limits.max_param_bytes} bytes",
            {"reason": "result_too_large", "limit": limits.max_param_bytes},
        )
    return value
