"""Canonical form: one formula, one text (and so one identity); different formulas differ."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bfx.errors import SandboxError
from bfx.sandbox import Limits, canonicalize, compile_substrate

pytestmark = pytest.mark.timeout(120)

SAME: list[tuple[str, list[str]]] = [
    (
        "lambda",
        [
            "lambda **kw: kw.get('x', 0) * kw.get('y', 0)",
            "lambda **kw:kw.get('x',0)*kw.get('y',0)",
            'lambda **kw: kw.get("x", 0) * kw.get("y", 0)',
            "lambda **kw: (kw.get('x', 0)) * (kw.get('y', 0))  # product",
            "lambda **kw: (kw.get('x', 0) *\n    kw.get('y', 0))",
            "(lambda **kw: kw.get('x', 0) * kw.get('y', 0))",
            "lambda **kw: kw.get(u'x', 0) * kw.get('y', 0)",
        ],
    ),
    ("lambda", ["lambda x, y=2: x * y", "lambda x,y=2:x*y", "lambda x, y = 0x2 : (x) * (y)"]),
    (
        "expression",
        [
            "x * y + 1",
            "x*y+1",
            "(x * y) + 1",
            "((x*y)+(1))",
            "x * y + 0x1",
            "x * y + 1  # comment",
            "\tx * y +\\\n 1",
        ],
    ),
    ("expression", ["x + 1000", "x + 1_000", "x + 0x3E8", "x + 0o1750", "x + 0b1111101000"]),
    ("expression", ["x * 1000.0", "x * 1e3", "x * 1E3", "x * 1_000.0", "x * 10e2"]),
    ("expression", ["'a' + s", '"a" + s', "'''a''' + s", "'a' \\\n + s"]),
    ("expression", ["a or b and c", "a or (b and c)"]),
    ("expression", ["-x ** 2", "-(x ** 2)", "- x**2"]),
    ("expression", ["x ** y ** z", "x ** (y ** z)"]),
    ("expression", ["f(x)" if False else "max(x, 1)", "max( x , 1 )", "max(x, 1,)"]),
    ("expression", ["[1, 2][0]", "[1,2,][0]", "[ 1 , 2 ] [ 0 ]"]),
    ("expression", ["(1, 2)", "1, 2", "(1,2,)"]),
    ("constant", ["42", "0x2A", "+42", "4_2", "0b101010", "(42)", "42  # answer", "0o52"]),
    ("constant", ["1000.0", "1e3", "1_000.0", "1E3", "10e2", "+1e3"]),
    ("constant", ["-7", "- 7", "-0x7", "(-7)"]),
]

DIFFERENT: list[tuple[str, str]] = [
    ("constant", "42"),
    ("constant", "42.0"),
    ("expression", "x * y + 1"),
    ("expression", "x * y + 2"),
    ("expression", "y * x + 1"),
    ("expression", "(x + y) * 2"),
    ("expression", "x + y * 2"),
    ("expression", "x ** y ** z"),
    ("expression", "(x ** y) ** z"),
    ("expression", "x - y - z"),
    ("expression", "x - (y - z)"),
    ("expression", "sqrt(x)"),
    ("expression", "math.sqrt(x)"),
    ("expression", "'a'"),
    ("expression", "'b'"),
    ("lambda", "lambda x: x"),
    ("lambda", "lambda y: y"),
    ("lambda", "lambda x=1: x"),
    ("lambda", "lambda **kw: kw.get('x', 0)"),
    ("lambda", "lambda **p: p.get('x', 0)"),
]


@pytest.mark.parametrize(("typ", "variants"), SAME, ids=[v[0] for _, v in SAME])
def test_same_formula_same_canonical(typ: str, variants: list[str]) -> None:
    forms = {canonicalize(typ, code) for code in variants}
    assert len(forms) == 1, forms


def test_different_formulas_differ() -> None:
    forms = [(typ, canonicalize(typ, code)) for typ, code in DIFFERENT]
    assert len(set(forms)) == len(forms)


@pytest.mark.parametrize(
    ("code", "canonical"),
    [
        ("1e3", "1000.0"),
        ("0x2A", "42"),
        ("+42", "42"),
        ("1_000", "1000"),
        ("-7", "-7"),
        ("42", "42"),
        ("42.0", "42.0"),
        ("-0.0", "-0.0"),
        ("0.1", "0.1"),
        ("1e-7", "1e-07"),
        ("1e22", "1e+22"),
        ("-1.5e300", "-1.5e+300"),
        ("123456789012345678901234567890", "123456789012345678901234567890"),
    ],
)
def test_constant_canonical_is_the_repr_of_the_value(code: str, canonical: str) -> None:
    assert canonicalize("constant", code) == canonical


@pytest.mark.parametrize(
    ("typ", "code", "canonical"),
    [
        (
            "lambda",
            "lambda **kw:kw.get('x',0)*kw.get('y',0)",
            "lambda **kw: kw.get('x', 0) * kw.get('y', 0)",
        ),
        ("lambda", "lambda x,*,y=-1,**kw:x", "lambda x, *, y=-1, **kw: x"),
        ("lambda", "lambda:1", "lambda: 1"),
        ("expression", "x*y+1", "x * y + 1"),
        ("expression", "x+1e999", "x + 1e309"),
        ("expression", "(-1)**x", "(-1) ** x"),
        ("expression", "x**-1", "x ** (-1)"),
        ("expression", "not(a)or(b)", "not a or b"),
        ("expression", "a if(b)else(c if d else e)", "a if b else c if d else e"),
        ("expression", "(a if b else c) if d else e", "(a if b else c) if d else e"),
        ("expression", "x[1:2,::3]", "x[1:2, ::3]"),
        ("expression", "x[(1,)]", "x[1,]"),
        ("expression", "x[()]", "x[()]"),
        ("expression", "{'a':(1,),'b':[]}", "{'a': (1,), 'b': []}"),
        ("expression", "a<b<=c!=d", "a < b <= c != d"),
        ("expression", "x not in y and x is not None", "x not in y and x is not None"),
        ("expression", "'it\\'s'", '"it\'s"'),
        ("expression", "'caf\\u00e9'", "'café'"),
        ("expression", "round(x,ndigits=2)", "round(x, ndigits=2)"),
    ],
)
def test_canonical_examples(typ: str, code: str, canonical: str) -> None:
    assert canonicalize(typ, code) == canonical
    assert canonicalize(typ, canonical) == canonical  # idempotent


def test_canonicalize_validates() -> None:
    with pytest.raises(SandboxError):
        canonicalize("expression", "x.__class__")
    with pytest.raises(SandboxError):
        canonicalize("constant", "x")


def test_canonical_longer_than_the_code_limit_is_rejected() -> None:
    # Stored canonical code must itself pass the limits when it is recompiled.
    code = "+".join(["x"] * 300)  # 599 characters; the canonical form has 1497
    limits = Limits(max_code_length=1000, max_ast_depth=400)
    with pytest.raises(SandboxError) as info:
        canonicalize("expression", code, limits)
    assert info.value.details["reason"] == "code_too_long"


# -- agreement with ast.unparse ------------------------------------------------------------------

_names = st.sampled_from(["x", "y", "kw", "pi"])
_consts = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False).map(repr).map(lambda s: s.replace("inf", "1e999")),
    st.text(max_size=8).map(repr),
    st.sampled_from(["True", "False", "None", "0x1F", "1_0"]),
)
_ops = st.sampled_from(
    [
        "+",
        "-",
        "*",
        "/",
        "//",
        "%",
        "**",
        "<<",
        ">>",
        "&",
        "|",
        "^",
        "and",
        "or",
        "<",
        "==",
        "is not",
        "not in",
        "if x else",
    ]
)


def _grow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(children, _ops, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, _ops, children).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(st.sampled_from(["-", "+", "~", "not "]), children).map("".join),
        st.lists(children, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.lists(children, max_size=3).map(lambda xs: "(" + ", ".join(xs) + ",)"),
        st.tuples(children, children).map(lambda t: f"{{{t[0]}: {t[1]}}}"),
        st.tuples(children, children).map(lambda t: f"max({t[0]}, {t[1]})"),
        st.tuples(children, children).map(
            lambda t: f"math.atan2({t[0]}, y={t[1]})" if False else f"math.atan2({t[0]}, {t[1]})"
        ),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(children, children).map(lambda t: f"{t[0]}[{t[1]}:{t[1]}:, 1]"),
        st.tuples(children, children).map(lambda t: f"kw.get({t[0]}, {t[1]})"),
        st.tuples(children, children).map(lambda t: f"round({t[0]}, ndigits={t[1]})"),
    )


_EXPR = st.recursive(st.one_of(_names, _consts), _grow, max_leaves=12)


def _unparse(code: str) -> str | None:
    try:
        tree = ast.parse(code, mode="eval")
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant):
            node.kind = None  # the canonical form drops the u'' prefix
    return ast.unparse(tree)


@given(_EXPR)
def test_canonical_equals_ast_unparse(body: str) -> None:
    code = f"lambda x, y=1, **kw: {body}"
    try:
        canonical = canonicalize("lambda", code, Limits(max_ast_depth=200))
    except SandboxError:
        return
    assert canonical == _unparse(code)
    assert canonicalize("lambda", canonical, Limits(max_ast_depth=200)) == canonical


@given(_EXPR)
def test_canonical_is_stable_under_reformatting(body: str) -> None:
    code = f"lambda x, y=1, **kw: {body}"
    try:
        canonical = canonicalize("lambda", code, Limits(max_ast_depth=200))
    except SandboxError:
        return
    # Extra parentheses around the whole body and spacing do not change it.
    spaced = f"lambda  x ,y = 1 , ** kw : ( {body} )   # note"
    assert canonicalize("lambda", spaced, Limits(max_ast_depth=200)) == canonical


# -- the canonical form does not depend on the Python version -------------------------------------

CORPUS = (
    [code for _, variants in SAME for code in variants if not variants[0].isdigit()]
    + [code for _, code in DIFFERENT]
    + [
        "lambda x, *, y=-1, **kw: (x, [y], {'k': kw.get('z', 1e999)})[0] if not x else -x ** 2",
        "a if b else c if d else (e or f and not g)",
        "x[1:2, ::3] + (-1) ** y - ~z << 2 >> 1 & 3 | 4 ^ 5",
        "'it\\'s' + \"q\\\"\" + 'tab\\t' + 'caf\\u00e9' + '\\x00'",
    ]
)

_OTHER_PYTHONS = sorted(
    {
        path
        for path in (
            *(str(p / "bin" / "python3") for p in Path("/root/.pyenv/versions").glob("3.1[2-9]*")),
            shutil.which("python3.12"),
            shutil.which("python3.13"),
        )
        if path and "shims" not in path and Path(path).exists()
    }
)


@pytest.mark.skipif(not _OTHER_PYTHONS, reason="no other CPython installed")
@pytest.mark.parametrize("python", _OTHER_PYTHONS)
def test_canonical_matches_ast_unparse_of_other_pythons(python: str) -> None:
    script = (
        "import ast, json, sys\n"
        "out = []\n"
        "for code in json.load(sys.stdin):\n"
        "    tree = ast.parse(code.lstrip(), mode='eval')\n"
        "    for node in ast.walk(tree):\n"
        "        if isinstance(node, ast.Constant): node.kind = None\n"
        "    out.append(ast.unparse(tree))\n"
        "print(json.dumps(out))\n"
    )
    codes = [c for c in CORPUS if _typ(c) != "constant"]
    try:
        proc = subprocess.run(
            [python, "-c", script],
            input=json.dumps(codes),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        pytest.skip(f"{python} cannot run")
    if proc.returncode != 0:
        pytest.skip(f"{python} failed: {proc.stderr[-200:]}")
    theirs = json.loads(proc.stdout)
    ours = [canonicalize(_typ(c), c) for c in codes]
    assert ours == theirs


def _typ(code: str) -> str:
    stripped = code.lstrip("(")
    if stripped.startswith("lambda"):
        return "lambda"
    return "expression"


def test_recompiled_canonical_invokes_the_same() -> None:
    code = "lambda **kw:kw.get('x',0)*kw.get('y',0)"
    first = compile_substrate("lambda", code)
    second = compile_substrate("lambda", first.canonical)
    params = {"x": 6, "y": 7}
    assert first.invoke(params) == second.invoke(params) == 42
