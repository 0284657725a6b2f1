"""Lenses: named, stored expressions applied to a substrate's value (DESIGN §9,
docs/domain.md "Lenses").

A lens is an ``expression`` (a bare formula, compiled by the same sandbox, with the same
limits and per-invocation time budget, as a substrate's) over ``z``, the observed value,
and its declared parameters, each with a default. ``apply`` observes a substrate's
invocation result, or with ``dimension`` one of the nine Fibonacci levels, and
evaluates the lens on it. Three lenses are built in and can be neither deleted nor
replaced: ``identity`` (``z``), ``mask`` (``z & mask``, default 255) and
``extract_bits`` (``(z >> start) & ((1 << length) - 1)``, defaults 0 and 8).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import msgspec

from bfx import errors, operators
from bfx._core import now_us, parse_id
from bfx.domain.names import check_name
from bfx.domain.substrates import Substrates
from bfx.sandbox import Compiled, compile_substrate, validate_parameters
from bfx.storage.catalog import LensRecord

__all__ = ["BUILTINS", "MAX_DESCRIPTION", "Application", "Lenses"]

#: The longest ``description`` kept (characters).
MAX_DESCRIPTION = 1_000


def _builtin(name: str, code: str, parameters: dict[str, int], description: str) -> LensRecord:
    return LensRecord(name, code, msgspec.json.encode(parameters), description, 0, builtin=True)


BUILTINS: dict[str, LensRecord] = {
    lens.name: lens
    for lens in (
        _builtin("identity", "z", {}, "the value itself"),
        _builtin("mask", "z & mask", {"mask": 255}, "the bits of z that are set in mask"),
        _builtin(
            "extract_bits",
            "(z >> start) & ((1 << length) - 1)",
            {"start": 0, "length": 8},
            "length bits of z from bit start",
        ),
    )
}


class Application(msgspec.Struct, frozen=True):
    substrate_id: int
    lens_name: str
    value: Any
    result: Any


class Lenses:
    def __init__(self, substrates: Substrates) -> None:
        self.substrates = substrates
        self.store = substrates.engine.store
        self.limits = substrates.limits
        # Compiled lenses by name, with the record they were compiled from (a lens
        # removed and added again under its name by another worker is compiled again).
        self._compiled: dict[str, tuple[LensRecord, Compiled]] = {}
        self._lock = threading.Lock()

    def _check(self, code: Any, parameters: Any, description: Any) -> tuple[Compiled, bytes]:
        if not isinstance(code, str):
            raise errors.ValidationError(
                "expression_code must be a string", {"field": "expression_code"}
            )
        if description is not None and (
            not isinstance(description, str) or len(description) > MAX_DESCRIPTION
        ):
            raise errors.ValidationError(
                f"description must be a string of at most {MAX_DESCRIPTION} characters",
                {"field": "description", "max_length": MAX_DESCRIPTION},
            )
        defaults = {} if parameters is None else parameters
        if not isinstance(defaults, Mapping):
            raise errors.ValidationError(
                "parameters must be an object of defaults", {"field": "parameters"}
            )
        for key in defaults:
            if not isinstance(key, str) or not key.isidentifier() or key == "z" or key[0] == "_":
                raise errors.ValidationError(
                    f"parameter name {key!r} is not allowed (an identifier, not 'z', not "
                    "starting with '_')",
                    {"field": "parameters", "name": str(key)[:100]},
                )
        validate_parameters(dict(defaults), self.limits)
        compiled = compile_substrate("expression", code, self.limits)  # SandboxError: 422
        undeclared = sorted(set(compiled.parameters or ()) - {"z", *defaults})
        if undeclared:
            raise errors.ValidationError(
                "the lens uses names that are neither z nor a declared parameter: "
                + ", ".join(undeclared[:20]),
                {"field": "expression_code", "undeclared": undeclared[:20]},
            )
        return compiled, msgspec.json.encode(dict(defaults))

    def create(
        self, name: Any, expression_code: Any, parameters: Any = None, description: Any = None
    ) -> LensRecord:
        check_name(name, "a lens")
        compiled, stored = self._check(expression_code, parameters, description)
        record = LensRecord(name, expression_code, stored, description, now_us())
        catalog = self.store.catalog
        with self.store.write() as w:
            if name in BUILTINS or name in catalog.lenses:
                raise errors.DuplicateError(
                    f"a lens named {name!r} exists"
                    + (" (built in: it cannot be replaced)" if name in BUILTINS else ""),
                    {"name": name, "builtin": name in BUILTINS},
                )
            self.store.save_lens(w, record)
            w.after = lambda: catalog.set_lens(name, record)
        with self._lock:
            self._compiled[name] = (record, compiled)
        return record

    def get(self, name: str) -> LensRecord:
        record = BUILTINS.get(name) or self.store.catalog.lenses.get(name)
        if record is None:
            raise errors.NotFoundError(f"no lens named {name!r}", {"name": name})
        return record

    def all(self) -> list[LensRecord]:
        """The built-ins, then the stored lenses by name."""
        stored = self.store.catalog.lenses
        return [*BUILTINS.values(), *(stored[k] for k in sorted(stored))]

    def delete(self, name: str) -> None:
        if name in BUILTINS:
            raise errors.ConflictError(
                f"the lens {name!r} is built in and cannot be deleted",
                {"name": name, "builtin": True},
            )
        catalog = self.store.catalog
        with self.store.write() as w:
            if name not in catalog.lenses:
                raise errors.NotFoundError(f"no lens named {name!r}", {"name": name})
            self.store.remove_lens(w, name)
            w.after = lambda: catalog.set_lens(name, None)
        with self._lock:
            self._compiled.pop(name, None)

    def _compiled_lens(self, record: LensRecord) -> Compiled:
        with self._lock:
            found = self._compiled.get(record.name)
        if found is not None and found[0] == record:
            return found[1]
        compiled = compile_substrate("expression", record.expression_code, self.limits)
        with self._lock:
            self._compiled[record.name] = (record, compiled)
        return compiled

    def apply(
        self,
        substrate_id: int | str,
        lens_name: str,
        parameters: Mapping[str, Any] | None = None,
        dimension: Any = None,
        substrate_parameters: Mapping[str, Any] | None = None,
    ) -> Application:
        """The lens evaluated on the substrate's value: its invocation result (with
        ``substrate_parameters``), or with ``dimension`` (0-8) that Fibonacci level.
        ``parameters`` override the lens's defaults; an undeclared one is a 422."""
        identity = parse_id(substrate_id)
        record = self.get(lens_name)
        defaults = msgspec.json.decode(record.parameters)
        given = {} if parameters is None else dict(parameters)
        unexpected = sorted(k for k in given if k not in defaults)
        if unexpected:
            raise errors.InvocationError(
                f"the lens {lens_name!r} has no parameter " + ", ".join(map(repr, unexpected[:20])),
                {"reason": "unexpected_parameter", "unexpected": unexpected[:20]},
            )
        if dimension is None:
            value = self.substrates.invoke(identity, substrate_parameters).result
        else:
            if type(dimension) is not int or not 0 <= dimension <= 8:
                raise errors.ValidationError(
                    "dimension must be an integer from 0 to 8", {"field": "dimension"}
                )
            self.substrates.arena.get(identity)  # NotFoundError
            value = operators.FIBONACCI[dimension]
        result = self._compiled_lens(record).invoke({**defaults, **given, "z": value})
        return Application(identity, lens_name, value, result)

    # ---- import -------------------------------------------------------------------------

    def import_lens(self, record: LensRecord) -> bool:
        """Stores an exported lens (checked like a new one); False when the same one is
        stored already, ConflictError when the name holds another lens."""
        check_name(record.name, "a lens")
        existing = BUILTINS.get(record.name) or self.store.catalog.lenses.get(record.name)
        if existing is not None:
            if (existing.expression_code, existing.parameters, existing.description) == (
                record.expression_code, record.parameters, record.description,
            ):  # fmt: skip
                return False
            raise errors.ConflictError(
                f"a lens named {record.name!r} exists with other content", {"name": record.name}
            )
        defaults = msgspec.json.decode(record.parameters)
        self._check(record.expression_code, defaults, record.description)
        catalog = self.store.catalog
        with self.store.write() as w:
            if record.name in catalog.lenses:
                return False
            self.store.save_lens(w, record)
            w.after = lambda: catalog.set_lens(record.name, record)
        return True
