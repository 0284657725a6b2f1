"""Turn a validated tree into a Python function with guards where they are needed.

Two variants are built from one validated tree (lazily, on first use):

* **numeric** — for code that only handles numbers (``Analysis.numeric``) called with
  numeric parameters. Every node gets a static bound on the bit length of its value
  (parameters are at most ``max_int_bits`` bits, floats count as 1024 bits); operators whose
  bound stays under ``2 * max_int_bits`` run as plain Python operators, the others are
  wrapped in a cap check or routed through a guard. ``kw.get('x', 0) * kw.get('y', 0)``
  compiles to exactly that, with no guard.
* **general** — for everything else: every operator that can grow a value (``+ * % ** << |``)
  and every container literal with computed items goes through a guard.

Either way the code is compiled from the tree (never from text) and runs with the guard
namespace as globals and an empty ``__builtins__``.
"""

from __future__ import annotations

import ast
import math
import warnings
from typing import Any

from bfx.errors import InvocationError

from .analyze import Analysis
from .guards import guard_name, namespace
from .limits import Limits
from .tables import BUILTIN_FUNCTIONS, CONSTANTS, GUARDED_FUNCTIONS, key_of

__all__ = ["KW_NAME", "build"]

#: Parameter of compiled expressions: the parameter dict (users cannot spell ``_`` names).
KW_NAME = "_kw"

# The location given to every node the rewriter makes (compile() needs one on each).
_AT = {"lineno": 1, "col_offset": 0, "end_lineno": 1, "end_col_offset": 0}
_LOAD = ast.Load()

_FLOAT_BITS = 1024  # |float| < 2 ** 1024, so int(float) has at most 1024 bits
# Guards that never read the deadline: code using only these needs no deadline set.
_NO_DEADLINE = frozenset({"_cap", "_mod"})

_GENERAL_BINOPS = {
    ast.Add: "_add",
    ast.Mult: "_mul",
    ast.Mod: "_mod",
    ast.Pow: "_pow",
    ast.LShift: "_lshift",
    ast.BitOr: "_bor",
}


def _name(ident: str) -> ast.Name:
    return ast.Name(id=ident, ctx=_LOAD, **_AT)


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(func), args=list(args), keywords=[], **_AT)


def _int_const(node: ast.expr) -> int | None:
    """The value of an int literal, optionally negated, else None."""
    sign = 1
    if type(node) is ast.UnaryOp and type(node.op) is ast.USub:
        sign, node = -1, node.operand
    if type(node) is ast.Constant and type(node.value) is int:
        return sign * node.value
    return None


def _float_const(node: ast.expr) -> bool:
    if type(node) is ast.UnaryOp and type(node.op) in (ast.USub, ast.UAdd):
        node = node.operand
    return type(node) is ast.Constant and type(node.value) is float


class _Rewriter:
    """Rewrites one tree; ``numeric`` selects the variant."""

    def __init__(self, analysis: Analysis, limits: Limits, numeric: bool) -> None:
        self.analysis = analysis
        self.numeric = numeric
        self.cap = limits.max_int_bits
        self.gate = 2 * limits.max_int_bits
        self.param_bits = max(limits.max_int_bits, _FLOAT_BITS)
        self.params: frozenset[str] = frozenset()
        self.kwarg = analysis.kwarg
        self.free = frozenset(analysis.names) if analysis.expression_type == "expression" else None
        self.used: set[str] = set()
        self.defaults: dict[str, ast.expr] = {}
        self.reads: dict[str, tuple[ast.expr, int]] = {}

    def guard(self, name: str, *args: ast.expr) -> ast.Call:
        self.used.add(name)
        return _call(name, *args)

    # Each visitor returns (new node, bound on the bit length of its int value).
    def rw(self, node: ast.expr) -> tuple[ast.expr, int]:
        method = getattr(self, "rw_" + type(node).__name__)
        new, bits = method(node)
        if self.numeric and bits > self.gate:
            # Operands are each within the gate, so the operation itself was cheap; cap the
            # result so that bounds stay small further up.
            return self.guard("_cap", new), self.cap
        return new, bits

    def rw_Constant(self, node: ast.Constant) -> tuple[ast.expr, int]:
        value = node.value
        t = type(value)
        if t is int:
            return node, value.bit_length()
        if t is float:
            return node, int(abs(value)).bit_length() if math.isfinite(value) else _FLOAT_BITS
        return node, 1

    def rw_Name(self, node: ast.Name) -> tuple[ast.expr, int]:
        ident = node.id
        if ident in self.params:
            return node, self.param_bits
        if self.free is None or ident not in self.free:
            # Parameters (free names) shadow constants: lambda e: e * 2.
            assert ident in CONSTANTS, ident
            return ast.Constant(CONSTANTS[ident], **_AT), _FLOAT_BITS
        known = self.reads.get(ident)
        if known is not None:
            # One node per parameter, shared by every use: compile() accepts a node at several
            # places, and building it once per use was most of a large build's cost.
            return known
        default = self.defaults.get(ident)
        if default is None:
            read = ast.Subscript(_name(KW_NAME), ast.Constant(ident, **_AT), _LOAD, **_AT)
            known = read, self.param_bits
        else:
            getter = ast.Attribute(_name(KW_NAME), "get", _LOAD, **_AT)
            _, bits = self.rw(default)
            call = ast.Call(getter, [ast.Constant(ident, **_AT), default], [], **_AT)
            known = call, max(self.param_bits, bits)
        self.reads[ident] = known
        return known

    def rw_Attribute(self, node: ast.Attribute) -> tuple[ast.expr, int]:
        return ast.Constant(CONSTANTS[node.attr], **_AT), _FLOAT_BITS  # math.<constant>

    def rw_BinOp(self, node: ast.BinOp) -> tuple[ast.expr, int]:
        left, lb = self.rw(node.left)
        right, rb = self.rw(node.right)
        op = type(node.op)
        if not self.numeric:
            guard = _GENERAL_BINOPS.get(op)
            if guard is not None:
                return self.guard(guard, left, right), self.cap
            return ast.BinOp(left, node.op, right, **_AT), max(lb, rb) + 1
        plain = ast.BinOp(left, node.op, right, **_AT)
        if op is ast.Add or op is ast.Sub:
            return plain, max(lb, rb) + 1
        if op is ast.Mult:
            return plain, lb + rb
        if op is ast.Div:
            return plain, _FLOAT_BITS
        if op is ast.FloorDiv:
            return plain, max(lb, _FLOAT_BITS)
        if op is ast.Mod:
            return plain, max(rb, _FLOAT_BITS)
        if op is ast.RShift:
            return plain, lb
        if op in (ast.BitAnd, ast.BitOr, ast.BitXor):
            return plain, max(lb, rb)
        const = _int_const(node.right)
        if op is ast.Pow:
            if (const is not None and const < 0) or _float_const(node.right):
                return plain, _FLOAT_BITS  # a float result (or complex): fixed size
            if const is not None and lb * const <= self.gate:
                return plain, max(lb * const, 1)
            return self.guard("_pow", left, right), max(self.cap, _FLOAT_BITS)
        assert op is ast.LShift
        if const is not None and lb + const <= self.gate:
            return plain, max(lb + max(const, 0), 1)
        return self.guard("_lshift", left, right), self.cap

    def rw_UnaryOp(self, node: ast.UnaryOp) -> tuple[ast.expr, int]:
        operand, bits = self.rw(node.operand)
        new = ast.UnaryOp(node.op, operand, **_AT)
        if type(node.op) is ast.Not:
            return new, 1
        return new, bits + 1

    def rw_BoolOp(self, node: ast.BoolOp) -> tuple[ast.expr, int]:
        values = [self.rw(v) for v in node.values]
        return ast.BoolOp(node.op, [v for v, _ in values], **_AT), max(b for _, b in values)

    def rw_Compare(self, node: ast.Compare) -> tuple[ast.expr, int]:
        left, _ = self.rw(node.left)
        comparators = [self.rw(c)[0] for c in node.comparators]
        return ast.Compare(left, node.ops, comparators, **_AT), 1

    def rw_IfExp(self, node: ast.IfExp) -> tuple[ast.expr, int]:
        test, _ = self.rw(node.test)
        body, bb = self.rw(node.body)
        orelse, ob = self.rw(node.orelse)
        return ast.IfExp(test, body, orelse, **_AT), max(bb, ob)

    # Containers only occur in the general variant.
    def _container(self, node: ast.expr, inner: bool) -> ast.expr:
        if type(node) is ast.List:
            new: ast.expr = ast.List([self._element(e) for e in node.elts], _LOAD, **_AT)
            children = node.elts
        elif type(node) is ast.Tuple:
            new = ast.Tuple([self._element(e) for e in node.elts], _LOAD, **_AT)
            children = node.elts
        else:
            assert type(node) is ast.Dict
            new = ast.Dict(
                [self._element(k) for k in node.keys],  # type: ignore[arg-type]
                [self._element(v) for v in node.values],
                **_AT,
            )
            children = [*node.keys, *node.values]  # type: ignore[list-item]
        if inner or all(_literal_tree(c) for c in children):
            return new
        # Items may be big computed values: check the whole literal once, outermost only.
        return self.guard("_seq", new)

    def _element(self, node: ast.expr) -> ast.expr:
        if type(node) in (ast.List, ast.Tuple, ast.Dict):
            return self._container(node, inner=True)
        return self.rw(node)[0]

    def rw_List(self, node: ast.List) -> tuple[ast.expr, int]:
        return self._container(node, inner=False), self.cap

    rw_Tuple = rw_List
    rw_Dict = rw_List

    def rw_Subscript(self, node: ast.Subscript) -> tuple[ast.expr, int]:
        value, _ = self.rw(node.value)
        return ast.Subscript(value, self._slice(node.slice), _LOAD, **_AT), self.param_bits

    def _slice(self, node: ast.expr) -> ast.expr:
        if type(node) is ast.Slice:
            return ast.Slice(
                *(
                    None if p is None else self.rw(p)[0]
                    for p in (node.lower, node.upper, node.step)
                ),
                **_AT,
            )
        if type(node) is ast.Tuple:
            return ast.Tuple([self._slice(e) for e in node.elts], _LOAD, **_AT)
        return self.rw(node)[0]

    def rw_Call(self, node: ast.Call) -> tuple[ast.expr, int]:
        func = node.func
        if (
            type(func) is ast.Attribute
            and type(func.value) is ast.Name
            and func.attr == "get"
            and func.value.id == self.kwarg
            and func.value.id in self.params
        ):
            args = [self.rw(a) for a in node.args]
            bits = max([self.param_bits] + [b for _, b in args[1:]])
            return ast.Call(func, [a for a, _ in args], [], **_AT), bits
        key = func.attr if type(func) is ast.Attribute else func.id  # type: ignore[union-attr]
        key = key_of(key, type(func) is ast.Attribute)
        args = [self.rw(a) for a in node.args]
        keywords = [ast.keyword(k.arg, self.rw(k.value)[0], **_AT) for k in node.keywords]
        target = guard_name(key)
        if key in GUARDED_FUNCTIONS:
            self.used.add(target)
        call = ast.Call(_name(target), [a for a, _ in args], keywords, **_AT)
        if key in GUARDED_FUNCTIONS:
            return call, max(self.cap, _FLOAT_BITS)
        if key in BUILTIN_FUNCTIONS and key in ("len",):
            return call, 64
        # Every other whitelisted function returns a float, or an int no larger than its
        # largest argument (abs, min, max, gcd, isqrt, floor/ceil/trunc of an int).
        return call, max([_FLOAT_BITS] + [b for _, b in args])

    def function(self) -> ast.Lambda:
        analysis = self.analysis
        tree = analysis.tree
        assert tree is not None
        dict_args = ast.arguments([], [ast.arg(KW_NAME, **_AT)], None, [], [], None, [])
        if analysis.expression_type == "expression":
            return ast.Lambda(dict_args, self.root(tree.body), **_AT)
        source = tree.body
        assert type(source) is ast.Lambda
        if analysis.kwarg is None:
            # Named parameters become reads of the parameter dict (kw['x'], or
            # kw.get('y', default)): calling f(params) is much cheaper than f(**params).
            args = source.args
            defaults = dict(
                zip(
                    [a.arg for a in args.args[len(args.args) - len(args.defaults) :]],
                    args.defaults,
                    strict=True,
                )
            )
            defaults.update(
                (a.arg, d)
                for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
                if d is not None
            )
            self.free = frozenset(analysis.names)
            self.defaults = defaults
            return ast.Lambda(dict_args, self.root(source.body), **_AT)
        self.params = frozenset(analysis.names) | {analysis.kwarg}
        body = self.root(source.body)
        if analysis.kwarg_only:
            # Called with the parameter dict itself: no copy into a fresh **kw dict.
            args = ast.arguments([], [ast.arg(analysis.kwarg, **_AT)], None, [], [], None, [])
        else:
            args = source.args
        return ast.Lambda(args, body, **_AT)

    def root(self, node: ast.expr) -> ast.expr:
        # The result check caps the returned value, so the root needs no cap of its own.
        return getattr(self, "rw_" + type(node).__name__)(node)[0]


def _literal_tree(node: ast.expr) -> bool:
    if type(node) is ast.Constant:
        return True
    if type(node) is ast.UnaryOp:
        return _literal_tree(node.operand)
    if type(node) in (ast.List, ast.Tuple):
        return all(_literal_tree(e) for e in node.elts)  # type: ignore[attr-defined]
    if type(node) is ast.Dict:
        return all(k is not None and _literal_tree(k) for k in node.keys) and all(
            _literal_tree(v) for v in node.values
        )
    return False


def build(analysis: Analysis, limits: Limits, numeric: bool) -> tuple[Any, bool]:
    """Compile one variant; return the function and whether it needs a deadline set."""
    rewriter = _Rewriter(analysis, limits, numeric)
    lam = rewriter.function()
    # Every node the rewriter makes carries a location (_AT) and the others come from the
    # parsed tree: no ast.fix_missing_locations pass, which cost two thirds of a build.
    tree = ast.Expression(lam)
    try:
        with warnings.catch_warnings():
            # e.g. SyntaxWarning for "x is 1": not an error of the sandbox.
            warnings.simplefilter("ignore")
            code = compile(tree, "<expression>", "eval", dont_inherit=True)
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        # Creation compiled the user's tree already (analyze); this is a last line of
        # defence so that a compiler refusal can never surface as an internal error.
        raise InvocationError(
            f"the expression could not be compiled: {type(exc).__name__}: {exc}"[:300],
            {"reason": "compile_error", "exception": type(exc).__name__},
        ) from None
    fn = eval(code, namespace(limits))  # compiled from the validated tree, not from text
    return fn, bool(rewriter.used - _NO_DEADLINE)
