"""Resource limits of the expression sandbox (see docs/sandbox.md for every default)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied at creation (code) and at invocation (parameters, values, time).

    Frozen and hashable: the guard namespace built for a ``Limits`` is cached per instance
    value, so equal limits share one namespace.
    """

    #: Characters of expression code (checked before parsing).
    max_code_length: int = 10_000
    #: Nesting depth of the syntax tree (the root is depth 1).
    max_ast_depth: int = 100
    #: Number of syntax-tree nodes.
    max_ast_nodes: int = 2_000
    #: Bits of any integer: literals, parameters, guarded results and the returned value.
    max_int_bits: int = 4096
    #: Characters of any string: literals, parameters and strings built at run time.
    max_string_length: int = 10_000
    #: Logical items (nested items counted, shared ones once per use) of any list, tuple or
    #: dict built at run time, and of the whole parameter object.
    max_sequence_length: int = 10_000
    #: Estimated JSON size of the parameter object, in bytes.
    max_param_bytes: int = 1 << 20
    #: Nesting depth of the parameter object (the object itself is depth 1).
    max_param_depth: int = 32
    #: Logical items of a returned list or dict (nested items counted).
    max_result_items: int = 10_000
    #: Work bound of a modular ``pow(b, e, m)``: ``bits(e) * bits(m) ** 2``.
    max_modpow_cost: int = 1 << 32
    #: Wall-clock budget of one invocation, checked at every guarded operation.
    time_budget_ms: float = 100.0

    def __post_init__(self) -> None:
        for name in (
            "max_code_length",
            "max_ast_depth",
            "max_ast_nodes",
            "max_int_bits",
            "max_string_length",
            "max_sequence_length",
            "max_param_bytes",
            "max_param_depth",
            "max_result_items",
            "max_modpow_cost",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"Limits.{name} must be a positive int, got {value!r}")
        if not self.time_budget_ms > 0:
            raise ValueError(f"Limits.time_budget_ms must be > 0, got {self.time_budget_ms!r}")


DEFAULT_LIMITS = Limits()
