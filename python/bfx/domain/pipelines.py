"""Pipelines: the ``pipeline`` expression type (DESIGN.md §9, docs/domain.md).

A pipeline's ``expression_code`` is JSON::

    {"steps": [{"substrate_id": ..., "as": ..., "parameters": {...}}, ...],
     "aggregate": "last" | "sum" | "product" | "list"}

Here: reading it into a :class:`Spec` and writing its **canonical JSON** (the text its
id hashes), and the :class:`Plan` a pipeline compiles to — its steps' compiled
expressions (or nested plans) resolved once, so an invocation neither looks a step up
nor validates its code again. A plan answers ``invoke`` and ``invoke_many`` like a
:class:`~bfx.sandbox.Compiled`, so the compiled cache, single and batch invokes and the
result cache take it as they take any substrate.

Pure logic: what exists is asked of a ``resolve`` callable (``bfx.domain.substrates``
passes its compiled cache), so nothing here reads the arena.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from bfx import errors
from bfx._core import format_id, json_nesting_exceeds, parse_id
from bfx.budget import json_size
from bfx.sandbox import Limits, validate_parameters
from bfx.sandbox.analyze import check_characters
from bfx.sandbox.guards import check_run, end_run, run_deadline
from bfx.sandbox.values import check_result

__all__ = [
    "AGGREGATES",
    "DEFAULT_MAX_DEPTH",
    "MAX_DEPTH_LIMIT",
    "MAX_STEPS",
    "Plan",
    "Spec",
    "Step",
    "build_plan",
    "canonical_json",
    "edge_guard",
    "parse_spec",
    "spec_from",
    "step_ids",
]

#: Steps of one pipeline (nested pipelines count as one step each).
MAX_STEPS = 100
#: How deeply pipelines may nest by default: a pipeline of plain substrates has depth
#: 1, one that has such a pipeline as a step depth 2 (``--pipeline-max-depth``).
DEFAULT_MAX_DEPTH = 8
#: The largest ``--pipeline-max-depth`` accepted (plans are built recursively).
MAX_DEPTH_LIMIT = 64
AGGREGATES = ("last", "sum", "product", "list")
#: Characters of an ``as`` name.
MAX_NAME_LENGTH = 64
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: The JSON nesting of a pipeline's code: the object, ``steps``, a step, its
#: ``parameters`` (depth 4), then the parameters' own values (``Limits.max_param_depth``).
_CODE_DEPTH = 3

_decode = msgspec.json.decode
_encode = msgspec.json.Encoder(order="sorted").encode


class Step(msgspec.Struct, frozen=True):
    """One step: the substrate it runs, the name its predecessor's result is passed
    under (None: not passed), and its fixed parameters."""

    substrate: int
    as_name: str | None
    parameters: dict[str, Any]


class Spec(msgspec.Struct, frozen=True):
    """A pipeline as read from its code, and its canonical JSON."""

    steps: tuple[Step, ...]
    aggregate: str
    canonical: str


def _bad(message: str, field: str, **extra: Any) -> errors.ValidationError:
    return errors.ValidationError(message, {"field": field, **extra})


def parse_spec(code: Any, limits: Limits) -> Spec:
    """Reads a pipeline's ``expression_code`` (JSON text) into a :class:`Spec`, checking
    its shape: at most :data:`MAX_STEPS` steps, ids in any spelling, ``as`` names that
    are parameter names, ``parameters`` objects of JSON values within the sandbox's
    parameter limits. A ValidationError (422) naming the field otherwise."""
    if not isinstance(code, str):
        raise _bad("expression_code must be a string", "expression_code")
    if len(code) > limits.max_code_length:
        raise errors.SandboxError(
            f"expression_code is {len(code)} characters long; the limit is "
            f"{limits.max_code_length}",
            {"reason": "code_too_long", "length": len(code), "limit": limits.max_code_length},
        )
    # Trojan Source, as for any code: invisible characters only as JSON escapes.
    check_characters(code)
    raw = code.encode("utf-8", "surrogatepass")
    if json_nesting_exceeds(raw, _CODE_DEPTH + limits.max_param_depth):
        raise _bad("a pipeline's code is nested too deeply", "expression_code", reason="too_deep")
    try:
        doc = _decode(raw)
    except msgspec.DecodeError as exc:
        raise _bad(f"a pipeline's expression_code must be JSON: {exc}", "expression_code") from None
    return spec_from(doc, limits)


def spec_from(doc: Any, limits: Limits) -> Spec:
    """A :class:`Spec` from the decoded JSON object (``compose`` builds one directly)."""
    if not isinstance(doc, dict):
        raise _bad('a pipeline is a JSON object {"steps": [...]}', "expression_code")
    unknown = sorted(k for k in doc if k not in ("steps", "aggregate"))
    if unknown:
        raise _bad(
            f"unknown field {unknown[0]!r} in a pipeline (expected steps, aggregate)",
            unknown[0][:64],
        )
    aggregate = doc.get("aggregate", "last")
    if aggregate not in AGGREGATES:
        raise _bad(
            f"aggregate must be one of {', '.join(AGGREGATES)}",
            "aggregate",
            allowed=list(AGGREGATES),
        )
    items = doc.get("steps")
    if not isinstance(items, list) or not items:
        raise _bad("steps must be a non-empty list", "steps")
    if len(items) > MAX_STEPS:
        raise errors.LimitExceededError(
            f"a pipeline has at most {MAX_STEPS} steps, not {len(items)}",
            {"field": "steps", "limit": MAX_STEPS, "count": len(items)},
        )
    steps = tuple(_step(item, index, limits) for index, item in enumerate(items))
    if steps[0].as_name is not None:
        raise _bad("the first step has no previous result to pass: drop its 'as'", "steps[0].as")
    canonical = canonical_json(steps, aggregate)
    if len(canonical) > limits.max_code_length:
        raise errors.SandboxError(
            f"the canonical form of this pipeline is {len(canonical)} characters long; "
            f"the limit is {limits.max_code_length}",
            {"reason": "code_too_long", "length": len(canonical), "limit": limits.max_code_length},
        )
    return Spec(steps, aggregate, canonical)


def _step(item: Any, index: int, limits: Limits) -> Step:
    where = f"steps[{index}]"
    if isinstance(item, str):  # the seed's spelling: a bare id
        item = {"substrate_id": item}
    if not isinstance(item, dict):
        raise _bad(f"{where} must be an object with a substrate_id", where)
    unknown = sorted(k for k in item if k not in ("substrate_id", "as", "parameters"))
    if unknown:
        raise _bad(
            f"unknown field {unknown[0]!r} in {where} (expected substrate_id, as, parameters)",
            f"{where}.{unknown[0][:64]}",
        )
    given = item.get("substrate_id")
    if not isinstance(given, str):
        raise errors.InvalidIdError(
            f"{where}.substrate_id must be an id (1-16 hex digits, optional 0x)",
            {"field": f"{where}.substrate_id", "step": index},
        )
    try:
        substrate = parse_id(given)
    except errors.BfxError:
        raise errors.InvalidIdError(
            f"{where}.substrate_id is not an id (1-16 hex digits, optional 0x): {given[:40]!r}",
            {"field": f"{where}.substrate_id", "step": index, "value": given[:40]},
        ) from None
    name = item.get("as")
    if name is not None and not (
        isinstance(name, str)
        and len(name) <= MAX_NAME_LENGTH
        and _NAME.match(name)
        and not keyword.iskeyword(name)
        and not name.startswith("__")
    ):
        raise _bad(
            f"{where}.as must be a parameter name (ASCII letters, digits and _, not "
            f"starting with a digit or __, not a Python keyword, at most {MAX_NAME_LENGTH} "
            "characters)",
            f"{where}.as",
            step=index,
        )
    parameters = item.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        raise _bad(f"{where}.parameters must be a JSON object", f"{where}.parameters", step=index)
    try:
        validate_parameters(parameters, limits)
    except errors.InvocationError as exc:
        raise errors.ValidationError(
            f"{where}.parameters: {exc.message}",
            {**exc.details, "field": f"{where}.parameters", "step": index},
        ) from None
    return Step(substrate, name, parameters)


def canonical_json(steps: tuple[Step, ...], aggregate: str) -> str:
    """The canonical JSON of a pipeline: keys sorted, no whitespace, ids as ``0x`` + 16
    upper-case hex digits, defaults omitted (``aggregate`` ``last``, an absent ``as``,
    empty ``parameters``), strings as UTF-8 (only what JSON requires escaped), numbers
    as their shortest round-trip form (``1`` and ``1.0`` differ)."""
    doc: dict[str, Any] = {"steps": [_canonical_step(s) for s in steps]}
    if aggregate != "last":
        doc["aggregate"] = aggregate
    try:
        text = _encode(doc).decode("utf-8")
    except (UnicodeEncodeError, TypeError, ValueError, OverflowError) as exc:
        raise _bad(f"a pipeline's parameters cannot be written as JSON: {exc}", "steps") from None
    return text if text.isascii() and "\x7f" not in text else _escape_invisible(text)


#: Written as escapes in canonical JSON, so that stored code never holds them raw
#: (Trojan Source, docs/sandbox.md): format characters (bidi overrides, zero-width
#: ones, ...), line and paragraph separators, DEL and the C1 controls (JSON escapes C0).
_ESCAPED = frozenset({"Cc", "Cf", "Zl", "Zp"})


def _escape_invisible(text: str) -> str:
    category = unicodedata.category
    bad = {ch for ch in set(text) if ch >= "\x7f" and category(ch) in _ESCAPED}
    if not bad:
        return text
    return "".join(_escape(ch) if ch in bad else ch for ch in text)


def _escape(ch: str) -> str:
    """``\\uXXXX`` in lower-case hex (a surrogate pair of them beyond the BMP)."""
    point = ord(ch)
    if point <= 0xFFFF:
        return f"\\u{point:04x}"
    point -= 0x10000
    return f"\\u{0xD800 + (point >> 10):04x}\\u{0xDC00 + (point & 0x3FF):04x}"


def _canonical_step(step: Step) -> dict[str, Any]:
    out: dict[str, Any] = {"substrate_id": format_id(step.substrate)}
    if step.as_name is not None:
        out["as"] = step.as_name
    if step.parameters:
        out["parameters"] = step.parameters
    return out


def step_ids(canonical: str) -> list[int]:
    """The step ids of a stored pipeline's canonical JSON, in order (repeats kept)."""
    doc = _decode(canonical)
    return [parse_id(s["substrate_id"]) for s in doc["steps"]]


def edge_guard(find: Callable[[int], Any]) -> Callable[[tuple[Any, ...]], None]:
    """The relationship delete guard (``Engine.delete_relationship``): a pipeline's
    ``COMPOSITION`` edge to one of its steps is what keeps the step from being deleted
    (the ``in_use`` check reads those edges), so it goes only with the pipeline: 409
    ``in_use``. ``find`` is the arena's (a record or None)."""

    def guard(record: tuple[Any, ...]) -> None:
        if record[1] != "COMPOSITION":
            return
        source, target = record[2], record[3]
        found = find(source)
        if found is not None and found[1] == "pipeline" and target in step_ids(found[3]):
            raise errors.InUseError(
                f"this edge ties the pipeline {format_id(source)} to its step "
                f"{format_id(target)}: it goes when the pipeline is deleted",
                {"substrate_id": format_id(target), "pipelines": [format_id(source)], "count": 1},
            )

    return guard


# ---- the compiled form ------------------------------------------------------------------

#: ``resolve(id, depth_left, path)``: the compiled expression or :class:`Plan` of the
#: substrate ``id``; raises NotFoundError when there is none.
Resolve = Callable[[int, int, tuple[int, ...]], Any]


def build_plan(
    identity: int | None,
    spec: Spec,
    limits: Limits,
    resolve: Resolve,
    *,
    max_depth: int,
    path: tuple[int, ...] = (),
) -> Plan:
    """Resolves every step of ``spec`` once (a step that is a pipeline through its own
    plan, built the same way). Refuses (422) a step that does not exist (naming its
    index and id), a pipeline nesting deeper than ``max_depth``, and a cycle: a pipeline
    reached again through its own steps. ``path`` holds the pipelines being built
    around this one, outermost first."""
    if len(path) >= max_depth:
        raise errors.LimitExceededError(
            f"pipelines nest at most {max_depth} deep",
            {"reason": "too_deep", "field": "steps", "limit": max_depth},
        )
    inner = path if identity is None else (*path, identity)
    runners: list[tuple[Any, str | None, dict[str, Any]]] = []
    depth = 1
    for index, step in enumerate(spec.steps):
        if step.substrate in inner:
            raise errors.ValidationError(
                f"steps[{index}]: {format_id(step.substrate)} contains this pipeline: "
                "pipelines may not form a cycle",
                {
                    "reason": "cycle",
                    "field": f"steps[{index}].substrate_id",
                    "step": index,
                    "substrate_id": format_id(step.substrate),
                },
            )
        try:
            compiled = resolve(step.substrate, max_depth, inner)
        except errors.NotFoundError:
            raise errors.ValidationError(
                f"steps[{index}]: no substrate {format_id(step.substrate)}",
                {
                    "reason": "missing_step",
                    "field": f"steps[{index}].substrate_id",
                    "step": index,
                    "substrate_id": format_id(step.substrate),
                },
            ) from None
        if isinstance(compiled, Plan):
            depth = max(depth, compiled.depth + 1)
        runners.append((compiled, step.as_name, step.parameters))
    if len(path) + depth > max_depth:
        raise errors.LimitExceededError(
            f"pipelines nest at most {max_depth} deep; this one would be {len(path) + depth}",
            {"reason": "too_deep", "field": "steps", "limit": max_depth},
        )
    return Plan(spec, tuple(runners), depth, limits)


class Plan:
    """A pipeline compiled: its steps resolved. Immutable and shared between threads,
    like :class:`~bfx.sandbox.Compiled` (whose ``invoke``/``invoke_many`` it answers)."""

    __slots__ = ("_runners", "aggregate", "canonical", "depth", "limits", "spec", "steps")

    expression_type = "pipeline"
    #: Parameter names: any (every step receives the request's parameters).
    parameters = None
    numeric = False

    def __init__(
        self,
        spec: Spec,
        runners: tuple[tuple[Any, str | None, dict[str, Any]], ...],
        depth: int,
        limits: Limits,
    ) -> None:
        self.spec = spec
        self.canonical = spec.canonical
        self.aggregate = spec.aggregate
        self._runners = runners
        #: Step ids, in order.
        self.steps = tuple(s.substrate for s in spec.steps)
        self.depth = depth
        self.limits = limits

    def __repr__(self) -> str:
        return f"Plan({self.canonical!r})"

    def compile(self) -> Plan:
        return self

    def invoke(self, parameters: Mapping[str, Any] | None = None) -> Any:
        """Runs the steps in order within one time budget (the sandbox's per-invocation
        budget, for the whole run, nested pipelines included); the aggregate of their
        results. InvocationError (422) for a failing step, naming it."""
        if parameters is None:
            base: dict[str, Any] = {}
        elif type(parameters) is dict:
            base = parameters  # never changed: each step with more gets its own dict
        elif isinstance(parameters, Mapping):
            base = dict(parameters)
        else:
            validate_parameters(parameters, self.limits)  # raises: not an object
            base = {}
        previous = run_deadline(self.limits)
        try:
            aggregate = self.aggregate
            # Folded as the steps answer: "last" keeps nothing, "sum" and "product" one
            # number, "list" the results with their size bounded as they come.
            results: list[Any] | None = [] if aggregate == "list" else None
            size = 0
            total: Any = 0 if aggregate == "sum" else 1
            last: Any = None
            for index, (compiled, name, fixed) in enumerate(self._runners):
                check_run()
                if name is not None:
                    merged = {**base, **fixed, name: last}
                elif fixed:
                    merged = {**base, **fixed}
                else:
                    merged = base  # the sandbox reads its parameters, never writes them
                try:
                    last = compiled.invoke(merged)
                except errors.InvocationError as exc:
                    raise _in_step(exc, index, self.steps[index]) from None
                if aggregate == "last":
                    continue
                if results is not None:
                    size += json_size(last) + 1
                    if size > self.limits.max_param_bytes:
                        raise errors.InvocationError(
                            f"the list of the steps' results would exceed "
                            f"{self.limits.max_param_bytes} bytes",
                            {"reason": "result_too_large", "limit": self.limits.max_param_bytes},
                        )
                    results.append(last)
                else:
                    total = self._fold(total, last, index)
            check_run()
            if results is not None:
                return check_result(results, self.limits)
            if aggregate == "last":
                return last
            if type(total) is float and total - total != 0.0:
                raise errors.InvocationError(
                    f"the {aggregate} of the steps' results is not finite",
                    {"reason": "non_finite", "aggregate": aggregate},
                )
            return total
        finally:
            end_run(previous)

    def invoke_many(self, parameters: Any, *, return_exceptions: bool = False) -> list[Any]:
        out: list[Any] = []
        for params in parameters:
            try:
                out.append(self.invoke(params))
            except errors.BfxError as exc:
                if not return_exceptions:
                    raise
                out.append(exc)
        return out

    def _fold(self, total: Any, value: Any, index: int) -> Any:
        """``total`` plus or times one step's result: numbers only, integers within the
        sandbox's bits (a product past them is refused before it is computed)."""
        aggregate = self.aggregate
        t = type(value)
        if t is not int and t is not float:
            raise errors.InvocationError(
                f"aggregate {aggregate!r} needs numbers; step {index} "
                f"({format_id(self.steps[index])}) answered {_kind(value)}",
                {"reason": "not_a_number", "step": index, "aggregate": aggregate},
            )
        max_bits = self.limits.max_int_bits
        if aggregate == "sum":
            total = total + value
        else:
            if (
                type(total) is int
                and t is int
                and total.bit_length() + value.bit_length() > max_bits + 1
            ):
                raise _too_big(aggregate, max_bits)
            total = total * value
        if type(total) is int and total.bit_length() > max_bits:
            raise _too_big(aggregate, max_bits)
        return total


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _too_big(aggregate: str, max_bits: int) -> errors.InvocationError:
    return errors.InvocationError(
        f"the {aggregate} of the steps' results would exceed {max_bits} bits",
        {"reason": "int_too_large", "aggregate": aggregate, "limit": max_bits},
    )


def _in_step(exc: errors.InvocationError, index: int, substrate: int) -> errors.InvocationError:
    """A step's failure, naming the step (``path``: the step indices from this pipeline
    down through nested ones); the reason stays (a timeout is still ``reason: timeout``)."""
    return errors.InvocationError(
        f"step {index} ({format_id(substrate)}): {exc.message}",
        {
            **exc.details,
            "step": index,
            "substrate_id": format_id(substrate),
            "path": [index, *exc.details.get("path", [])],
        },
    )
