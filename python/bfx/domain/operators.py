"""The operators applied to substrates: each takes a substrate's value (its result for the
given parameters, which must be a number) and answers a small typed result. The pure
arithmetic is :mod:`bfx.operators`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from bfx import operators
from bfx.domain.substrates import Substrates

__all__ = ["Operators", "Power", "Product", "Residue", "Shift"]

Number = int | float


class Product(msgspec.Struct, frozen=True):
    unity_value: Number
    unity_hex: str | None
    dimensions_collapsed: int


class Shift(msgspec.Struct, frozen=True):
    """``add`` and ``subtract``."""

    original_value: Number
    value: Number
    new_value: Number


class Residue(msgspec.Struct, frozen=True):
    value: Number
    modulus: Number
    expressed: Number
    residue: Number


class Power(msgspec.Struct, frozen=True):
    """``power`` and ``root``."""

    original_value: Number
    result_value: Number


class Operators:
    """The operators over the substrates of one engine."""

    def __init__(self, substrates: Substrates) -> None:
        self.substrates = substrates

    def divide(self, substrate_id: int | str) -> list[dict[str, Any]]:
        self.substrates.arena.get(substrate_id)  # 404 for an unknown id
        return operators.divide()

    def multiply(self, values: Sequence[Any]) -> Product:
        unity_value, unity_hex = operators.multiply(values)
        return Product(unity_value, unity_hex, len(values))

    def shift(
        self,
        op: Callable[[Number, Number], Number],
        substrate_id: int | str,
        value: Any,
        parameters: Mapping[str, Any] | None,
    ) -> Shift:
        operators.require_number(value, "value")
        original = self.substrates.value(substrate_id, parameters)
        return Shift(original, value, op(original, value))

    def add(
        self, substrate_id: int | str, value: Any, parameters: Mapping[str, Any] | None = None
    ) -> Shift:
        return self.shift(operators.add, substrate_id, value, parameters)

    def subtract(
        self, substrate_id: int | str, value: Any, parameters: Mapping[str, Any] | None = None
    ) -> Shift:
        return self.shift(operators.subtract, substrate_id, value, parameters)

    def modulus(
        self, substrate_id: int | str, modulus: Any, parameters: Mapping[str, Any] | None = None
    ) -> Residue:
        operators.require_number(modulus, "modulus")
        original = self.substrates.value(substrate_id, parameters)
        expressed, residue = operators.modulus(original, modulus)
        return Residue(original, modulus, expressed, residue)

    def power(
        self, substrate_id: int | str, exponent: Any, parameters: Mapping[str, Any] | None = None
    ) -> Power:
        operators.require_number(exponent, "exponent")
        original = self.substrates.value(substrate_id, parameters)
        return Power(original, operators.power(original, exponent))

    def root(
        self, substrate_id: int | str, degree: Any, parameters: Mapping[str, Any] | None = None
    ) -> Power:
        operators.require_number(degree, "degree")
        original = self.substrates.value(substrate_id, parameters)
        return Power(original, operators.root(original, degree))
