"""The bfx expression sandbox: parse, validate, canonicalise, compile and invoke safely.

User code is never ``eval``-ed as text. It is parsed with :mod:`ast`, checked node by node
against a whitelist (``analyze``), written out in canonical form, rewritten with guards
(``codegen``) and compiled from the tree, then run with only whitelisted names in scope and
``__builtins__`` empty. See ``docs/sandbox.md`` for the rules and every limit.

Modules: ``limits`` (the bounds), ``tables`` (the whitelist), ``analyze`` (validation and
canonical form), ``codegen`` (guard insertion and compilation), ``guards`` (run-time checks),
``values`` (parameters in, results out), ``compiled`` (the public entry points).
"""

from __future__ import annotations

from .analyze import EXPRESSION_TYPES
from .compiled import Compiled, canonicalize, compile_substrate
from .limits import DEFAULT_LIMITS, Limits
from .values import validate_parameters

__all__ = [
    "DEFAULT_LIMITS",
    "EXPRESSION_TYPES",
    "Compiled",
    "Limits",
    "canonicalize",
    "compile_substrate",
    "validate_parameters",
]
