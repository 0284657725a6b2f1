"""Pipelines (DESIGN.md §9, docs/domain.md "Pipelines"), in process: canonical JSON and
its published vectors, checks at creation, COMPOSITION edges and ``in_use``, evaluation
against plain Python composition, one time budget, batches, the result cache, export
and import. The routes end to end: tests/test_e2e_pipelines.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from bfx import Registry, errors
from bfx._core import format_id, substrate_id
from bfx.domain.pipelines import (
    MAX_STEPS,
    Plan,
    build_plan,
    parse_spec,
    spec_from,
)
from bfx.rows import SubstrateRow
from bfx.sandbox import DEFAULT_LIMITS, Limits, compile_substrate

VECTORS = json.loads((Path(__file__).parent / "pipeline_vectors.json").read_text("utf-8"))


def pipeline(*steps, aggregate=None) -> str:
    doc = {"steps": list(steps)}
    if aggregate is not None:
        doc["aggregate"] = aggregate
    return json.dumps(doc)


def step(sid, as_=None, **parameters):
    out = {"substrate_id": sid}
    if as_ is not None:
        out["as"] = as_
    if parameters:
        out["parameters"] = parameters
    return out


@pytest.fixture
def reg():
    with Registry() as r:
        yield r


# ---- canonical JSON -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["pipelines"], ids=lambda v: v["note"][:40])
def test_published_vectors(vector):
    spec = parse_spec(vector["expression_code"], DEFAULT_LIMITS)
    assert spec.canonical == vector["canonical_code"]
    # Canonical forms are fixed points.
    assert parse_spec(spec.canonical, DEFAULT_LIMITS).canonical == spec.canonical
    data = b"pipeline\0" + spec.canonical.encode()
    assert data.hex() == vector["input_hex"]
    assert format_id(substrate_id("pipeline", spec.canonical)) == vector["id"]
    assert format_id(xxhash.xxh3_64_intdigest(data)) == vector["id"]


def test_a_vector_is_the_id_a_registry_gives(reg):
    double = reg.create("lambda", "lambda x, y=2: x * y").substrate_id
    twenty_one = reg.create("constant", "21").substrate_id
    vector = VECTORS["pipelines"][1]  # other spacing, order, spelling: the same pipeline
    rec = reg.create("pipeline", vector["expression_code"])
    assert rec.substrate_id == vector["id"]
    assert rec.canonical_code == vector["canonical_code"]
    assert rec.expression_code == vector["expression_code"]  # as submitted
    assert reg.invoke(rec.substrate_id).result == 42
    assert {double, twenty_one} == {r.target_id for r in reg.outgoing(rec.substrate_id)[1]}
    with pytest.raises(errors.DuplicateError) as info:
        reg.create("pipeline", VECTORS["pipelines"][0]["expression_code"])
    assert info.value.details["substrate_id"] == vector["id"]


JSON_LEAF = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)  # fmt: skip
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip


@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**64 - 1),
            st.sampled_from([None, "x", "p", "_q1"]),
            st.dictionaries(st.text(max_size=5), JSON_VALUE, max_size=3),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from([None, "last", "sum", "product", "list"]),
    st.randoms(use_true_random=False),
)
def test_canonical_form_ignores_spelling_order_and_spacing(steps, aggregate, rnd):
    steps[0] = (steps[0][0], None, steps[0][2])
    plain = {"steps": [step(format_id(i), a, **p) for i, a, p in steps]}
    if aggregate is not None:
        plain["aggregate"] = aggregate

    def respell(value):
        if isinstance(value, dict):
            items = list(value.items())
            rnd.shuffle(items)
            return {k: respell(v) for k, v in items}
        if isinstance(value, list):
            return [respell(v) for v in value]
        return value

    other = respell(plain)
    for s in other["steps"]:
        s["substrate_id"] = rnd.choice([str.lower, str.upper, lambda t: t[2:]])(s["substrate_id"])
        if "parameters" not in s and rnd.random() < 0.5:
            s["parameters"] = {}
    if aggregate in (None, "last") and rnd.random() < 0.5:
        other["aggregate"] = "last"

    def text(doc, indent=None):  # DEL is ASCII: json.dumps leaves it raw, code may not
        return json.dumps(doc, indent=indent).replace("\x7f", "\\u007f")

    a = parse_spec(text(plain), DEFAULT_LIMITS)
    b = parse_spec(text(other, rnd.choice([None, 1, 4])), DEFAULT_LIMITS)
    assert a.canonical == b.canonical
    assert parse_spec(a.canonical, DEFAULT_LIMITS).canonical == a.canonical  # a fixed point
    # It says what was written, defaults omitted.
    want: dict = {"steps": []}
    for i, name, params in steps:
        want["steps"].append(
            {"substrate_id": format_id(i)}
            | ({"as": name} if name is not None else {})
            | ({"parameters": params} if params else {})
        )
    if aggregate not in (None, "last"):
        want["aggregate"] = aggregate
    assert json.loads(a.canonical) == want


# ---- checks at creation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "field"),
    [
        ("not json", "expression_code"),
        ("[]", "expression_code"),
        ('{"steps": []}', "steps"),
        ('{"steps": "0x1"}', "steps"),
        ('{"steps": [{"substrate_id": "0x1"}], "aggregate": "max"}', "aggregate"),
        ('{"steps": [{"substrate_id": "0x1"}], "extra": 1}', "extra"),
        ('{"steps": [{"substrate_id": "0x1", "bogus": 1}]}', "steps[0].bogus"),
        ('{"steps": [{"substrate_id": "0x1", "as": "x"}]}', "steps[0].as"),
        (
            '{"steps": [{"substrate_id": "0x1"}, {"substrate_id": "0x1", "as": "class"}]}',
            "steps[1].as",
        ),
        (
            '{"steps": [{"substrate_id": "0x1"}, {"substrate_id": "0x1", "as": "1a"}]}',
            "steps[1].as",
        ),
        (
            '{"steps": [{"substrate_id": "0x1"}, {"substrate_id": "0x1", "as": "__x"}]}',
            "steps[1].as",
        ),
        ('{"steps": [{"substrate_id": "0x1"}, {"substrate_id": "0x1", "as": 7}]}', "steps[1].as"),
        ('{"steps": [{"substrate_id": "0x1", "parameters": [1]}]}', "steps[0].parameters"),
        # A lone surrogate escaped is not JSON text msgspec reads (raw: sandbox_rejected).
        ('{"steps": [{"substrate_id": "0x1", "parameters": {"s": "\\ud800"}}]}', "expression_code"),
        ('{"steps": [{"substrate_id": "zz"}]}', "steps[0].substrate_id"),
        ('{"steps": [{"substrate_id": 1}]}', "steps[0].substrate_id"),
        ('{"steps": [{}]}', "steps[0].substrate_id"),
    ],
)
def test_malformed_pipelines_are_422_naming_the_field(reg, code, field):
    with pytest.raises(errors.ValidationError) as info:
        reg.create("pipeline", code)
    assert info.value.status == 422
    assert info.value.details["field"] == field, info.value.details
    assert len(reg) == 0


def test_invisible_characters_only_as_escapes(reg):
    """Trojan Source (docs/sandbox.md): a raw bidi override is refused anywhere in the
    code; written as a JSON escape it is accepted, and stays an escape in the stored
    canonical code."""
    one = reg.create("constant", "1").substrate_id
    raw = json.dumps(
        {"steps": [{"substrate_id": one, "parameters": {"s": "a\u202eb"}}]}, ensure_ascii=False
    )
    with pytest.raises(errors.SandboxError) as info:
        reg.create("pipeline", raw)
    assert info.value.details["reason"] == "forbidden_character"
    escaped = raw.replace("\u202e", "\\u202e")
    rec = reg.create("pipeline", escaped)
    assert "\u202e" not in rec.canonical_code
    assert "\\u202e" in rec.canonical_code
    assert json.loads(rec.canonical_code)["steps"][0]["parameters"]["s"] == "a\u202eb"
    with pytest.raises(errors.SandboxError) as info:
        reg.create("pipeline", raw.replace("\u202e", "\ud800"))
    assert info.value.details["reason"] == "surrogate"


def test_bounds_of_steps_nesting_and_size(reg):
    one = reg.create("constant", "1").substrate_id
    with pytest.raises(errors.LimitExceededError) as info:
        reg.create("pipeline", pipeline(*[one] * (MAX_STEPS + 1)))
    assert info.value.details["limit"] == MAX_STEPS
    assert reg.create("pipeline", pipeline(*[one] * MAX_STEPS)).substrate_id
    # Parameters nested past the sandbox's parameter depth.
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(errors.ValidationError):
        reg.create("pipeline", pipeline(step(one, v=deep)))
    # Code past the sandbox's code length.
    with pytest.raises(errors.SandboxError) as info:
        reg.create("pipeline", pipeline(step(one, s="x" * 9000), step(one, t="y" * 2000)))
    assert info.value.details["reason"] == "code_too_long"


def test_a_missing_step_is_422_naming_its_index_and_id(reg):
    one = reg.create("constant", "1").substrate_id
    with pytest.raises(errors.ValidationError) as info:
        reg.create("pipeline", pipeline(one, step("0xabc", "x")))
    d = info.value.details
    assert (d["step"], d["substrate_id"], d["reason"]) == (1, "0x0000000000000ABC", "missing_step")
    assert d["field"] == "steps[1].substrate_id"
    assert len(reg) == 1


def test_nesting_depth_is_bounded(tmp_path):
    with Registry(data_dir=tmp_path, pipeline_max_depth=3) as reg:
        inner = reg.create("lambda", "lambda **kw: kw.get('v', 0) + 1").substrate_id
        chain = [inner]
        for _ in range(3):
            chain.append(reg.compose([chain[-1]]).substrate_id)
        assert reg.invoke(chain[-1]).result == 1
        with pytest.raises(errors.LimitExceededError) as info:
            reg.compose([chain[-1]])
        assert info.value.details["reason"] == "too_deep"
        assert info.value.details["limit"] == 3
    # A registry with a lower bound refuses to run what nests deeper (422, no crash).
    with Registry(data_dir=tmp_path, pipeline_max_depth=2) as reg:
        assert reg.invoke(chain[2]).result == 1
        with pytest.raises(errors.LimitExceededError):
            reg.invoke(chain[3])


def test_a_pipeline_cannot_nest_itself_through_another(reg):
    """Ids are content hashes, so P naming Q and Q naming P cannot both exist: whichever
    is created first names one that does not exist yet (422 missing_step)."""
    a = reg.create("constant", "2").substrate_id
    q_code = lambda p: pipeline(p, step(a, "x"))  # noqa: E731
    p = reg.compose([a]).substrate_id
    q = reg.create("pipeline", q_code(p)).substrate_id
    # P2 = P's steps plus Q: a new pipeline (new id), whose step Q names P, not P2.
    p2 = reg.compose([a, q]).substrate_id
    assert p2 not in (p, q)
    # A pipeline naming a not-yet-created one that would name it back: refused.
    future_q = format_id(substrate_id("pipeline", parse_spec(q_code(p2), DEFAULT_LIMITS).canonical))
    with pytest.raises(errors.ValidationError) as info:
        reg.compose([a, future_q])
    assert info.value.details["reason"] == "missing_step"


def test_the_planner_refuses_a_cycle_however_it_is_reached():
    """The plan builder's own guard (a cycle cannot be stored, but the planner must not
    recurse forever if a store ever held one): P -> Q -> P."""
    one = compile_substrate("constant", "1")
    specs = {
        0xA: spec_from({"steps": ["0x1", "0xB"]}, DEFAULT_LIMITS),
        0xB: spec_from({"steps": ["0x1", "0xA"]}, DEFAULT_LIMITS),
    }

    def resolve(identity, max_depth, path):
        if identity == 1:
            return one
        return build_plan(identity, specs[identity], DEFAULT_LIMITS, resolve, max_depth=max_depth, path=path)  # fmt: skip

    with pytest.raises(errors.ValidationError) as info:
        resolve(0xA, 8, ())
    assert info.value.details["reason"] == "cycle"
    assert info.value.details["substrate_id"] == format_id(0xA)


# ---- edges and in_use ---------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_reg(request, tmp_path):
    """In memory, then on each durable store (PostgreSQL: a throwaway server)."""
    locator = {
        "memory": lambda: None,
        "sqlite": lambda: str(tmp_path / "d"),
        "postgresql": lambda: request.getfixturevalue("postgres").new_database(),
    }[request.param]()
    with Registry(storage=locator) as r:
        yield r


def test_composition_edges_and_in_use(any_reg):
    reg = any_reg
    a = reg.create("lambda", "lambda **kw: kw['x'] + 1").substrate_id
    b = reg.create("expression", "y * 2").substrate_id
    p = reg.compose([a, step(b, "y"), a], name="twice").substrate_id
    assert reg.get(p).metadata == {"name": "twice"}
    total, edges = reg.outgoing(p, rel_type="COMPOSITION")
    assert total == 2  # one edge per distinct step
    assert {(e.source_id, e.target_id) for e in edges} == {(p, a), (p, b)}
    for target in (a, b):
        with pytest.raises(errors.InUseError) as info:
            reg.delete(target)
        assert info.value.status == 409
        assert info.value.code == "in_use"
        assert info.value.details["pipelines"] == [p]
        assert info.value.details["count"] == 1
    # The pipeline's edge to a step goes only with the pipeline.
    with pytest.raises(errors.InUseError):
        reg.delete_relationship(edges[0].relationship_id)
    # Nested: the inner pipeline is in use by the outer one.
    outer = reg.compose([p, step(b, "y")], aggregate="list").substrate_id
    with pytest.raises(errors.InUseError) as info:
        reg.delete(p)
    assert info.value.details["pipelines"] == [outer]
    with pytest.raises(errors.InUseError) as info:
        reg.delete(b)
    assert sorted(info.value.details["pipelines"]) == sorted([p, outer])
    assert reg.pipelines_using(b) == sorted(int(x, 16) for x in (p, outer))
    # A hand-made COMPOSITION edge from a lambda keeps nothing from being deleted.
    c = reg.create("constant", "3").substrate_id
    reg.relate("COMPOSITION", a, c)
    reg.delete(c)
    # Deleting the users first frees the steps.
    assert reg.delete(outer) == 2
    assert reg.delete(p) == 2
    reg.delete(a)
    reg.delete(b)
    assert len(reg) == 0
    assert reg.stats()["total_relationships"] == 0


def test_in_use_holds_for_a_second_registry_on_the_same_store(store_locator):
    """Two processes' registries on one store (SQLite, PostgreSQL): the check reads the
    arena after the write lock caught it up with the change log."""
    with Registry(storage=store_locator) as one, Registry(storage=store_locator) as two:
        a = one.create("constant", "5").substrate_id
        two.refresh()
        p = one.compose([a]).substrate_id  # two has not refreshed since
        with pytest.raises(errors.InUseError) as info:
            two.delete(a)
        assert info.value.details["pipelines"] == [p]
        two.delete(p)
        one.refresh()
        one.delete(a)
        assert len(one) == 0


def test_a_step_deleted_between_checks_and_write_is_refused(reg):
    """The steps are checked again under the write lock (a delete may race the plan)."""
    a = reg.create("constant", "5").substrate_id
    compiled, meta = reg.substrates.prepare("pipeline", pipeline(a), None)
    reg.delete(a)
    with pytest.raises(errors.ValidationError) as info:
        reg.engine.insert_substrate(
            SubstrateRow(None, "pipeline", compiled.canonical, compiled.canonical, meta, 1),
            compiled.steps,
        )
    assert info.value.details["reason"] == "missing_step"
    assert len(reg) == 0


# ---- evaluation ---------------------------------------------------------------------------

#: Steps with their plain-Python twins (each takes the request's ``x``; ``p`` and ``q``
#: are where a previous result may arrive, ``k`` a fixed parameter).
POOL = [
    (
        "lambda",
        "lambda **kw: kw.get('p', 0) * 3 + kw['x']",
        lambda kw: kw.get("p", 0) * 3 + kw["x"],
    ),
    ("expression", "x - 7", lambda kw: kw["x"] - 7),
    (
        "lambda",
        "lambda **kw: (kw.get('q', 1) ** 2) % 1000003 - kw.get('k', 0)",
        lambda kw: (kw.get("q", 1) ** 2) % 1000003 - kw.get("k", 0),
    ),
    ("constant", "5", lambda kw: 5),
    (
        "lambda",
        "lambda **kw: kw.get('p', 0) + kw.get('q', 0) * kw.get('k', 1)",
        lambda kw: kw.get("p", 0) + kw.get("q", 0) * kw.get("k", 1),
    ),
    ("expression", "x / 4", lambda kw: kw["x"] / 4),
]


def python_pipeline(steps, aggregate):
    """The plain Python composition a pipeline must equal: ``steps`` are (function,
    as, fixed parameters)."""

    def run(kw):
        results, last = [], None
        for fn, name, fixed in steps:
            merged = {**kw, **fixed}
            if name is not None:
                merged[name] = last
            last = fn(merged)
            results.append(last)
        if aggregate in (None, "last"):
            return results[-1]
        if aggregate == "list":
            return results
        total = 0 if aggregate == "sum" else 1
        for r in results:
            if type(r) not in (int, float):  # never list repetition: numbers only
                raise TypeError(f"{aggregate} of {type(r).__name__}")
            total = total + r if aggregate == "sum" else total * r
        return total

    return run


STEP = st.tuples(
    st.integers(0, len(POOL) - 1),
    st.sampled_from([None, "p", "q"]),
    st.dictionaries(st.sampled_from(["k", "x"]), st.integers(-50, 50), max_size=2),
)
SHAPE = st.tuples(st.lists(STEP, min_size=1, max_size=5), st.sampled_from([None, "last", "sum", "product", "list"]))  # fmt: skip


@pytest.fixture(scope="module")
def pool_reg():
    with Registry() as r:
        ids = [r.create(t, c).substrate_id for t, c, _ in POOL]
        yield r, ids


def _create(reg, steps, aggregate):
    try:
        return reg.compose(steps, aggregate).substrate_id
    except errors.DuplicateError as exc:
        return exc.details["substrate_id"]


@given(SHAPE, st.one_of(st.none(), SHAPE), st.integers(-1000, 1000))
def test_pipelines_equal_plain_python_composition(pool_reg, inner_shape, outer_shape, x):
    reg, ids = pool_reg
    inner_steps, inner_agg = inner_shape
    inner_steps = [(i, None if n == 0 else a, f) for n, (i, a, f) in enumerate(inner_steps)]
    sid = _create(reg, [step(ids[i], a, **f) for i, a, f in inner_steps], inner_agg)
    model = python_pipeline([(POOL[i][2], a, f) for i, a, f in inner_steps], inner_agg)
    if outer_shape is not None:
        # Nested: the inner pipeline is one step of an outer one.
        outer_steps, outer_agg = outer_shape
        fns = [(POOL[i][2], a, f) for i, a, f in outer_steps]
        specs = [step(ids[i], a, **f) for i, a, f in outer_steps]
        fns.insert(1, (model, "p", {}))
        specs.insert(1, step(sid, "p"))
        fns[0] = (fns[0][0], None, fns[0][2])
        specs[0].pop("as", None)
        sid = _create(reg, specs, outer_agg)
        model = python_pipeline(fns, outer_agg)
    try:
        want = model({"x": x})
    except TypeError:
        # A nested list-pipeline's result used as a number: Python refuses, so must bfx.
        with pytest.raises(errors.InvocationError) as info:
            reg.invoke(sid, {"x": x})
        assert info.value.details["reason"] in ("not_a_number", "runtime_error")
        return
    got = reg.invoke(sid, {"x": x}).result
    assert got == want
    # The batch path answers the same.
    [batch] = reg.invoke_many([(sid, {"x": x})])
    assert batch.result == want


def test_step_failures_name_the_step_and_keep_their_reason(reg):
    a = reg.create("lambda", "lambda **kw: kw['x'] + 1").substrate_id
    bad = reg.create("expression", "1 // z").substrate_id
    p = reg.compose([a, step(bad, "z")]).substrate_id
    with pytest.raises(errors.InvocationError) as info:
        reg.invoke(p, {"x": -1})
    d = info.value.details
    assert (d["step"], d["substrate_id"], d["path"], d["reason"]) == (1, bad, [1], "runtime_error")
    assert "step 1" in info.value.message
    outer = reg.compose([a, step(p, "w")]).substrate_id
    with pytest.raises(errors.InvocationError) as info:
        reg.invoke(outer, {"x": -1})
    assert info.value.details["path"] == [1, 1]
    # Aggregates need numbers.
    text = reg.create("lambda", "lambda **kw: 'a'").substrate_id
    s = reg.compose([a, text], "sum").substrate_id
    with pytest.raises(errors.InvocationError) as info:
        reg.invoke(s, {"x": 1})
    assert (info.value.details["reason"], info.value.details["step"]) == ("not_a_number", 1)
    # A product past the integer bound is refused, not computed.
    big = reg.create("constant", str(2**4000)).substrate_id
    prod = reg.compose([big, big], "product").substrate_id
    with pytest.raises(errors.InvocationError) as info:
        reg.invoke(prod)
    assert info.value.details["reason"] == "int_too_large"
    # A list of results is bounded in bytes as the steps answer.
    with Registry(limits=Limits(max_param_bytes=1000)) as small:
        text = small.create("lambda", "lambda **kw: 'a' * 400").substrate_id
        listed = small.compose([text] * 3, "list").substrate_id
        with pytest.raises(errors.InvocationError) as info:
            small.invoke(listed)
        assert info.value.details["reason"] == "result_too_large"
        assert (
            small.invoke(small.compose([text] * 2, "list").substrate_id).result == ["a" * 400] * 2
        )
    # Parameters that are not an object.
    with pytest.raises(errors.InvocationError):
        reg.invoke(s, [1, 2])  # type: ignore[arg-type]


#: One modular power: a millisecond or so (the guard's deadline is checked around it).
SLOW = "pow(b, x, m)"
SLOW_PARAMS = {"b": 3, "x": 2**300 - 1, "m": 2**600 + 1}


def fits_its_budget(reg, sid) -> bool:
    """One step alone runs within the budget (three tries: a loaded machine may stall
    one call past three times the step's usual cost)."""
    reasons = []
    for _ in range(3):
        try:
            return reg.invoke(sid, SLOW_PARAMS).result > 0
        except errors.InvocationError as exc:
            reasons.append(exc.details["reason"])
    assert reasons == ["timeout"] * 3
    return False


def test_one_time_budget_covers_the_whole_run():
    # The step's own cost on this machine, now; the budget is three times that.
    with Registry(limits=Limits(time_budget_ms=10_000)) as probe:
        sid = probe.create("expression", SLOW).substrate_id
        probe.invoke(sid, SLOW_PARAMS)
        costs = []
        for _ in range(3):
            start = time.perf_counter()
            probe.invoke(sid, SLOW_PARAMS)
            costs.append((time.perf_counter() - start) * 1000)
    budget = max(3 * sorted(costs)[1], 5.0)
    with Registry(limits=Limits(time_budget_ms=budget)) as reg:
        slow = reg.create("expression", SLOW).substrate_id
        assert fits_its_budget(reg, slow)  # one step fits the budget; thirty do not
        p = reg.compose([slow] * 30, "sum").substrate_id
        with pytest.raises(errors.InvocationError) as info:
            reg.invoke(p, SLOW_PARAMS)
        # The same error a slow substrate gets.
        assert info.value.details["reason"] == "timeout"
        assert info.value.details["limit_ms"] == pytest.approx(budget)
        # Nested pipelines share the outer run's budget.
        outer = reg.compose([p], "last").substrate_id
        with pytest.raises(errors.InvocationError) as info:
            reg.invoke(outer, SLOW_PARAMS)
        assert info.value.details["reason"] == "timeout"
        # In a batch too, item by item.
        [item] = reg.invoke_many([(p, SLOW_PARAMS)])
        assert isinstance(item, errors.InvocationError)
        assert item.details["reason"] == "timeout"
        # And the budget ends with the run: a plain invoke afterwards has its own.
        assert fits_its_budget(reg, slow)


def test_the_plan_is_compiled_once_and_cached(reg):
    a = reg.create("lambda", "lambda **kw: kw['x'] + 1").substrate_id
    p = reg.compose([a, step(a, "x")]).substrate_id
    plan = reg.compiled(p)
    assert isinstance(plan, Plan)
    assert plan.steps == (int(a, 16), int(a, 16))
    assert reg.compiled(p) is plan
    assert reg.invoke(p, {"x": 1}).result == 3
    # Dropped from the cache, it is planned again from the stored canonical code.
    reg.substrates.cache.discard(int(p, 16))
    assert reg.compiled(p) is not plan
    assert reg.invoke(p, {"x": 1}).result == 3


def test_result_cache_never_outlives_a_pipeline():
    with Registry(result_cache_size=1 << 20) as cached:
        cached.substrates.result_min_ms = 0.0
        a = cached.create("lambda", "lambda **kw: kw['x'] * 2").substrate_id
        p = cached.compose([a, step(a, "x")]).substrate_id
        for _ in range(4):
            assert cached.invoke(p, {"x": 3}).result == 12
        assert cached.substrates.results.stats()["hits"] >= 1
        with pytest.raises(errors.InUseError):
            cached.delete(a)  # a step cannot go while a cached pipeline uses it
        cached.delete(p)
        with pytest.raises(errors.NotFoundError):
            cached.invoke(p, {"x": 3})
        assert cached.substrates.results.stats()["entries"] == 0


def test_batch_create_and_atomic(reg):
    a = reg.create("constant", "4").substrate_id
    out = reg.create_many(
        [
            {"expression_type": "pipeline", "expression_code": pipeline(a, a, aggregate="sum")},
            {"expression_type": "pipeline", "expression_code": pipeline("0x77")},
            {"expression_type": "constant", "expression_code": "9"},
        ]
    )
    assert reg.invoke(out[0].substrate_id).result == 8
    assert isinstance(out[1], errors.ValidationError)
    assert out[1].details["reason"] == "missing_step"
    assert reg.outgoing(out[0].substrate_id)[0] == 1
    with pytest.raises(errors.BatchError):
        reg.create_many(
            [
                {"expression_type": "pipeline", "expression_code": pipeline(a, aggregate="list")},
                {"expression_type": "pipeline", "expression_code": pipeline("0x77")},
            ],
            atomic=True,
        )
    assert len(reg) == 3


def test_compose_names_and_spellings(reg):
    a = reg.create("constant", "4").substrate_id
    p = reg.compose([a, {"substrate_id": a.lower()}], "product", name="sq", metadata={"k": 1})
    assert p.metadata == {"k": 1, "name": "sq"}
    assert p.expression_type == "pipeline"
    assert p.expression_code == p.canonical_code
    assert reg.invoke(p.substrate_id).result == 16
    with pytest.raises(errors.ValidationError) as info:
        reg.compose([a], name="x", metadata={"name": "y"})
    assert info.value.details["field"] == "name"
    with pytest.raises(errors.DuplicateError):
        reg.compose([int(a, 16), a], "product")


# ---- export and import --------------------------------------------------------------------


def test_export_import_round_trip_puts_steps_first(tmp_path):
    with Registry() as reg:
        # Storage order need not be creation order: a freed slot is reused.
        gone = reg.create("constant", "0").substrate_id
        a = reg.create("lambda", "lambda **kw: kw.get('v', 1) + 1").substrate_id
        reg.delete(gone)
        inner = reg.compose([a, step(a, "v")]).substrate_id
        outer = reg.compose([inner, step(a, "v")], "list", name="outer").substrate_id
        records = list(reg.export_records())
        order = [r.get("substrate_id") for r in records if r["kind"] == "substrate"]
        assert order.index(a) < order.index(inner) < order.index(outer)
        with Registry(data_dir=tmp_path) as copy:
            counts = copy.import_records(records)
            # The edges come with their pipelines; their exported copies are skipped.
            assert counts == {"imported_substrates": 3, "imported_relationships": 0, "skipped": 3}
            assert copy.invoke(outer).result == reg.invoke(outer).result == [3, 4]
            with pytest.raises(errors.InUseError):
                copy.delete(inner)
            assert copy.get(outer).metadata == {"name": "outer"}
        # Steps after their pipeline: the pipeline's record is refused, with its index.
        with Registry() as copy:
            backwards = [records[order.index(outer)], records[order.index(a)]]
            with pytest.raises(errors.ValidationError) as info:
                copy.import_records(backwards)
            assert info.value.details["index"] == 0
            assert info.value.details["reason"] == "missing_step"
