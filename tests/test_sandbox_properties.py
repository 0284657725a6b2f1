"""Property tests: the sandbox agrees with plain Python, and nothing gets through or hangs."""

from __future__ import annotations

import ast
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bfx.errors import InvocationError, SandboxError
from bfx.sandbox import compile_substrate

pytestmark = pytest.mark.timeout(300)

# -- generated whitelisted expressions ---------------------------------------------------------

NAMES = ("a", "b", "c")
_ints = st.integers(-20, 20).map(lambda n: f"({n})")
_floats = st.floats(-100, 100, allow_nan=False, allow_infinity=False).map(lambda f: f"({f!r})")
_names = st.sampled_from(NAMES)
_small = st.one_of(_ints, _names)
_leaf = st.one_of(_ints, _floats, _names, st.sampled_from(["True", "False", "pi", "math.e"]))

_BINOPS = ("+", "-", "*", "/", "//", "%", ">>", "&", "|", "^")
_CMPOPS = ("<", "<=", "==", "!=", ">", ">=")
_FUNCS1 = ("abs", "round", "int", "float", "math.floor", "ceil", "sqrt", "math.fabs", "exp")


def _extend(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, st.sampled_from(_BINOPS), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        # ** and << only on leaves with small right operands: values stay far below the
        # integer cap, where the sandbox and Python must agree exactly.
        st.tuples(_small, st.integers(-2, 3)).map(lambda t: f"({t[0]} ** {t[1]})"),
        st.tuples(_small, st.integers(0, 8)).map(lambda t: f"({t[0]} << {t[1]})"),
        st.tuples(st.sampled_from(("-", "+", "~", "not ")), children).map(
            lambda t: f"({t[0]}{t[1]})"
        ),
        st.tuples(
            children, st.sampled_from(_CMPOPS), children, st.sampled_from(_CMPOPS), children
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]} {t[3]} {t[4]})"),
        st.tuples(children, st.sampled_from(("and", "or")), children).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(children, children, children).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.tuples(st.sampled_from(_FUNCS1), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(("min", "max", "math.hypot", "atan2")), children, children).map(
            lambda t: f"{t[0]}({t[1]}, {t[2]})"
        ),
        # containers and sequences (these take the general, fully guarded path)
        st.tuples(children, children, st.integers(-3, 2)).map(
            lambda t: f"[{t[0]}, {t[1]}][{t[2]}]"
        ),
        st.tuples(children, children).map(lambda t: f"({t[0]}, [{t[1]}])"),
        st.tuples(st.sampled_from(("'ab'", "'xyz'", "[1, 2]", "(3,)")), st.integers(-1, 4)).map(
            lambda t: f"len({t[0]} * {t[1]})"
        ),
        st.tuples(children, children).map(lambda t: f"sum([{t[0]}, {t[1]}])"),
        st.tuples(children, children).map(lambda t: f"({t[0]} in [{t[1]}, 1])"),
    )


EXPRESSIONS = st.recursive(_leaf, _extend, max_leaves=10)
VALUES = st.one_of(
    st.integers(-50, 50),
    st.floats(-1000, 1000, allow_nan=False, allow_infinity=False),
    st.booleans(),
)
PARAMS = st.fixed_dictionaries({name: VALUES for name in NAMES})

_ORACLE_GLOBALS = {
    "__builtins__": {},
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "min": min,
    "max": max,
    "len": len,
    "sum": sum,
    "ceil": math.ceil,
    "sqrt": math.sqrt,
    "exp": math.exp,
    "atan2": math.atan2,
    "pi": math.pi,
    "math": math,
}


def _expected(code: str, params: dict) -> tuple[bool, object]:
    """Plain Python's answer: (ok, value) — value normalised as the sandbox returns it."""
    try:
        value = eval(code, dict(_ORACLE_GLOBALS), dict(params))  # the oracle: plain Python
    except Exception as exc:
        return False, exc
    try:
        return True, _normalise(value)
    except ValueError as exc:
        return False, exc


def _normalise(value: object) -> object:
    if type(value) is float and not math.isfinite(value):
        raise ValueError("non-finite")
    if type(value) is int and value.bit_length() > 4096:
        raise ValueError("too large")
    if type(value) is complex:
        raise ValueError("complex")
    if type(value) in (list, tuple):
        return [_normalise(v) for v in value]
    return value


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _check_agrees(typ: str, code: str, oracle_code: str, params: dict) -> None:
    compiled = compile_substrate(typ, code)
    ok, expected = _expected(oracle_code, params)
    # Fast path (numeric parameters), general path (an extra non-numeric parameter makes the
    # payload non-numeric; expressions ignore it), and the batch path.
    runs = [lambda: compiled.invoke(params)]
    if typ == "expression":
        runs.append(lambda: compiled.invoke({**params, "zz": ["not numeric"]}))
    runs.append(lambda: compiled.invoke_many([params])[0])
    for run in runs:
        if ok:
            result = run()
            assert _same(result, expected), (code, params, result, expected)
        else:
            with pytest.raises(InvocationError):
                run()


@given(EXPRESSIONS, PARAMS)
def test_expressions_match_plain_python(code: str, params: dict) -> None:
    _check_agrees("expression", code, code, params)


@given(EXPRESSIONS, PARAMS)
def test_named_lambdas_match_plain_python(code: str, params: dict) -> None:
    _check_agrees("lambda", f"lambda a, b, c=0: {code}", code, params)


@given(EXPRESSIONS, PARAMS)
def test_kw_lambdas_match_plain_python(code: str, params: dict) -> None:
    tree = ast.parse(code, mode="eval")
    # Read parameters through kw.get / kw[...] instead of names.
    for node in ast.walk(tree):
        for field, child in ast.iter_fields(node):
            if isinstance(child, ast.Name) and child.id in NAMES:
                getter = ast.parse(
                    f"kw.get({child.id!r}, 0)" if child.id == "a" else f"kw[{child.id!r}]",
                    mode="eval",
                ).body
                setattr(node, field, getter)
            elif isinstance(child, list):
                for i, item in enumerate(child):
                    if isinstance(item, ast.Name) and item.id in NAMES:
                        child[i] = ast.parse(f"kw[{item.id!r}]", mode="eval").body
    body = ast.unparse(tree)
    oracle = body.replace("kw.get('a', 0)", "a")
    for name in NAMES:
        oracle = oracle.replace(f"kw[{name!r}]", name)
    _check_agrees("lambda", f"lambda **kw: {body}", oracle, params)


# -- hostile input never escapes or hangs --------------------------------------------------------

_TOKENS = (
    "x",
    "kw",
    "math",
    "lambda",
    "**kw",
    ":",
    ".",
    "__class__",
    "__subclasses__",
    "__globals__",
    "__import__",
    "__builtins__",
    "get",
    "pop",
    "sqrt",
    "format",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "*",
    "**",
    "+",
    "-",
    "<<",
    "%",
    "'a'",
    "'%s'",
    "f'",
    "1",
    "10",
    "9" * 20,
    "0x1",
    "for",
    "in",
    "if",
    "else",
    "not",
    "and",
    "=",
    ":=",
    "import",
    "os",
    "yield",
    " ",
    "\n",
    "#",
    "\\",
    "'",
    '"',
    "\uff45",
    "\u1d62",
    "_",
    "pow",
    "factorial",
    "max",
    "range",
    "eval",
)
_GARBAGE = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(_TOKENS), max_size=40).map("".join),
    st.lists(st.sampled_from(_TOKENS), max_size=40).map(" ".join),
)
_HOSTILE_PARAMS = st.fixed_dictionaries(
    {"x": st.one_of(st.integers(), st.text(max_size=50), st.lists(st.integers(), max_size=5))}
)
_JSON_SCALARS = (int, float, bool, str, type(None))


def _json_only(value: object) -> bool:
    if type(value) in _JSON_SCALARS:
        return True
    if type(value) is list:
        return all(_json_only(v) for v in value)
    if type(value) is dict:
        return all(type(k) is str and _json_only(v) for k, v in value.items())
    return False


@given(st.sampled_from(["lambda", "expression", "constant"]), _GARBAGE, _HOSTILE_PARAMS)
def test_garbage_is_rejected_or_bounded(typ: str, code: str, params: dict) -> None:
    try:
        compiled = compile_substrate(typ, code)
    except SandboxError:
        return
    try:
        result = compiled.invoke(params)
    except InvocationError:
        return
    assert _json_only(result)


# -- the acceptance rule, restated independently -----------------------------------------------

_ATTRS = ("get", "sqrt", "pi", "__class__", "format", "pop", "__dict__", "real", "keys", "e")
_BASES = ("kw", "math", "x", "(1)", "'s'", "abs", "kw.get", "__builtins__")
_CALLEES = ("abs", "max", "sqrt", "getattr", "eval", "kw.get", "math.sqrt", "x", "type")


def _hostile(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(st.sampled_from(_BASES), st.sampled_from(_ATTRS)).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(children, st.sampled_from(_ATTRS)).map(lambda t: f"({t[0]}).{t[1]}"),
        st.tuples(st.sampled_from(_CALLEES), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(children, children).map(lambda t: f"({t[0]} + {t[1]})"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
    )


_HOSTILE = st.recursive(
    st.sampled_from(("x", "kw", "1", "'a'", "math", "_y", "e")), _hostile, max_leaves=6
)


def _should_accept(tree: ast.Lambda) -> bool:
    """A second, independent statement of the attribute/name/call whitelist."""
    for node in ast.walk(tree.body):
        if isinstance(node, ast.Name) and node.id.startswith("_"):
            return False
        if isinstance(node, ast.Attribute):
            base = node.value
            if not isinstance(base, ast.Name):
                return False
            if base.id == "kw" and node.attr == "get":
                continue
            if base.id == "math" and node.attr in ("sqrt", "pi", "e"):
                continue
            return False
    return True


@given(_HOSTILE)
def test_attribute_and_name_whitelist(body: str) -> None:
    code = f"lambda x, **kw: {body}"
    try:
        compiled = compile_substrate("lambda", code)
    except SandboxError:
        accepted = False
    else:
        accepted = True
        try:
            result = compiled.invoke({"x": 1})
        except InvocationError:
            pass
        else:
            assert _json_only(result)
    tree = ast.parse(code, mode="eval").body
    assert isinstance(tree, ast.Lambda)
    if accepted:
        assert _should_accept(tree), code
