"""Compiled substrates: validated once, compiled lazily, invoked many times."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bfx import tracing
from bfx._core import call_numeric, call_numeric_many
from bfx.errors import BfxError, InvocationError

from .analyze import Analysis, analyze
from .codegen import build
from .guards import set_deadline
from .limits import DEFAULT_LIMITS, Limits
from .values import check_result, scan_parameters, validate_parameters

__all__ = ["Compiled", "canonicalize", "compile_substrate"]

_EMPTY: dict[str, Any] = {}
#: What the core's fast path answers when it does not take a call.
_MISS = object()
_MESSAGE_LIMIT = 300


def canonicalize(expression_type: str, code: str, limits: Limits = DEFAULT_LIMITS) -> str:
    """The canonical form of ``code`` (validated: raises ``SandboxError`` if rejected)."""
    return analyze(expression_type, code, limits).canonical


def compile_substrate(expression_type: str, code: str, limits: Limits = DEFAULT_LIMITS) -> Compiled:
    """Parse, validate and canonicalise ``code``; return a :class:`Compiled`.

    Raises ``ValidationError`` for an unknown expression type and ``SandboxError`` for code
    the sandbox does not accept. The Python function is compiled on first invocation (a
    registry creating many substrates pays parse + validate + canonicalise only).
    """
    if tracing.tracer is None:  # the hot path of a create: no span, not even a no-op
        return Compiled(analyze(expression_type, code, limits), limits)
    with tracing.span(tracing.COMPILE) as traced:
        traced.set_attribute("bfx.sandbox.stage", "analyze")
        traced.set_attribute("bfx.expression_type", str(expression_type))
        return Compiled(analyze(expression_type, code, limits), limits)


class Compiled:
    """One validated expression. Immutable and safe to share between threads."""

    __slots__ = (
        "_allowed",
        "_analysis",
        "_bits",
        "_by_dict",
        "_fast",
        "_fast_deadline",
        "_general",
        "_general_deadline",
        "_hi",
        "_hot",
        "_lo",
        "_max_items",
        "canonical",
        "expression_type",
        "limits",
        "numeric",
        "parameters",
    )

    def __init__(self, analysis: Analysis, limits: Limits = DEFAULT_LIMITS) -> None:
        # The tree is dropped: a registry caches many Compiled objects, and an AST is
        # hundreds of garbage-collected objects each (full collections then take 100s
        # of ms). The canonical text is parsed again when a variant is first built.
        self._analysis = replace(analysis, tree=None)
        self.expression_type = analysis.expression_type
        self.canonical = analysis.canonical
        self.limits = limits
        #: Parameter names; None when a ``**`` parameter accepts any name.
        self.parameters: tuple[str, ...] | None = (
            None if analysis.kwarg is not None else analysis.names
        )
        #: True when numeric parameters take the guard-free fast path.
        self.numeric = analysis.numeric
        self._fast: Any = None
        self._general: Any = None
        #: The fast variant once built, when a call of it needs no deadline set first
        #: and takes the parameter dict: :meth:`invoke` tries it before anything else.
        self._hot: Any = None
        self._fast_deadline = False
        self._general_deadline = False
        self._bits = limits.max_int_bits
        self._max_items = limits.max_sequence_length
        self._hi = 1 << limits.max_int_bits
        self._lo = -self._hi
        # Every kind but a lambda mixing named and ** parameters is called with the
        # parameter dict itself (see codegen); named lambdas then check names up front.
        self._by_dict = analysis.kwarg is None or analysis.kwarg_only
        named = analysis.expression_type == "lambda" and analysis.kwarg is None
        self._allowed = frozenset(analysis.names) if named else None

    def __repr__(self) -> str:
        return f"Compiled({self.expression_type!r}, {self.canonical!r})"

    # -- compiling ------------------------------------------------------------------------

    def _variant(self, numeric: bool) -> tuple[Any, bool]:
        if numeric and self.numeric:
            if self._fast is None:
                self._fast, self._fast_deadline = self._build(True)
                if not self._fast_deadline and self._by_dict:
                    self._hot = self._fast
            return self._fast, self._fast_deadline
        if self._general is None:
            self._general, self._general_deadline = self._build(False)
        return self._general, self._general_deadline

    def _build(self, numeric: bool) -> tuple[Any, bool]:
        """The Python function of one variant (once per variant: the second stage of
        compiling, traced as such)."""
        with tracing.span(tracing.COMPILE) as traced:
            if traced is not None:
                traced.set_attribute("bfx.sandbox.stage", "build")
                traced.set_attribute("bfx.expression_type", self.expression_type)
            return build(self._with_tree(), self.limits, numeric)  # type: ignore[no-any-return]

    def _with_tree(self) -> Analysis:
        """The analysis with its tree, from the canonical text (validated again)."""
        analysis = analyze(self.expression_type, self.canonical, self.limits, check_compiles=False)
        if analysis.canonical != self.canonical:  # canonical forms are fixed points
            raise AssertionError(f"canonical form is not stable: {self.canonical!r}")
        return analysis

    def compile(self) -> Compiled:
        """Compile now rather than on first invocation (returns self)."""
        if self.expression_type != "constant":
            self._variant(self.numeric)
        return self

    # -- invoking -------------------------------------------------------------------------

    def invoke(self, parameters: dict[str, Any] | None = None) -> Any:
        """Evaluate with ``parameters`` (passed as keywords); return a JSON-ready result.

        Raises :class:`InvocationError` for a bad payload, a runtime error of the code, a
        guard, the time budget or a result that cannot be returned.
        """
        hot = self._hot
        if hot is not None:
            # The common call, checked and made in one call into the core: numbers in,
            # a number out. Anything else is answered by the general path below.
            result = call_numeric(
                hot, parameters, self._bits, self._max_items, self._allowed, _MISS
            )
            if result is not _MISS:
                return result
        if parameters is None:
            parameters = _EMPTY
        elif type(parameters) is not dict:
            if not isinstance(parameters, Mapping):
                validate_parameters(parameters, self.limits)  # raises
            parameters = dict(parameters)
        numeric = scan_parameters(parameters, self._lo, self._hi, self.limits)
        analysis = self._analysis
        if analysis.expression_type == "constant":
            return analysis.value
        if self._allowed is not None and not parameters.keys() <= self._allowed:
            raise self._signature_problem(parameters) or InvocationError(
                "unexpected parameters", {"reason": "unexpected_parameter"}
            )
        fn, deadline = self._variant(numeric)
        if deadline:
            set_deadline(self.limits)
        try:
            result = fn(parameters) if self._by_dict else fn(**parameters)
        except BfxError:
            raise
        except Exception as exc:
            raise self._translate(exc, parameters) from None
        return check_result(result, self.limits)

    def invoke_many(
        self,
        parameters: Sequence[dict[str, Any] | None] | Iterable[dict[str, Any] | None],
        *,
        return_exceptions: bool = False,
    ) -> list[Any]:
        """Invoke once per parameter dict, in order; the batch fast path.

        With ``return_exceptions`` a failing item yields its :class:`InvocationError` in
        place of a result; otherwise the first failure is raised.
        """
        batch = parameters if isinstance(parameters, list) else list(parameters)
        out: list[Any] = []
        n = len(batch)
        start = 0
        while start < n:
            stop = self._run_fast(batch, start, out)
            if stop >= n:
                break
            # Anything unusual (non-numeric parameters, a non-scalar result, an error) is
            # redone by the general path, which knows how to report it.
            try:
                out.append(self.invoke(batch[stop]))
            except BfxError as exc:
                if not return_exceptions:
                    raise
                out.append(exc)
            start = stop + 1
        return out

    def _run_fast(self, batch: list[Any], start: int, out: list[Any]) -> int:
        """Run items from ``start`` while they are numeric in and scalar out.

        Returns the index of the first item it could not handle (``len(batch)`` when done).
        """
        analysis = self._analysis
        if not self.numeric or analysis.expression_type == "constant":
            return start
        fn, deadline = self._variant(True)
        if deadline:
            return start  # guards read a per-call deadline: take the general loop
        return call_numeric_many(  # type: ignore[no-any-return]
            fn,
            self._by_dict,
            batch,
            start,
            out,
            self._bits,
            self._max_items,
            self._allowed,
        )

    # -- errors ---------------------------------------------------------------------------

    def _translate(self, exc: Exception, parameters: dict[str, Any]) -> InvocationError:
        analysis = self._analysis
        if analysis.expression_type == "expression" and isinstance(exc, KeyError):
            missing = [name for name in analysis.names if name not in parameters]
            if missing:
                return InvocationError(
                    "missing parameter"
                    + ("s " if len(missing) > 1 else " ")
                    + ", ".join(repr(m) for m in missing),
                    {"reason": "missing_parameter", "missing": missing},
                )
        if (
            analysis.expression_type == "lambda"
            and not analysis.kwarg_only
            and isinstance(exc, (TypeError, KeyError))
        ):
            problem = self._signature_problem(parameters)
            if problem is not None:
                return problem
        if isinstance(exc, RecursionError):
            text = "RecursionError: evaluation nested too deeply"
        elif isinstance(exc, MemoryError):
            text = "MemoryError: out of memory"
        else:
            text = f"{type(exc).__name__}: {exc}"
        if len(text) > _MESSAGE_LIMIT:
            text = text[: _MESSAGE_LIMIT - 3] + "..."
        return InvocationError(text, {"reason": "runtime_error", "exception": type(exc).__name__})

    def _signature_problem(self, parameters: dict[str, Any]) -> InvocationError | None:
        analysis = self._with_tree()  # an error path: parsing again is fine here
        lam = analysis.tree.body  # type: ignore[union-attr]
        args = lam.args  # type: ignore[attr-defined]
        first_default = len(args.args) - len(args.defaults)
        required = [a.arg for a in args.args[:first_default]] + [
            a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None
        ]
        missing = [name for name in required if name not in parameters]
        if missing:
            return InvocationError(
                "missing parameter"
                + ("s " if len(missing) > 1 else " ")
                + ", ".join(repr(m) for m in missing),
                {"reason": "missing_parameter", "missing": missing},
            )
        if analysis.kwarg is None:
            unexpected = sorted(str(k) for k in parameters if k not in analysis.names)
            if unexpected:
                return InvocationError(
                    "unexpected parameter"
                    + ("s " if len(unexpected) > 1 else " ")
                    + ", ".join(repr(u) for u in unexpected[:20]),
                    {"reason": "unexpected_parameter", "unexpected": unexpected[:20]},
                )
        return None
