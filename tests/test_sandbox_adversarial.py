"""Escape and denial-of-service attempts against the sandbox.

Every case must end in one of two ways: rejected at creation (``SandboxError``) or a bounded
failure at invocation (``InvocationError``). Nothing may run, hang, crash or leak. Each test
has a watchdog (pytest-timeout), and ``test_whole_corpus_under_cpu_and_memory_caps`` replays
the corpus in a child process under hard CPU-time and address-space limits, so that a guard
that fails open inside a long C call (which a signal cannot interrupt) still fails the suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bfx.errors import InvocationError, SandboxError, ValidationError
from bfx.sandbox import Limits, compile_substrate, validate_parameters

pytestmark = pytest.mark.timeout(30)

L, E, C = "lambda", "expression", "constant"
REJECT, FAIL = "reject", "fail"

BIG = 10**9
HUGE = 10**100

# (type, code, parameters, outcome)
CASES: list[tuple[str, str, dict | None, str]] = [
    # -- attribute walking to the object graph
    (E, "().__class__.__bases__[0].__subclasses__()", None, REJECT),
    (E, "''.__class__.__mro__[1].__subclasses__()", None, REJECT),
    (E, "(1).__class__", None, REJECT),
    (E, "x.__class__", {"x": 1}, REJECT),
    (E, "x.real", {"x": 1}, REJECT),
    (E, "x.conjugate()", {"x": 1}, REJECT),
    (E, "'a'.join(['b', 'c'])", None, REJECT),
    (E, "'{0.__class__}'.format(x)", {"x": 1}, REJECT),
    (E, "'{0.__init__.__globals__}'.format(x)", {"x": 1}, REJECT),
    (E, "'%s'.__mod__(1)", None, REJECT),
    (E, "type.__subclasses__(type)", None, REJECT),
    (E, "math.__loader__", None, REJECT),
    (E, "math.__dict__['sqrt']", None, REJECT),
    (E, "math.__spec__", None, REJECT),
    (E, "math.sys", None, REJECT),
    (E, "math.sqrt.__self__", None, REJECT),
    (E, "math.sqrt.__call__(4)", None, REJECT),
    (E, "math.inf.__class__", None, REJECT),
    (E, "math", None, REJECT),
    (E, "[math][0].sqrt(4)", None, REJECT),
    (E, "abs.__self__", None, REJECT),
    (E, "max.__module__", None, REJECT),
    (E, "(lambda: 0).__code__", None, REJECT),
    (E, "(x for x in [1]).gi_frame", None, REJECT),
    (E, "(x for x in [1])", None, REJECT),
    (E, "[x for x in [1]]", None, REJECT),
    (E, "{x: 1 for x in [1]}", None, REJECT),
    (E, "{x for x in [1]}", None, REJECT),
    (E, "{1, 2}", None, REJECT),
    # -- builtins and their names
    (E, "getattr(x, 'real')", {"x": 1}, REJECT),
    (E, "__import__('os')", None, REJECT),
    (E, "__builtins__", None, REJECT),
    (E, "__builtins__['eval']('1')", None, REJECT),
    (E, "eval('1 + 1')", None, REJECT),
    (E, "exec('x = 1')", None, REJECT),
    (E, "open('/etc/passwd')", None, REJECT),
    (E, "compile('1', 'f', 'eval')", None, REJECT),
    (E, "globals()", None, REJECT),
    (E, "locals()", None, REJECT),
    (E, "vars()", None, REJECT),
    (E, "dir()", None, REJECT),
    (E, "type(x)", {"x": 1}, REJECT),
    (E, "object()", None, REJECT),
    (E, "print(1)", None, REJECT),
    (E, "breakpoint()", None, REJECT),
    (E, "__debug__", None, REJECT),
    (E, "_", None, REJECT),
    (E, "_x + 1", {"_x": 1}, REJECT),
    (L, "lambda: print", None, REJECT),
    (L, "lambda: eval", None, REJECT),
    (L, "lambda x: y", {"x": 1}, REJECT),
    (L, "lambda _=1: _", None, REJECT),
    # -- the kw parameter: read only, .get only
    (L, "lambda **kw: kw.__class__", None, REJECT),
    (L, "lambda **kw: kw.get.__self__", None, REJECT),
    (L, "lambda **kw: kw.pop('x')", {"x": 1}, REJECT),
    (L, "lambda **kw: kw.update({'x': 1})", None, REJECT),
    (L, "lambda **kw: kw.setdefault('x', 1)", None, REJECT),
    (L, "lambda **kw: kw.clear()", None, REJECT),
    (L, "lambda **kw: kw.keys()", None, REJECT),
    (L, "lambda **kw: kw.items()", None, REJECT),
    (L, "lambda **kw: kw.get('x', kw).__class__", None, REJECT),
    (L, "lambda **kw: kw.get(*['x'])", None, REJECT),
    (L, "lambda **kw: kw.get('x', default=1)", None, REJECT),
    (L, "lambda **kw: kw.get('a', 1, 2)", None, REJECT),
    (L, "lambda kw: kw.get('x')", {"kw": {"x": 1}}, REJECT),
    (E, "kw.get('x')", {"kw": {}}, REJECT),
    # -- lambdas and signatures
    (L, "lambda x=__import__('os'): x", None, REJECT),
    (L, "lambda x=[1]: x", None, REJECT),
    (L, "lambda x=(1).__class__: x", None, REJECT),
    (L, "lambda x=abs: x", None, REJECT),
    (L, "lambda x=1 + 1: x", None, REJECT),
    (L, "lambda *args: args", None, REJECT),
    (L, "lambda x, /: x", None, REJECT),
    (L, "lambda: (lambda: 1)()", None, REJECT),
    (L, "lambda: (yield)", None, REJECT),
    (L, "lambda abs: abs(1)", None, REJECT),
    (L, "lambda math: math.sqrt(4)", None, REJECT),
    (L, "x + 1", None, REJECT),
    (E, "lambda x: x", None, REJECT),
    (E, "await x", {"x": 1}, REJECT),
    # -- walrus, starred tricks, f-strings, statements
    (E, "(y := 1)", None, REJECT),
    (E, "x if (y := 2) else 3", {"x": 1}, REJECT),
    (E, "max(*x)", {"x": [1, 2]}, REJECT),
    (E, "pow(*[2, 3])", None, REJECT),
    (E, "max(**x)", {"x": {}}, REJECT),
    (E, "[*x]", {"x": [1]}, REJECT),
    (E, "{**x}", {"x": {}}, REJECT),
    (E, "f'{x}'", {"x": 1}, REJECT),
    (E, "f'{x!r:>{10**9}}'", {"x": 1}, REJECT),
    (E, "import os", None, REJECT),
    (E, "1; import os", None, REJECT),
    (E, "1 # comment\nimport os", None, REJECT),
    (E, "x = 1", None, REJECT),
    (E, "b'bytes'", None, REJECT),
    (E, "1j", None, REJECT),
    (E, "...", None, REJECT),
    (E, "x @ y", {"x": 1, "y": 1}, REJECT),
    # -- functions: only called, only whitelisted keywords
    (E, "abs", None, REJECT),
    (E, "math.sqrt", None, REJECT),
    (E, "max(1, abs)", None, REJECT),
    (E, "max([1], key=abs)", None, REJECT),
    (E, "[abs][0](1)", None, REJECT),
    (E, "abs(x=1)", None, REJECT),
    (E, "round(1.5, digits=1)", None, REJECT),
    (E, "math.sqrt(x=4)", None, REJECT),
    (E, "sorted([2, 1])", None, REJECT),
    (E, "str(1)", None, REJECT),
    (E, "max(1, 2)(3)", None, REJECT),
    # -- Unicode: NFKC look-alikes of names, invisible characters
    (E, "\uff45\uff56\uff41\uff4c('1')", None, REJECT),  # fullwidth "eval"
    (E, "().\uff3f\uff3fclass\uff3f\uff3f", None, REJECT),  # fullwidth underscores
    (E, "()._\uff3fclass_\uff3f", None, REJECT),
    (E, "\u1d62mport", None, REJECT),  # modifier letter small i
    (E, "\U0001d465 + 1", {"x": 1}, REJECT),  # mathematical italic x
    (L, "lambda \ufb01: \ufb01", None, REJECT),  # "fi" ligature
    (E, "x\u202e + 1", {"x": 1}, REJECT),  # right-to-left override
    (E, "x\u00a0+ 1", {"x": 1}, REJECT),  # no-break space
    (E, "ma\u0074h.s\uff51rt(4)", None, REJECT),  # fullwidth q in sqrt
    # -- size and nesting of the code itself
    (E, "(" * 500 + "1" + ")" * 500, None, REJECT),
    (E, "[" * 300 + "]" * 300, None, REJECT),
    (E, "-" * 5000 + "1", None, REJECT),
    (E, "not " * 2000 + "x", {"x": 1}, REJECT),
    (E, "1+" * 4000 + "1", None, REJECT),
    (E, "x" + "[0]" * 2000, {"x": 1}, REJECT),
    (E, "x+" * 6000 + "x", {"x": 1}, REJECT),
    (E, "[" + "1," * 3000 + "]", None, REJECT),
    (E, "0x" + "f" * 2000, None, REJECT),
    (E, "9" * 5000, None, REJECT),
    (E, "'" + "a" * 10_001 + "'", None, REJECT),
    (E, "1\x00", None, REJECT),
    (E, "", None, REJECT),
    # -- code the parser accepts but CPython's compiler refuses (duplicate names)
    (L, "lambda x, x: x", {"x": 1}, REJECT),
    (L, "lambda x, *, x: 1", {"x": 1}, REJECT),
    (L, "lambda x, **x: 1", {"x": 1}, REJECT),
    (E, "round(x, ndigits=1, ndigits=2)", {"x": 1}, REJECT),
    (E, "max(x, y, default=1, default=2)", {"x": 1, "y": 2}, REJECT),
    # -- Trojan Source: invisible control and format characters, even in strings/comments
    (L, "lambda x: x  # \u202e } \u2066 if x else 0", {"x": 1}, REJECT),
    (E, "'admin\u202e \u2066' == x", {"x": "admin"}, REJECT),
    (E, "x\u200b + 1", {"x": 1}, REJECT),
    (E, "'a\u200db' + x", {"x": "a"}, REJECT),
    (E, "\ufeffx + 1", {"x": 1}, REJECT),
    (E, "x + 1 # \u2028 + 2", {"x": 1}, REJECT),
    (E, "x\x0c+ 1", {"x": 1}, REJECT),
    (E, "'\x1b[2J' + x", {"x": "a"}, REJECT),
    # -- lone surrogates: not valid Unicode, no JSON answer can hold one
    (L, "lambda: '\\ud800'", None, REJECT),
    (E, "x + '\\udfff'", {"x": "a"}, REJECT),
    (E, "{'\\ud800': 1}", None, REJECT),
    (E, "['\\udc00']", None, REJECT),
    (E, "'\ud800'", None, REJECT),
    # -- constants are number literals only
    (C, "'42'", None, REJECT),
    (C, "True", None, REJECT),
    (C, "None", None, REJECT),
    (C, "1 + 1", None, REJECT),
    (C, "--5", None, REJECT),
    (C, "1e309", None, REJECT),
    (C, "-1e999", None, REJECT),
    (C, "float('nan')", None, REJECT),
    (C, "x", None, REJECT),
    (C, "__import__('os')", None, REJECT),
    (C, "0x" + "f" * 1100, None, REJECT),
    # -- arithmetic growth
    (E, "x ** y", {"x": BIG, "y": BIG}, FAIL),
    (E, "2 ** 10 ** 10", None, FAIL),
    (E, "10 ** 100000", None, FAIL),
    (E, "2 ** 4096", None, FAIL),
    (E, "(-3) ** x", {"x": 10**6}, FAIL),
    (E, "x << y", {"x": 1, "y": BIG}, FAIL),
    (E, "1 << 100000", None, FAIL),
    (E, "x << 5000", {"x": 1}, FAIL),
    (E, "pow(x, y)", {"x": 7, "y": BIG}, FAIL),
    (E, "pow(base=7, exp=x)", {"x": BIG}, FAIL),
    (E, "pow(x, y, m)", {"x": 3, "y": 2**4000, "m": 2**4000 + 1}, FAIL),
    (E, "x * x * x * x * x * x * x * x", {"x": 2**4000}, FAIL),
    (E, "(x * x) * (x * x)", {"x": 2**3000}, FAIL),
    (E, "x * y", {"x": 2**4000, "y": 2**4000}, FAIL),
    (E, "-x - x", {"x": 2**4096 - 1}, FAIL),
    (E, "x + x", {"x": 2**4096 - 1}, FAIL),
    (E, "x * 2 ** 4000", {"x": 2**200}, FAIL),
    (L, "lambda **kw: kw.get('x', 0) * kw.get('y', 0)", {"x": 2**4000, "y": 2**4000}, FAIL),
    (L, "lambda **kw: kw['x'] ** kw['y']", {"x": 10, "y": HUGE}, FAIL),
    (L, "lambda x, y=10**1000: x ** y", {"x": 3}, REJECT),
    (L, "lambda x, y=0x" + "f" * 1000 + ": x ** y", {"x": 3}, FAIL),
    # -- sequence materialisation
    (E, "'a' * x", {"x": BIG}, FAIL),
    (E, "x * 'a'", {"x": BIG}, FAIL),
    (E, "'a' * 10 ** 9", None, FAIL),
    (E, "[1] * x", {"x": BIG}, FAIL),
    (E, "(1,) * x", {"x": BIG}, FAIL),
    (E, "[[0] * 1000] * 1000", None, FAIL),
    (E, "[[[0] * 100] * 100] * 100", None, FAIL),
    (E, "'a' * 9000 + 'b' * 9000", None, FAIL),
    (E, "[0] * 6000 + [1] * 6000", None, FAIL),
    (E, "x * 3", {"x": [1] * 5000}, FAIL),
    (E, "[x, x, x]", {"x": list(range(5000))}, FAIL),
    (E, "{'a': x, 'b': x}", {"x": list(range(6000))}, FAIL),
    (E, "{'a': x} | {'b': x}", {"x": list(range(6000))}, FAIL),
    (E, "x + x", {"x": "a" * 9000}, FAIL),
    (E, "math.prod([x] * 100)", {"x": [1] * 200}, FAIL),
    (E, "sum([[1]] * 100, [])", None, FAIL),
    (E, "'%999999999d' % 1", None, FAIL),
    (E, "'%s' % x", {"x": 1}, FAIL),
    (E, "s % (1,)", {"s": "%.999999999f"}, FAIL),
    # -- expensive functions
    (E, "math.factorial(x)", {"x": 10**6}, FAIL),
    (E, "factorial(x)", {"x": HUGE}, FAIL),
    (E, "factorial(5000)", None, FAIL),
    (E, "math.comb(x, x // 2)", {"x": 10**6}, FAIL),
    (E, "comb(x, 3000)", {"x": HUGE}, FAIL),
    (E, "math.perm(x)", {"x": 10**5}, FAIL),
    (E, "perm(x, 100000)", {"x": 10**6}, FAIL),
    (E, "perm(x, 2)", {"x": 2**4000}, FAIL),
    (E, "math.prod([x] * 1000)", {"x": 2**64}, FAIL),
    (E, "lcm(2 ** 4000 - 1, 2 ** 4000 + 1)", None, FAIL),
    (E, "int(s)", {"s": "9" * 5000}, FAIL),
    (E, "int(s, 16)", {"s": "f" * 9000}, FAIL),
    (E, "math.exp(1000)", None, FAIL),
    (E, "math.pow(10, 400)", None, FAIL),
    (E, "ldexp(1.0, 10 ** 6)", None, FAIL),
    (E, "float(x)", {"x": 2**4000}, FAIL),
    (E, "math.isqrt(-1)", None, FAIL),
    (E, "factorial(-1)", None, FAIL),
    (E, "sum(x, 1.5) * 'a'", {"x": []}, FAIL),
    # -- results that cannot be returned
    (E, "float('1e400')", None, FAIL),
    (E, "1e308 * 10", None, FAIL),
    (E, "nan", None, FAIL),
    (E, "math.inf", None, FAIL),
    (E, "math.inf - math.inf", None, FAIL),
    (E, "[1.0, inf]", None, FAIL),
    (E, "x ** 0.5", {"x": -4}, FAIL),
    (E, "{1: 2}", None, FAIL),
    (E, "{'a': {(1, 2): 3}}", None, FAIL),
    (E, "2 ** 4095 * 2", None, FAIL),
    (E, "-(2 ** 4095) * 2 - 1", None, FAIL),
    # -- run-time errors and bad indexing
    (E, "x[10 ** 100]", {"x": [1]}, FAIL),
    (E, "x[y]", {"x": [1], "y": "a"}, FAIL),
    (L, "lambda **kw: kw['missing']", {}, FAIL),
    (E, "1 / 0", None, FAIL),
    (E, "1 % 0", None, FAIL),
    (E, "x + 1", {}, FAIL),
    (E, "x >> -1", {"x": 1}, FAIL),
    (E, "1 << -1", None, FAIL),
    (E, "abs('a')", None, FAIL),
    (E, "max([])", None, FAIL),
    # -- hostile parameters
    (E, "x", {"x": 10**5000}, FAIL),
    (E, "x + 1", {"x": -(10**2000)}, FAIL),
    (E, "x", {"x": {"y": 2**5000}}, FAIL),
    (E, "x", {"x": "a" * 20_000}, FAIL),
    (E, "x", {"x": list(range(20_000))}, FAIL),
    (E, "x", {"x": [[0] * 1000] * 1000}, FAIL),
    (E, "len(x)", {"x": {str(i): i for i in range(20_000)}}, FAIL),
    (E, "x", {"x": object()}, FAIL),
    (E, "x", {"x": {1, 2}}, FAIL),
    (E, "x", {"x": b"bytes"}, FAIL),
    (E, "x", {"x": 1j}, FAIL),
    (E, "x", {"x": print}, FAIL),
    (E, "x", {"x": {1: 2}}, FAIL),
    (E, "x + 1", {1: 2}, FAIL),
    (L, "lambda **kw: kw", {str(i): i for i in range(20_000)}, FAIL),
    (L, "lambda **kw: len(kw)", {str(i): i for i in range(20_000)}, FAIL),
    (E, "x", {"x": "\ud800"}, FAIL),
    (E, "x + 'a'", {"x": "a\udfff"}, FAIL),
    (E, "x", {"x": ["a", {"b": "\udc00"}]}, FAIL),
    (L, "lambda **kw: kw", {"\ud800": 1}, FAIL),
]


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _cyclic() -> list:
    value: list = []
    value.append(value)
    return value


CASES += [
    (E, "x", {"x": _nested(100)}, FAIL),
    (E, "len(x)", {"x": _cyclic()}, FAIL),
]


def _ids() -> list[str]:
    return [f"{i:03d}-{t}-{code[:30]!r}" for i, (t, code, _, _) in enumerate(CASES)]


def run_case(typ: str, code: str, params: dict | None, outcome: str) -> None:
    """Assert one case's outcome (also used by the child process)."""
    if outcome == REJECT:
        with pytest.raises(SandboxError) as rejected:
            compile_substrate(typ, code)
        assert rejected.value.code == "sandbox_rejected"
        assert rejected.value.message
        assert isinstance(rejected.value.details.get("reason"), str)
        return
    compiled = compile_substrate(typ, code)
    with pytest.raises(InvocationError) as failed:
        compiled.invoke(params)
    exc = failed.value
    assert type(exc) is InvocationError
    assert exc.code == "invocation_error"
    assert exc.message
    assert len(exc.message) <= 400
    assert "Traceback" not in exc.message
    assert isinstance(exc.details.get("reason"), str)
    # The batch path fails the same way.
    out = compiled.invoke_many([params], return_exceptions=True)
    assert isinstance(out[0], InvocationError)


def test_corpus_is_large() -> None:
    assert len(CASES) >= 100
    assert sum(1 for c in CASES if c[3] == REJECT) >= 50
    assert sum(1 for c in CASES if c[3] == FAIL) >= 50


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("typ", "code", "params", "outcome"), CASES, ids=_ids())
def test_adversarial(typ: str, code: str, params: dict | None, outcome: str) -> None:
    run_case(typ, code, params, outcome)


@pytest.mark.slow
def test_whole_corpus_under_cpu_and_memory_caps(tmp_path: Path) -> None:
    """Replay every case in a child limited to 60 s of CPU and 2 GiB of address space."""
    script = tmp_path / "replay.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import importlib.util, resource, sys
            resource.setrlimit(resource.RLIMIT_CPU, (60, 60))
            resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
            spec = importlib.util.spec_from_file_location("adv", {str(Path(__file__))!r})
            adv = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(adv)
            for case in adv.CASES:
                adv.run_case(*case)
            print("replayed", len(adv.CASES))
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"replayed {len(CASES)}" in proc.stdout


# -- targeted checks -------------------------------------------------------------------------


def test_unknown_expression_type_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as info:
        compile_substrate("python", "1")
    assert type(info.value) is ValidationError
    assert info.value.code == "validation_error"
    assert info.value.details["field"] == "expression_type"


@pytest.mark.parametrize("code", [None, b"1", 1, ["x"]])
def test_code_must_be_a_string(code: object) -> None:
    with pytest.raises(SandboxError):
        compile_substrate(E, code)  # type: ignore[arg-type]


def test_rejection_details_locate_the_node() -> None:
    with pytest.raises(SandboxError) as info:
        compile_substrate(E, "(x +\n  y.__class__)")
    details = info.value.details
    assert details["reason"] == "private_name"
    assert details["node"] == "Attribute"
    assert details["line"] == 2
    assert details["col"] == 3


def test_nfkc_rejection_reason() -> None:
    with pytest.raises(SandboxError) as info:
        compile_substrate(E, "\uff45\uff56\uff41\uff4c('1')")
    assert info.value.details["reason"] == "non_ascii_identifier"


def test_time_budget_stops_a_slow_but_bounded_expression() -> None:
    # Each modular pow is allowed (cost just under the bound) but dozens exceed the budget.
    term = "pow(b, x, m)"
    code = " + ".join([term] * 60)
    params = {"b": 3, "x": 2**1000 - 1, "m": 2**2000 + 1}
    compiled = compile_substrate(E, code, Limits(time_budget_ms=20))
    started = time.process_time()
    with pytest.raises(InvocationError) as info:
        compiled.invoke(params)
    assert info.value.details["reason"] == "timeout"
    assert time.process_time() - started < 5  # a watchdog, not a speed assertion


def test_round_with_huge_negative_digits_is_defused() -> None:
    # round(n, -k) would compute 10 ** k; the guard answers 0, as Python would.
    assert compile_substrate(E, "round(x, -10 ** 9)").invoke({"x": 12345}) == 0
    assert compile_substrate(E, "round(x, -3)").invoke({"x": 12345}) == 12000


def test_namespace_has_no_builtins() -> None:
    compiled = compile_substrate(E, "x + 1").compile()
    fn = compiled._fast  # the compiled function
    assert fn.__globals__["__builtins__"] == {}
    assert "math" not in fn.__globals__
    assert all(name.startswith("_") for name in fn.__globals__)


def test_parameters_cannot_be_mutated() -> None:
    params = {"x": [1, 2]}
    compile_substrate(L, "lambda **kw: kw['x'] + [3]").invoke(params)
    assert params == {"x": [1, 2]}
    result = compile_substrate(L, "lambda **kw: kw").invoke(params)
    assert result == params
    assert result is not params  # results are fresh copies


def test_validate_parameters_errors_name_the_path() -> None:
    with pytest.raises(InvocationError) as info:
        validate_parameters({"a": {"b": [1, 2**5000]}}, Limits())
    assert info.value.details["path"] == "a.b[1]"
    assert info.value.details["reason"] == "int_too_large"
    with pytest.raises(InvocationError, match="object"):
        validate_parameters([1, 2], Limits())
    with pytest.raises(InvocationError, match="larger than"):
        validate_parameters({"s": "a" * 5000, "t": "b" * 5000}, Limits(max_param_bytes=8000))
