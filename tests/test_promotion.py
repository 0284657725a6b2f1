"""Promotion (DESIGN.md §9): published vectors, XOR's self-inverse as a property, the
HTTP routes' answers and refusals, and the Registry API."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asgi_driver import finish, started
from bfx import Registry, errors
from bfx.domain import promotion

API = "/api/v1/substrates"
M = 2**64 - 1
U64 = st.integers(0, M)
VECTORS = json.loads((Path(__file__).parent / "promotion_vectors.json").read_text("utf-8"))


@pytest.fixture(scope="module")
def api():
    driver = started()
    yield driver
    finish(driver)


@pytest.mark.parametrize(
    "vector", VECTORS["fnv1a_64_vectors"], ids=lambda v: v["utf8_hex"] or "empty"
)
def test_fnv1a_64_vectors(vector):
    data = vector["text"].encode("utf-8")
    assert data.hex() == vector["utf8_hex"]
    assert f"0x{promotion.fnv1a_64(data):016X}" == vector["fnv1a_64"]


@pytest.mark.parametrize("vector", VECTORS["promote"], ids=lambda v: v["new_identity_hex"])
def test_promote_vectors_over_http(api, vector):
    res = api.post(f"{API}/{vector['substrate_id']}/promote", json=vector["request"])
    assert res.status == 200, res
    assert res.json() == {
        "substrate_id": f"0x{int(vector['substrate_id'], 16):016X}",
        "delta": vector["delta"],
        "attribute_value": vector["attribute_value"],
        "new_identity": vector["new_identity"],
        "new_identity_hex": vector["new_identity_hex"],
    }


@pytest.mark.parametrize("vector", VECTORS["promote_sequence"], ids=lambda v: v["substrate_id"])
def test_promote_sequence_vectors_over_http(api, vector):
    res = api.post(f"{API}/{vector['substrate_id']}/promote/sequence", json=vector["request"])
    assert res.status == 200, res
    body = res.json()
    assert [s["new_identity_hex"] for s in body["steps"]] == vector["chain_hex"]
    assert [s["delta"] for s in body["steps"]] == vector["request"]["deltas"]
    assert body["final_identity_hex"] == vector["chain_hex"][-1]
    assert body["final_identity"] == int(vector["chain_hex"][-1], 16)
    assert body["attribute_value"] == vector["request"].get("attribute_value", 798336)


@given(U64, U64, U64)
def test_promoting_twice_returns_the_original(identity, delta, attribute):
    once = promotion.promote(identity, delta, attribute_value=attribute)
    twice = promotion.promote(once.new_identity, delta, attribute_value=attribute)
    assert twice.new_identity == identity


@given(U64, st.text(max_size=50))
def test_a_description_promotes_back_too(identity, text):
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate: refused, tested below
    once = promotion.promote(identity, change_description=text)
    assert once.delta == promotion.fnv1a_64(text.encode("utf-8"))
    assert promotion.promote(once.new_identity, change_description=text).new_identity == identity


@given(U64, st.lists(U64, max_size=20), U64)
def test_a_sequence_is_promotions_one_after_another(identity, deltas, attribute):
    steps = promotion.promote_sequence(identity, deltas, attribute)
    current = identity
    for step, delta in zip(steps, deltas, strict=True):
        current = promotion.promote(current, delta, attribute_value=attribute).new_identity
        assert step.new_identity == current
    # Replaying the deltas backwards walks the chain back to the start.
    back = promotion.promote_sequence(current, list(reversed(deltas)), attribute)
    assert (back[-1].new_identity if back else current) == identity


@settings(max_examples=25)
@given(U64, U64)
def test_promoting_twice_over_http(api, identity, delta):
    first = api.post(f"{API}/{identity:x}/promote", json={"delta": delta}).json()
    second = api.post(f"{API}/{first['new_identity_hex']}/promote", json={"delta": delta})
    assert second.status == 200
    assert second.json()["new_identity"] == identity


def test_defaults_no_record_needed_and_nothing_stored(api):
    before = api.get(API).json()["count"]
    res = api.post(f"{API}/0x2a/promote", json={})
    assert res.status == 200
    assert res.json() == {
        "substrate_id": "0x000000000000002A",
        "delta": 0,
        "attribute_value": 798336,
        "new_identity": 42 ^ 798336,
        "new_identity_hex": f"0x{42 ^ 798336:016X}",
    }
    # No body at all is the same as {}.
    assert api.post(f"{API}/2A/promote").json() == res.json()
    empty = api.post(f"{API}/2a/promote/sequence", json={"deltas": []}).json()
    assert empty["steps"] == []
    assert empty["final_identity"] == 42
    assert api.get(API).json()["count"] == before


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("promote", {"delta": 2**64}, "delta"),
        ("promote", {"delta": -1}, "delta"),
        ("promote", {"attribute_value": 2**64}, "attribute_value"),
        ("promote", {"attribute_value": -5}, "attribute_value"),
        ("promote", {"delta": 10**40}, "delta"),
        ("promote", {"delta": 1, "change_description": "x"}, "delta"),
        ("promote/sequence", {"deltas": [1, 2**64]}, "deltas[1]"),
        ("promote/sequence", {"deltas": [-1]}, "deltas[0]"),
        ("promote/sequence", {"deltas": [1], "attribute_value": 2**64}, "attribute_value"),
    ],
)
def test_numbers_beyond_u64_are_422_naming_the_field(api, route, body, field):
    res = api.post(f"{API}/0x1/{route}", json=body)
    assert res.status == 422, res
    err = res.json()
    assert set(err) == {"error", "message", "details"}
    assert err["error"] == "validation_error"
    assert err["details"]["field"] == field


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("promote", {"delta": 1.5}),
        ("promote", {"delta": "5"}),
        ("promote", {"change_description": 7}),
        ("promote", {"deltas": [1]}),
        ("promote/sequence", {}),
        ("promote/sequence", {"deltas": [1.0]}),
        ("promote/sequence", {"deltas": list(range(1001))}),
        ("promote/sequence", {"deltas": 5}),
    ],
)
def test_malformed_bodies_are_422(api, route, body):
    res = api.post(f"{API}/0x1/{route}", json=body)
    assert res.status == 422, res
    assert set(res.json()) == {"error", "message", "details"}


def test_bad_ids_and_bodies(api):
    assert api.post(f"{API}/xyz/promote", json={}).json()["error"] == "invalid_id"
    assert api.post(f"{API}/0x10000000000000000/promote", json={}).status == 400
    res = api.post(f"{API}/0x1/promote", body=b"{not json", content_type="application/json")
    assert res.status == 400
    res = api.get(f"{API}/0x1/promote")
    assert res.status == 405


def test_a_lone_surrogate_description_is_422():
    with pytest.raises(errors.ValidationError) as info:
        promotion.promote(1, change_description="\ud800")
    assert info.value.details["field"] == "change_description"


def test_registry_api():
    with Registry() as reg:
        rec = reg.create("constant", "21")
        got = reg.promote(rec.substrate_id, change_description="add a parameter")
        assert got["delta"] == promotion.fnv1a_64(b"add a parameter")
        assert got["new_identity"] == rec.identity ^ 798336 ^ got["delta"]
        assert reg.promote(got["new_identity"], got["delta"])["new_identity"] == rec.identity
        chain = reg.promote_sequence(rec.substrate_id, [1, 2, 3])
        assert chain[-1] == rec.identity ^ 1 ^ 2 ^ 3 ^ 798336  # three attribute XORs: one left
        assert len(reg) == 1
        with pytest.raises(errors.ValidationError):
            reg.promote(rec.substrate_id, 2**64)


def test_the_service_answers_what_http_answers(api):
    from bfx.services import local_services

    svc = local_services(
        api.app.registry, max_answer_bytes=None, batch_time_budget=None, request_metrics=dict
    ).operators
    http = api.post(f"{API}/0xAB/promote", json={"change_description": "x", "attribute_value": 9})
    assert http.json() == msgspec.to_builtins(svc.promote(0xAB, None, "x", 9))
    http = api.post(f"{API}/0xAB/promote/sequence", json={"deltas": [5, 6]})
    assert http.json() == msgspec.to_builtins(svc.promote_sequence(0xAB, [5, 6]))
    with pytest.raises(errors.ValidationError) as info:
        svc.promote(0xAB, 2**64)
    assert info.value.to_dict() == api.post(f"{API}/0xAB/promote", json={"delta": 2**64}).json()
