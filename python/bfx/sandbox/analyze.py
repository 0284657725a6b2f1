"""Parse, validate and canonicalise expression code in one pass over the syntax tree.

The whitelist is enforced node by node: anything not handled here is rejected. The same pass
writes the canonical text. It reproduces ``ast.unparse`` (CPython 3.11-3.13) for the accepted
subset, so the canonical form is "``ast.unparse`` of the validated tree", but it is this
module's code, not the running interpreter's ``ast`` module, that defines it: the identity of a
substrate cannot drift with the Python version. ``tests/test_canonical.py`` checks the two
agree.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
import unicodedata
import warnings
from dataclasses import dataclass
from typing import Any, NoReturn

# The one list of expression types is the core's (ids hash the type name); the sandbox
# compiles all but ``pipeline``, which composes other substrates (bfx.domain.pipelines).
from bfx._core import EXPRESSION_TYPES as _ALL_TYPES
from bfx.errors import SandboxError, ValidationError

from .limits import DEFAULT_LIMITS, Limits
from .tables import CONSTANTS, FUNCTIONS, KEYWORDS, MATH_FUNCTIONS, NUMERIC_FUNCTIONS, key_of
from .values import find_surrogate

__all__ = ["EXPRESSION_TYPES", "Analysis", "analyze", "check_characters"]

#: The expression types the sandbox parses and compiles.
EXPRESSION_TYPES: tuple[str, ...] = tuple(t for t in _ALL_TYPES if t != "pipeline")

# Operator precedences, numbered as ``ast._Precedence``: only their order matters.
_TUPLE, _TEST, _OR, _AND, _NOT, _CMP, _EXPR = 2, 4, 5, 6, 7, 8, 9
_BOR, _BXOR, _BAND, _SHIFT, _ARITH, _TERM, _FACTOR, _POWER, _ATOM = (
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    18,
)

_BINOPS: dict[type, tuple[str, int]] = {
    ast.Add: ("+", _ARITH),
    ast.Sub: ("-", _ARITH),
    ast.Mult: ("*", _TERM),
    ast.Div: ("/", _TERM),
    ast.FloorDiv: ("//", _TERM),
    ast.Mod: ("%", _TERM),
    ast.Pow: ("**", _POWER),
    ast.LShift: ("<<", _SHIFT),
    ast.RShift: (">>", _SHIFT),
    ast.BitOr: ("|", _BOR),
    ast.BitXor: ("^", _BXOR),
    ast.BitAnd: ("&", _BAND),
}
_UNARYOPS: dict[type, tuple[str, int]] = {
    ast.UAdd: ("+", _FACTOR),
    ast.USub: ("-", _FACTOR),
    ast.Invert: ("~", _FACTOR),
    ast.Not: ("not ", _NOT),
}
_CMPOPS: dict[type, str] = {
    ast.Eq: " == ",
    ast.NotEq: " != ",
    ast.Lt: " < ",
    ast.LtE: " <= ",
    ast.Gt: " > ",
    ast.GtE: " >= ",
    ast.Is: " is ",
    ast.IsNot: " is not ",
    ast.In: " in ",
    ast.NotIn: " not in ",
}
_BOOLOPS: dict[type, tuple[str, int]] = {ast.And: (" and ", _AND), ast.Or: (" or ", _OR)}

# Friendly names for the constructs people try most, used in rejection messages.
_FORBIDDEN_WHAT = {
    "ListComp": "comprehensions",
    "SetComp": "comprehensions",
    "DictComp": "comprehensions",
    "GeneratorExp": "generator expressions",
    "NamedExpr": "assignment expressions (:=)",
    "Lambda": "nested lambdas",
    "JoinedStr": "f-strings",
    "FormattedValue": "f-strings",
    "Starred": "starred expressions",
    "Set": "set literals",
    "Await": "await",
    "Yield": "yield",
    "YieldFrom": "yield",
}


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the validating pass learnt about one expression."""

    expression_type: str
    canonical: str
    tree: ast.Expression | None
    #: Named parameters of a lambda, or the free names of an expression (sorted).
    names: tuple[str, ...]
    #: Name of a lambda's ``**`` parameter, if any.
    kwarg: str | None
    #: Lambda with only a ``**`` parameter (called with the parameter dict itself).
    kwarg_only: bool
    #: True when the code handles only numbers (given numeric parameters): the numeric fast
    #: path applies.
    numeric: bool
    #: Value of a ``constant``.
    value: int | float | None = None


def _fail(reason: str, message: str, node: ast.AST | None = None, **extra: Any) -> NoReturn:
    details: dict[str, Any] = {"reason": reason}
    if node is not None:
        details["node"] = type(node).__name__
        lineno = getattr(node, "lineno", None)
        if lineno is not None:
            details["line"] = lineno
            details["col"] = node.col_offset + 1
    details.update(extra)
    raise SandboxError(message, details)


def _syntax_refusal(what: str, exc: SyntaxError) -> SandboxError:
    """A SyntaxError of the parser or the compiler as the sandbox's 422, with its place."""
    details: dict[str, Any] = {"reason": "syntax_error"}
    if exc.lineno is not None:
        details["line"] = exc.lineno
    if exc.offset is not None:
        details["col"] = exc.offset
    return SandboxError(f"{what}: {exc.msg}", details)


def _parse(code: str, limits: Limits) -> ast.Expression:
    if type(code) is not str:
        raise SandboxError("expression_code must be a string", {"reason": "not_a_string"})
    if len(code) > limits.max_code_length:
        raise SandboxError(
            f"expression code is {len(code)} characters long; the limit is "
            f"{limits.max_code_length}",
            {"reason": "code_too_long", "length": len(code), "limit": limits.max_code_length},
        )
    _check_characters(code)
    # Leading whitespace would be an "unexpected indent"; eval() strips it too.
    code = code.lstrip()
    if not code.isascii():
        _check_identifiers_ascii(code)
    try:
        # Warnings (invalid escapes) are not errors of the user's code and must not print or
        # raise: analyze() silences them while the parser and the compiler run.
        tree = compile(code, "<expression>", "eval", ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        raise _syntax_refusal("invalid syntax", exc) from None
    except (RecursionError, MemoryError):
        raise SandboxError(
            "expression is nested too deeply to parse", {"reason": "too_deep"}
        ) from None
    except ValueError as exc:  # e.g. null bytes (3.11), over-long int literals
        raise SandboxError(f"invalid code: {exc}", {"reason": "syntax_error"}) from None
    return tree  # type: ignore[no-any-return]


# ASCII control characters other than tab, line feed and carriage return.
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Unicode categories refused anywhere in code: controls, format characters (bidi overrides
# and isolates, zero-width spaces and joiners, the BOM, ...), surrogates, and the line and
# paragraph separators (invisible line breaks that editors render but Python does not).
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def check_characters(code: str) -> None:
    """Public name of :func:`_check_characters` (pipelines check their JSON code with it)."""
    _check_characters(code)


def _check_characters(code: str) -> None:
    """Reject invisible and control characters anywhere in ``code`` (Trojan Source).

    Bidi overrides and zero-width characters make code display differently from what the
    parser reads, even inside strings and comments; such text can still be written as an
    escape (``'\\u202e'``). Cheap: one regex search for ASCII code, one pass over the set
    of distinct characters otherwise.
    """
    found = _ASCII_CONTROL.search(code)
    index = found.start() if found is not None else -1
    if not code.isascii():
        category = unicodedata.category
        bad = [
            code.index(ch)
            for ch in set(code)
            if ch > "\x7f" and category(ch) in _INVISIBLE_CATEGORIES
        ]
        if bad:
            first = min(bad)
            index = first if index < 0 else min(index, first)
    if index < 0:
        return
    ch = code[index]
    line = code.count("\n", 0, index) + 1
    col = index - (code.rfind("\n", 0, index) + 1) + 1
    point = f"U+{ord(ch):04X}"
    cat = unicodedata.category(ch)
    name = unicodedata.name(ch, "") or ("<control>" if cat == "Cc" else "<surrogate>")
    if cat == "Cs":
        reason = "surrogate"
        what = "a lone surrogate (not valid Unicode text)"
    else:
        reason = "forbidden_character"
        escape = f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
        what = (
            "invisible control and format characters (bidi overrides, zero-width characters, "
            "line separators, ...) are not allowed anywhere in code, not even in strings and "
            f"comments; write it as an escape in a string (e.g. '{escape}')"
        )
    raise SandboxError(
        f"expression code contains {point} {name} at line {line}, column {col}: {what}",
        {
            "reason": reason,
            "character": point,
            "name": name,
            "category": cat,
            "line": line,
            "col": col,
            "index": index,
        },
    )


def _check_identifiers_ascii(code: str) -> None:
    """Reject any identifier that is not plain ASCII.

    The parser NFKC-normalises identifiers (fullwidth
    ``eval`` becomes ``eval``, the ``fi`` ligature becomes ``fi``), so the tree cannot show what was written: look at the raw tokens instead.
    Non-ASCII text inside strings and comments stays allowed.
    """
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in (tokenize.STRING, tokenize.COMMENT) and not tok.string.isascii():
                raise SandboxError(
                    f"{tok.string.strip()!r} is not ASCII: identifiers and operators must be "
                    "plain ASCII (Unicode look-alikes of names are rejected); non-ASCII text "
                    "is allowed only inside strings and comments",
                    {
                        "reason": "non_ascii_identifier",
                        "line": tok.start[0],
                        "col": tok.start[1] + 1,
                    },
                )
    except (tokenize.TokenError, SyntaxError, ValueError) as exc:
        raise SandboxError(f"invalid syntax: {exc}", {"reason": "syntax_error"}) from None


def _float_text(value: float) -> str:
    # ast.unparse writes an infinite literal as an overflowing decimal one.
    return repr(value).replace("inf", "1e309")


class _Walker:
    """Validates and writes canonical text; one instance per expression."""

    __slots__ = (
        "free",
        "kwarg",
        "limits",
        "max_depth",
        "nodes",
        "numeric",
        "params",
        "typ",
    )

    def __init__(self, typ: str, limits: Limits) -> None:
        self.typ = typ
        self.limits = limits
        self.max_depth = limits.max_ast_depth
        self.nodes = limits.max_ast_nodes
        self.params: frozenset[str] = frozenset()
        self.kwarg: str | None = None
        self.free: set[str] = set()
        self.numeric = True

    # -- the dispatcher -------------------------------------------------------------------

    def visit(self, node: ast.AST, prec: int, depth: int) -> str:
        self.nodes -= 1
        if self.nodes < 0:
            _fail(
                "too_many_nodes",
                f"expression has more than {self.limits.max_ast_nodes} syntax nodes",
                node,
                limit=self.limits.max_ast_nodes,
            )
        if depth > self.max_depth:
            _fail(
                "too_deep",
                f"expression is nested deeper than {self.max_depth} levels",
                node,
                limit=self.max_depth,
            )
        handler = _HANDLERS.get(type(node))
        if handler is None:
            name = type(node).__name__
            what = _FORBIDDEN_WHAT.get(name, f"{name} nodes")
            _fail("forbidden_node", f"{what} are not allowed in expressions", node)
        return handler(self, node, prec, depth + 1)

    # -- leaves ---------------------------------------------------------------------------

    def constant(self, node: ast.Constant, prec: int, depth: int) -> str:
        value = node.value
        t = type(value)
        if t is int:
            if value.bit_length() > self.limits.max_int_bits:
                _fail(
                    "int_too_large",
                    f"integer literal has {value.bit_length()} bits; the limit is "
                    f"{self.limits.max_int_bits}",
                    node,
                )
            return repr(value)
        if t is float:
            return _float_text(value)
        if t is str:
            if len(value) > self.limits.max_string_length:
                _fail(
                    "string_too_long",
                    f"string literal has {len(value)} characters; the limit is "
                    f"{self.limits.max_string_length}",
                    node,
                )
            index = find_surrogate(value)
            if index >= 0:
                point = f"U+{ord(value[index]):04X}"
                _fail(
                    "surrogate",
                    f"string literal holds a lone surrogate ({point}, from an escape such as "
                    "'\\ud800'): it is not valid Unicode text and cannot be returned as JSON; "
                    "write the character itself or a \\U escape",
                    node,
                    character=point,
                )
            self.numeric = False
            return repr(value)
        if t is bool or value is None:
            return repr(value)
        what = {complex: "complex numbers", bytes: "bytes literals"}.get(t, repr(value))
        _fail("forbidden_constant", f"{what} are not allowed", node)

    def name(self, node: ast.Name, prec: int, depth: int) -> str:
        ident = node.id
        if ident.startswith("_"):
            _fail(
                "private_name",
                f"names starting with '_' are not allowed: {ident!r}",
                node,
            )
        if ident in self.params:
            if ident == self.kwarg:
                self.numeric = False  # the whole parameter dict used as a value
            return ident
        if ident in CONSTANTS:
            return ident
        if ident in FUNCTIONS:
            _fail(
                "function_as_value",
                f"function {ident!r} can only be called, not used as a value",
                node,
            )
        if ident == "math":
            _fail("forbidden_name", "'math' can only be used as math.<name>", node)
        if self.typ == "expression":
            self.free.add(ident)
            return ident
        _fail(
            "unknown_name",
            f"unknown name {ident!r}: a lambda can use its parameters, the math constants and "
            "the whitelisted functions only",
            node,
        )

    # -- operators ------------------------------------------------------------------------

    def binop(self, node: ast.BinOp, prec: int, depth: int) -> str:
        entry = _BINOPS.get(type(node.op))
        if entry is None:
            _fail("forbidden_operator", f"operator {type(node.op).__name__} is not allowed", node)
        sym, own = entry
        if own == _POWER:  # right-associative
            left = self.visit(node.left, own + 1, depth)
            right = self.visit(node.right, own, depth)
        else:
            left = self.visit(node.left, own, depth)
            right = self.visit(node.right, own + 1, depth)
        text = f"{left} {sym} {right}"
        return f"({text})" if prec > own else text

    def unaryop(self, node: ast.UnaryOp, prec: int, depth: int) -> str:
        sym, own = _UNARYOPS[type(node.op)]
        text = sym + self.visit(node.operand, own, depth)
        return f"({text})" if prec > own else text

    def boolop(self, node: ast.BoolOp, prec: int, depth: int) -> str:
        sep, own = _BOOLOPS[type(node.op)]
        parts = []
        level = own
        for value in node.values:
            # ast.unparse raises the precedence for each further operand.
            level = min(level + 1, _ATOM)
            parts.append(self.visit(value, level, depth))
        text = sep.join(parts)
        return f"({text})" if prec > own else text

    def compare(self, node: ast.Compare, prec: int, depth: int) -> str:
        parts = [self.visit(node.left, _EXPR, depth)]
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts.append(_CMPOPS[type(op)])
            parts.append(self.visit(right, _EXPR, depth))
        text = "".join(parts)
        return f"({text})" if prec > _CMP else text

    def ifexp(self, node: ast.IfExp, prec: int, depth: int) -> str:
        body = self.visit(node.body, _OR, depth)
        test = self.visit(node.test, _OR, depth)
        orelse = self.visit(node.orelse, _TEST, depth)
        text = f"{body} if {test} else {orelse}"
        return f"({text})" if prec > _TEST else text

    # -- containers -----------------------------------------------------------------------

    def list_(self, node: ast.List, prec: int, depth: int) -> str:
        self.numeric = False
        return "[" + ", ".join(self.visit(e, _TEST, depth) for e in node.elts) + "]"

    def tuple_(self, node: ast.Tuple, prec: int, depth: int) -> str:
        self.numeric = False
        return "(" + self._items(node.elts, depth) + ")"

    def _items(self, elts: list[ast.expr], depth: int) -> str:
        if len(elts) == 1:
            return self.visit(elts[0], _TEST, depth) + ","
        return ", ".join(self.visit(e, _TEST, depth) for e in elts)

    def dict_(self, node: ast.Dict, prec: int, depth: int) -> str:
        self.numeric = False
        parts = []
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                _fail("starred", "'**' unpacking is not allowed in dict literals", value)
            parts.append(f"{self.visit(key, _TEST, depth)}: {self.visit(value, _TEST, depth)}")
        return "{" + ", ".join(parts) + "}"

    def subscript(self, node: ast.Subscript, prec: int, depth: int) -> str:
        value, index = node.value, node.slice
        if (
            type(value) is ast.Name
            and value.id == self.kwarg
            and type(index) is ast.Constant
            and type(index.value) is str
        ):
            # kw['x']: a parameter read; the key string does not make the code non-numeric.
            self.nodes -= 1
            numeric = self.numeric
            key = self.visit(index, _TEST, depth)
            self.numeric = numeric
            return f"{value.id}[{key}]"
        self.numeric = False
        base = self.visit(value, _ATOM, depth)
        if type(index) is ast.Tuple and index.elts:
            self.nodes -= 1
            inner = self._items_slices(index.elts, depth)
        else:
            inner = self._slice_or_expr(index, depth)
        return f"{base}[{inner}]"

    def _items_slices(self, elts: list[ast.expr], depth: int) -> str:
        parts = [self._slice_or_expr(e, depth) for e in elts]
        return parts[0] + "," if len(parts) == 1 else ", ".join(parts)

    def _slice_or_expr(self, node: ast.expr, depth: int) -> str:
        if type(node) is not ast.Slice:
            return self.visit(node, _TEST, depth)
        self.nodes -= 1
        text = ""
        if node.lower is not None:
            text += self.visit(node.lower, _TEST, depth)
        text += ":"
        if node.upper is not None:
            text += self.visit(node.upper, _TEST, depth)
        if node.step is not None:
            text += ":" + self.visit(node.step, _TEST, depth)
        return text

    # -- attributes and calls -------------------------------------------------------------

    def attribute(self, node: ast.Attribute, prec: int, depth: int) -> str:
        # Only math constants are values; math functions and kw.get must be called.
        base, attr = node.value, node.attr
        if self._is_math(base):
            if attr in CONSTANTS:
                self.nodes -= 1
                return "math." + attr
            if attr in MATH_FUNCTIONS:
                _fail(
                    "function_as_value",
                    f"function 'math.{attr}' can only be called, not used as a value",
                    node,
                )
        self._bad_attribute(node)

    def _is_math(self, node: ast.expr) -> bool:
        return type(node) is ast.Name and node.id == "math" and "math" not in self.params

    def _bad_attribute(self, node: ast.Attribute) -> NoReturn:
        attr = node.attr
        base = node.value
        if attr.startswith("_"):
            _fail("private_name", f"attribute {attr!r} is not allowed", node, attribute=attr)
        if self._is_math(base):
            _fail("attribute", f"math.{attr} is not an allowed math function", node, attribute=attr)
        if type(base) is ast.Name and base.id == self.kwarg and self.kwarg is not None:
            _fail(
                "attribute",
                f"{base.id}.{attr} is not allowed: only {base.id}.get(...) and "
                f"{base.id}[...] read parameters",
                node,
                attribute=attr,
            )
        _fail(
            "attribute",
            f"attribute access .{attr} is not allowed (only math.<name> and kw.get)",
            node,
            attribute=attr,
        )

    def call(self, node: ast.Call, prec: int, depth: int) -> str:
        func = node.func
        if type(func) is ast.Name:
            ident = func.id
            if ident in self.params or ident not in FUNCTIONS:
                if ident.startswith("_"):
                    _fail(
                        "private_name", f"names starting with '_' are not allowed: {ident!r}", func
                    )
                _fail(
                    "call",
                    f"calling {ident!r} is not allowed: only the whitelisted functions "
                    "(abs, min, max, round, int, float, sum, len, pow and math functions) "
                    "can be called",
                    node,
                    function=ident,
                )
            key = key_of(ident, False)
            self.nodes -= 1
            head = ident
        elif type(func) is ast.Attribute:
            base, attr = func.value, func.attr
            if self._is_math(base) and attr in MATH_FUNCTIONS:
                key = "math." + attr
                head = key
                self.nodes -= 2
            elif (
                type(base) is ast.Name
                and self.kwarg is not None
                and base.id == self.kwarg
                and attr == "get"
            ):
                return self._kw_get(node, base.id, depth)
            else:
                self._bad_attribute(func)
        else:
            _fail("call", "only named functions can be called", node)
        if key not in NUMERIC_FUNCTIONS:
            self.numeric = False
        allowed = KEYWORDS.get(key, frozenset())
        parts = []
        for arg in node.args:
            if type(arg) is ast.Starred:
                _fail("starred", "starred arguments (*args) are not allowed", arg)
            parts.append(self.visit(arg, _TEST, depth))
        for kw in node.keywords:
            if kw.arg is None:
                _fail("starred", "'**' argument unpacking is not allowed", kw.value)
            if kw.arg not in allowed:
                _fail(
                    "keyword",
                    f"{head}() takes no keyword argument {kw.arg!r}"
                    + (f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""),
                    node,
                    keyword=kw.arg,
                )
            self.nodes -= 1
            parts.append(f"{kw.arg}={self.visit(kw.value, _TEST, depth)}")
        return f"{head}({', '.join(parts)})"

    def _kw_get(self, node: ast.Call, kw: str, depth: int) -> str:
        if node.keywords or not 1 <= len(node.args) <= 2:
            _fail("call", f"{kw}.get takes a key and an optional default", node)
        if any(type(a) is ast.Starred for a in node.args):
            _fail("starred", "starred arguments (*args) are not allowed", node)
        self.nodes -= 2
        key, rest = node.args[0], node.args[1:]
        if type(key) is ast.Constant and type(key.value) is str:
            # The key string is a lookup, not a value: it does not make the code non-numeric.
            numeric = self.numeric
            parts = [self.visit(key, _TEST, depth)]
            self.numeric = numeric
        else:
            self.numeric = False
            parts = [self.visit(key, _TEST, depth)]
        parts.extend(self.visit(a, _TEST, depth) for a in rest)
        return f"{kw}.get({', '.join(parts)})"

    # -- the lambda -----------------------------------------------------------------------

    def lambda_(self, node: ast.Lambda, depth: int) -> str:
        args = node.args
        if args.posonlyargs:
            _fail("lambda_signature", "positional-only parameters are not allowed", node)
        if args.vararg is not None:
            _fail(
                "lambda_signature",
                "*args is not allowed: parameters are passed by keyword",
                node,
            )
        parts: list[str] = []
        names: list[str] = []
        ndefaults = len(args.defaults)
        first_default = len(args.args) - ndefaults
        for index, arg in enumerate(args.args):
            names.append(self._param_name(arg))
            text = arg.arg
            if index >= first_default:
                text += "=" + self._default(args.defaults[index - first_default], depth)
            parts.append(text)
        if args.kwonlyargs:
            parts.append("*")
            for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
                names.append(self._param_name(arg))
                text = arg.arg
                if default is not None:
                    text += "=" + self._default(default, depth)
                parts.append(text)
        if args.kwarg is not None:
            self.kwarg = self._param_name(args.kwarg)
            parts.append("**" + self.kwarg)
        self.params = frozenset(names) | ({self.kwarg} if self.kwarg else set())
        body = self.visit(node.body, _TEST, depth)
        head = "lambda " + ", ".join(parts) if parts else "lambda"
        return f"{head}: {body}"

    def _param_name(self, arg: ast.arg) -> str:
        ident = arg.arg
        if ident.startswith("_"):
            _fail(
                "private_name", f"parameter names starting with '_' are not allowed: {ident!r}", arg
            )
        self.nodes -= 1
        return ident

    def _default(self, node: ast.expr, depth: int) -> str:
        if not _literal(node):
            _fail(
                "default_not_literal",
                "parameter defaults must be literal constants (numbers, strings, True, False, "
                "None)",
                node,
            )
        if not _numeric_literal(node):
            self.numeric = False
        return self.visit(node, _TEST, depth)


def _literal(node: ast.expr) -> bool:
    if type(node) is ast.UnaryOp and type(node.op) in (ast.USub, ast.UAdd):
        node = node.operand
        return type(node) is ast.Constant and type(node.value) in (int, float)
    return type(node) is ast.Constant


def _numeric_literal(node: ast.expr) -> bool:
    if type(node) is ast.UnaryOp and type(node.op) in (ast.USub, ast.UAdd):
        node = node.operand
    return type(node) is ast.Constant and type(node.value) is not str


_HANDLERS: dict[type, Any] = {
    ast.Constant: _Walker.constant,
    ast.Name: _Walker.name,
    ast.BinOp: _Walker.binop,
    ast.UnaryOp: _Walker.unaryop,
    ast.BoolOp: _Walker.boolop,
    ast.Compare: _Walker.compare,
    ast.IfExp: _Walker.ifexp,
    ast.List: _Walker.list_,
    ast.Tuple: _Walker.tuple_,
    ast.Dict: _Walker.dict_,
    ast.Subscript: _Walker.subscript,
    ast.Attribute: _Walker.attribute,
    ast.Call: _Walker.call,
}


def _constant_value(tree: ast.Expression) -> int | float:
    node = tree.body
    sign = 1
    if type(node) is ast.UnaryOp and type(node.op) in (ast.USub, ast.UAdd):
        sign = -1 if type(node.op) is ast.USub else 1
        node = node.operand
    if not (type(node) is ast.Constant and type(node.value) in (int, float)):
        _fail(
            "not_a_number",
            "a constant must be a single int or float literal, optionally signed "
            "(e.g. 42, -7, 3.5, 1e3)",
            node,
        )
    value = node.value if sign == 1 else -node.value
    if type(value) is float and not math.isfinite(value):
        _fail("non_finite", "a constant must be finite (no inf or nan)", node)
    return value


def analyze(
    expression_type: str,
    code: str,
    limits: Limits = DEFAULT_LIMITS,
    *,
    check_compiles: bool = True,
) -> Analysis:
    """Parse and validate ``code``; return its canonical text and what compiling needs.

    Raises :class:`ValidationError` for an unknown expression type and
    :class:`SandboxError` for code that is not accepted. ``check_compiles=False`` skips the
    ``compile()`` check, for code that passed it already (the canonical text of an accepted
    expression, parsed again to build its function, which compiles it anyway).
    """
    if expression_type not in EXPRESSION_TYPES:
        raise ValidationError(
            f"unknown expression_type {expression_type!r}; expected one of "
            + ", ".join(EXPRESSION_TYPES),
            {
                "field": "expression_type",
                "value": str(expression_type)[:100],
                "allowed": list(EXPRESSION_TYPES),
            },
        )
    # One catch_warnings for parser and compiler: entering one costs about 3.5 us.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = _parse(code, limits)
        try:
            analysis = _analyze_tree(expression_type, tree, limits)
        except RecursionError:
            # Only reachable with a max_ast_depth configured near the interpreter's own limit.
            raise SandboxError("expression is nested too deeply", {"reason": "too_deep"}) from None
        if check_compiles and expression_type != "constant":  # one number literal: no need
            _check_compiles(tree)
    return analysis


def _check_compiles(tree: ast.Expression) -> None:
    """Refuse what CPython's own compiler refuses once the parser has accepted it.

    The parser accepts some code that ``compile()`` then rejects: duplicate parameter names
    (``lambda x, x: x``, ``lambda x, **x: 0``), a repeated keyword argument
    (``round(x, ndigits=1, ndigits=2)``), and whatever a later Python adds to its symbol
    table and code generator checks. Compiling the validated tree itself covers that whole
    class, whatever the rule (the code object is thrown away; the invoked function is
    compiled from the rewritten tree on first use).
    """
    try:
        # Warnings ("is" with a literal, "'int' object is not callable") are silenced by
        # the caller: they are not errors, and the call fails at run time if it runs.
        compile(tree, "<expression>", "eval", dont_inherit=True)
    except SyntaxError as exc:
        raise _syntax_refusal("invalid code", exc) from None
    except (RecursionError, MemoryError):
        raise SandboxError(
            "expression is nested too deeply to compile", {"reason": "too_deep"}
        ) from None
    except ValueError as exc:
        raise SandboxError(f"invalid code: {exc}", {"reason": "syntax_error"}) from None


def _analyze_tree(expression_type: str, tree: ast.Expression, limits: Limits) -> Analysis:
    walker = _Walker(expression_type, limits)
    body = tree.body
    if expression_type == "constant":
        value = _constant_value(tree)
        if type(value) is int and value.bit_length() > limits.max_int_bits:
            _fail(
                "int_too_large", f"integer constant has more than {limits.max_int_bits} bits", body
            )
        return Analysis(
            "constant",
            _float_text(value) if type(value) is float else repr(value),
            None,
            (),
            None,
            False,
            True,
            value,
        )
    if expression_type == "lambda":
        if type(body) is not ast.Lambda:
            _fail(
                "not_a_lambda",
                "a 'lambda' substrate must be a lambda expression, e.g. 'lambda x, y=2: x * y' "
                "(use type 'expression' for a bare formula)",
                body,
            )
        walker.nodes -= 1
        canonical = walker.lambda_(body, 2)
        args = body.args
        kwarg_only = args.kwarg is not None and not args.args and not args.kwonlyargs
        names = tuple(a.arg for a in args.args) + tuple(a.arg for a in args.kwonlyargs)
        kwarg = walker.kwarg
    else:
        if type(body) is ast.Lambda:
            _fail(
                "forbidden_node",
                "an 'expression' substrate is a bare formula, not a lambda (use type 'lambda')",
                body,
            )
        canonical = walker.visit(body, _TEST, 1)
        names = tuple(sorted(walker.free))
        kwarg = None
        kwarg_only = False
    if len(canonical) > limits.max_code_length:
        # The canonical form is what gets stored and recompiled: it must pass the same limit.
        raise SandboxError(
            f"the canonical form of this code is {len(canonical)} characters long; the limit "
            f"is {limits.max_code_length}",
            {"reason": "code_too_long", "length": len(canonical), "limit": limits.max_code_length},
        )
    return Analysis(expression_type, canonical, tree, names, kwarg, kwarg_only, walker.numeric)
