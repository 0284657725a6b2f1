"""Promotion ("dimensional motion", DESIGN.md §9): a pure computation on a 64-bit id.

``new = identity XOR attribute_value XOR delta`` (all u64). ``attribute_value``
defaults to 798336, the prototype's constant as DESIGN.md §9 names it. ``delta`` is
given, or the FNV-1a-64 hash of a ``change_description``'s UTF-8 bytes, or 0 when
neither is given. XOR is its own inverse: promoting the result with the same inputs
gives the original back. Nothing is stored, and the id need not name a substrate (the
result of a promotion usually names none, and must be promotable back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from bfx import errors

__all__ = [
    "DEFAULT_ATTRIBUTE_VALUE",
    "FNV_OFFSET",
    "FNV_PRIME",
    "MAX_SEQUENCE",
    "Promotion",
    "PromotionStep",
    "fnv1a_64",
    "promote",
    "promote_sequence",
]

U64 = (1 << 64) - 1
#: DESIGN.md §9: the default attribute value.
DEFAULT_ATTRIBUTE_VALUE = 798336
#: FNV-1a 64-bit parameters (the published offset basis and prime).
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
#: Deltas in one ``promote/sequence`` request (422 beyond).
MAX_SEQUENCE = 1000


def fnv1a_64(data: bytes) -> int:
    """FNV-1a, 64-bit: for each byte, XOR it in, then multiply by the prime mod 2^64."""
    h = FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & U64
    return h


def u64(value: Any, field: str) -> int:
    """``value`` if it is an integer in [0, 2^64), else a 422 naming ``field``."""
    if type(value) is not int or not 0 <= value <= U64:
        raise errors.ValidationError(
            f"{field} must be an integer in [0, 2^64 - 1]",
            {"field": field, "minimum": 0, "maximum": U64},
        )
    return value


class Promotion(msgspec.Struct, frozen=True):
    identity: int
    delta: int
    attribute_value: int
    new_identity: int


class PromotionStep(msgspec.Struct, frozen=True):
    delta: int
    new_identity: int


def resolve_delta(delta: int | None, change_description: str | None) -> int:
    """The delta: given, derived from the description, or 0; both given is a 422 (which
    one was meant is unclear)."""
    if delta is not None and change_description is not None:
        raise errors.ValidationError(
            "give delta or change_description, not both",
            {"field": "delta", "reason": "conflict"},
        )
    if change_description is not None:
        if not isinstance(change_description, str):
            raise errors.ValidationError(
                "change_description must be a string", {"field": "change_description"}
            )
        try:
            data = change_description.encode("utf-8")
        except UnicodeEncodeError:
            raise errors.ValidationError(
                "change_description is not valid UTF-8 (a lone surrogate)",
                {"field": "change_description"},
            ) from None
        return fnv1a_64(data)
    return 0 if delta is None else u64(delta, "delta")


def promote(
    identity: int,
    delta: int | None = None,
    change_description: str | None = None,
    attribute_value: int | None = None,
) -> Promotion:
    identity = u64(identity, "substrate_id")
    attr = (
        DEFAULT_ATTRIBUTE_VALUE
        if attribute_value is None
        else u64(attribute_value, "attribute_value")
    )
    d = resolve_delta(delta, change_description)
    return Promotion(identity, d, attr, identity ^ attr ^ d)


def promote_sequence(
    identity: int, deltas: Sequence[int], attribute_value: int | None = None
) -> list[PromotionStep]:
    """Each delta applied to the identity the step before produced, in order."""
    identity = u64(identity, "substrate_id")
    attr = (
        DEFAULT_ATTRIBUTE_VALUE
        if attribute_value is None
        else u64(attribute_value, "attribute_value")
    )
    if not isinstance(deltas, Sequence) or isinstance(deltas, str | bytes):
        raise errors.ValidationError("deltas must be a list", {"field": "deltas"})
    if len(deltas) > MAX_SEQUENCE:
        raise errors.ValidationError(
            f"at most {MAX_SEQUENCE} deltas per sequence",
            {"field": "deltas", "maximum": MAX_SEQUENCE, "got": len(deltas)},
        )
    steps = []
    current = identity
    for i, delta in enumerate(deltas):
        current ^= attr ^ u64(delta, f"deltas[{i}]")
        steps.append(PromotionStep(delta, current))
    return steps
