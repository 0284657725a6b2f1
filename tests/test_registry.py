"""The Registry facade: substrates, invocation, operators, batches, search,
relationships, export/import — all through the Rust arena."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bfx import Registry, errors
from bfx._core import substrate_id


@pytest.fixture
def reg() -> Registry:
    return Registry(cache_size=4)


def test_create_get_and_identity(reg):
    s = reg.create("lambda", "lambda x, y=2:   x*y  # doubles", {"name": "double"})
    assert s.canonical_code == "lambda x, y=2: x * y"
    assert s.expression_code == "lambda x, y=2:   x*y  # doubles"
    assert s.identity == substrate_id("lambda", "lambda x, y=2: x * y")
    assert s.substrate_id == f"0x{s.identity:016X}"
    assert s.created_at.tzinfo is not None
    got = reg.get(s.substrate_id.lower())
    assert got.metadata == {"name": "double"}
    assert got.expression_code == s.expression_code
    assert got.created_at == s.created_at
    with pytest.raises(errors.DuplicateError) as dup:
        reg.create("lambda", "lambda x, y=2: (x * y)")
    assert dup.value.details["substrate_id"] == s.substrate_id


def test_constants_canonicalise_to_their_value(reg):
    a = reg.create("constant", "1_000")
    assert a.canonical_code == "1000"
    with pytest.raises(errors.DuplicateError):
        reg.create("constant", "+1000")
    b = reg.create("constant", "1000.0")
    assert b.identity != a.identity
    assert reg.invoke(b.identity).result == 1000.0


@pytest.mark.parametrize(
    ("expression_type", "code", "metadata", "error"),
    [
        ("function", "x", None, errors.ValidationError),
        ("lambda", 42, None, errors.ValidationError),
        ("lambda", "__import__('os')", None, errors.SandboxError),
        ("expression", "x.__class__", None, errors.SandboxError),
        ("expression", "x", ["not", "an", "object"], errors.ValidationError),
        ("expression", "x", {"big": "y" * 70_000}, errors.LimitExceededError),
    ],
)
def test_create_rejects(reg, expression_type, code, metadata, error):
    with pytest.raises(error):
        reg.create(expression_type, code, metadata)
    assert len(reg) == 0


def test_invoke_and_the_compiled_cache_is_bounded(reg):
    made = [reg.create("expression", f"x * {i}") for i in range(10)]
    # Only 4 stay compiled; the others compile again from the stored code.
    for i, s in enumerate(made):
        assert reg.invoke(s.identity, {"x": 3}).result == 3 * i
    assert len(reg._cache) == 4
    assert reg.get(made[0].identity).invocations == 1
    with pytest.raises(errors.InvocationError):
        reg.invoke(made[1].identity, {})  # x missing
    with pytest.raises(errors.NotFoundError):
        reg.invoke(12345)
    results = reg.invoke_many([(made[2].identity, {"x": 5}), (999, {}), ("zz", None)])
    assert results[0].result == 10
    assert isinstance(results[1], errors.NotFoundError)
    assert isinstance(results[2], errors.InvalidIdError)
    assert reg.top_invoked(1) == [(made[2].identity, 2)]


def test_operators_use_the_value(reg):
    s = reg.create("lambda", "lambda **kw: kw.get('v', 0)")
    assert reg.add(s.identity, 1, {"v": 2**64 - 1})["new_value"] == 0
    assert reg.subtract(s.identity, 1, {"v": 0})["new_value"] == 2**64 - 1
    assert reg.modulus(s.identity, 3, {"v": -7}) == {
        "value": -7,
        "modulus": 3,
        "expressed": 2,
        "residue": -9,
    }
    assert reg.power(s.identity, 2**64 - 1, {"v": 3})["result_value"] == pow(3, 2**64 - 1, 2**64)
    assert reg.root(s.identity, 3, {"v": 10**30})["result_value"] == 10**10
    with pytest.raises(errors.ValidationError):
        reg.root(s.identity, 2, {"v": -4})
    with pytest.raises(errors.ValidationError):
        reg.add(s.identity, "5", {"v": 1})
    text = reg.create("lambda", "lambda: 'seven'")
    with pytest.raises(errors.ValidationError):
        reg.add(text.identity, 1)
    dims = reg.divide(s.identity)
    assert [d["level"] for d in dims] == [0, 1, 1, 2, 3, 5, 8, 13, 21]
    assert (dims[0]["name"], dims[0]["description"]) == ("Void", "Potential")
    assert reg.multiply([1, 1, 2, 3, 5, 8, 13, 21, 34])["unity_value"] == 2227680
    with pytest.raises(errors.ValidationError):
        reg.multiply([])


def test_batches_and_atomicity(reg):
    items = [
        {"expression_type": "expression", "expression_code": "a + 1"},
        {"expression_type": "expression", "expression_code": "a+1"},
        {"expression_type": "expression", "expression_code": "a.__dict__"},
        {"expression_type": "constant", "expression_code": "7", "metadata": {"name": "seven"}},
    ]
    with pytest.raises(errors.BatchError) as failed:
        reg.create_many(items, atomic=True)
    assert [f["index"] for f in failed.value.details["failures"]] == [1, 2]
    assert [f["status"] for f in failed.value.details["failures"]] == [409, 422]
    assert len(reg) == 0
    results = reg.create_many(items)
    assert isinstance(results[1], errors.DuplicateError)
    assert isinstance(results[2], errors.SandboxError)
    assert results[3].metadata == {"name": "seven"}
    assert len(reg) == 2
    ok = reg.create_many([*items[3:], {"expression_type": "constant", "expression_code": "8"}])
    assert isinstance(ok[0], errors.DuplicateError)


def test_list_pages_by_id(reg):
    ids = sorted(reg.create("expression", f"q + {i}").identity for i in range(25))
    seen, cursor = [], None
    while True:
        page, cursor = reg.list(limit=10, cursor=cursor)
        seen += [s.identity for s in page]
        if cursor is None:
            break
    assert seen == ids
    with pytest.raises(errors.ValidationError):
        reg.list(limit=0)


def test_search_and_query(reg):
    a = reg.create("lambda", "lambda: 1", {"name": "Alpha Beta", "team": "x"})
    b = reg.create("expression", "y + 1", {"name": "beta", "team": "y"})
    reg.create("constant", "3", {"name": 3})
    assert {s.identity for s in reg.search(name="BETA")} == {a.identity, b.identity}
    assert [s.identity for s in reg.search(name="beta", expression_type="lambda")] == [a.identity]
    assert [s.identity for s in reg.query({"metadata.team": "y"})] == [b.identity]
    newest_first = reg.query({}, sort="-created_at")
    assert [s.created_at for s in newest_first] == sorted(
        (s.created_at for s in newest_first), reverse=True
    )
    after = (a.created_at).isoformat()
    assert a.identity not in {s.identity for s in reg.query({"created_after": after})}
    before = a.created_at + timedelta(microseconds=1)
    assert a.identity in {s.identity for s in reg.query({"created_before": before})}
    with pytest.raises(errors.ValidationError):
        reg.query({"color": "red"})
    with pytest.raises(errors.ValidationError):
        reg.query({"created_after": "yesterday"})


def test_relationships_through_the_registry(reg):
    x = reg.create("expression", "x")
    y = reg.create("expression", "y")
    r = reg.relate("composition", x.substrate_id, y.identity, True, {"weight": 2})
    assert r.rel_type == "COMPOSITION"
    assert reg.get_relationship(r.relationship_id).constraints == {"weight": 2}
    assert reg.outgoing(y.identity)[0] == 1  # bidirectional: outgoing of both ends
    assert reg.incoming(x.identity)[0] == 1
    assert reg.relationships(rel_type="composition")[0] == 1
    with pytest.raises(errors.InvalidIdError) as bad:
        reg.relate("sibling", "not-an-id", y.identity)
    assert bad.value.details["field"] == "source_id"
    with pytest.raises(errors.InvalidRelationshipTypeError):
        reg.relate("friend", x.identity, y.identity)
    results = reg.relate_many(
        [
            {"rel_type": "SIBLING", "source_id": x.substrate_id, "target_id": y.substrate_id},
            {"rel_type": "SIBLING", "source_id": x.substrate_id, "target_id": y.substrate_id},
            {"rel_type": "SIBLING", "source_id": x.substrate_id, "target_id": "0x1"},
        ]
    )
    assert isinstance(results[1], errors.DuplicateError)
    assert isinstance(results[2], errors.NotFoundError)
    assert reg.delete(x.identity) == 2
    with pytest.raises(errors.NotFoundError):
        reg.get_relationship(r.identity)


def test_export_import_round_trip(reg):
    x = reg.create("lambda", "lambda   q: q + 1", {"name": "inc"})
    y = reg.create("constant", "2")
    rel = reg.relate("lineage", x.identity, y.identity, constraints={"k": [1, 2]})
    records = list(reg.export_records())
    assert [r["kind"] for r in records] == ["substrate", "substrate", "relationship"]
    other = Registry()
    assert other.import_records(records) == {
        "imported_substrates": 2,
        "imported_relationships": 1,
        "skipped": 0,
    }
    copy = other.get(x.identity)
    assert (copy.expression_code, copy.metadata, copy.created_at) == (
        x.expression_code,
        x.metadata,
        x.created_at,
    )
    assert other.get_relationship(rel.identity).constraints == {"k": [1, 2]}
    assert other.get_relationship(rel.identity).created_at == rel.created_at
    assert other.import_records(records)["skipped"] == 3
    forged = dict(records[0], substrate_id="0x1", expression_code="lambda q: q + 2")
    with pytest.raises(errors.ValidationError):
        Registry().import_records([forged])
    hostile = dict(records[0], expression_code="lambda: __import__('os')", substrate_id=None)
    with pytest.raises(errors.SandboxError):
        Registry().import_records([hostile])


def test_created_at_is_utc_now(reg):
    before = datetime.now(UTC)
    s = reg.create("expression", "z")
    assert before - timedelta(seconds=1) <= s.created_at <= datetime.now(UTC) + timedelta(seconds=1)
