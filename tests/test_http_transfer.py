"""Export and import over HTTP: JSON and NDJSON, and the round trip between registries."""

from __future__ import annotations

import msgspec
import pytest

from asgi_driver import finish, started

API = "/api/v1"


@pytest.fixture
def api():
    driver = started()
    yield driver
    finish(driver)


@pytest.fixture
def other():
    driver = started()
    yield driver
    finish(driver)


def populate(api) -> tuple[list[dict], list[dict]]:
    subs = []
    for i, (t, code) in enumerate(
        [("constant", "42"), ("lambda", "lambda x: x + 1"), ("expression", "x * y")]
    ):
        res = api.post(
            f"{API}/substrates",
            json={"expression_type": t, "expression_code": code, "metadata": {"name": f"n{i}"}},
        )
        assert res.status == 201
        subs.append(res.json())
    rels = []
    for src, dst, kind in [(0, 1, "DEPENDENCY"), (1, 2, "SIBLING")]:
        res = api.post(
            f"{API}/relationships",
            json={
                "rel_type": kind,
                "source_id": subs[src]["substrate_id"],
                "target_id": subs[dst]["substrate_id"],
                "bidirectional": kind == "SIBLING",
                "constraints": {"w": src},
            },
        )
        assert res.status == 201
        rels.append(res.json())
    return subs, rels


def _key(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k not in ("invocations", "kind")}


def test_export_json(api):
    subs, rels = populate(api)
    res = api.get(f"{API}/substrates/export")
    assert res.status == 200
    assert res.headers["content-type"] == "application/json"
    doc = res.json()
    assert set(doc) == {"substrates", "relationships"}
    by_id = {s["substrate_id"]: _key(s) for s in subs}
    assert {s["substrate_id"]: _key(s) for s in doc["substrates"]} == by_id
    assert sorted(doc["relationships"], key=lambda r: r["relationship_id"]) == sorted(
        rels, key=lambda r: r["relationship_id"]
    )


def test_export_ndjson(api):
    subs, _rels = populate(api)
    res = api.get(f"{API}/substrates/export", query={"format": "ndjson"})
    assert res.status == 200
    assert res.headers["content-type"] == "application/x-ndjson"
    lines = [msgspec.json.decode(x) for x in res.body.splitlines()]
    assert [x["kind"] for x in lines] == ["substrate"] * 3 + ["relationship"] * 2
    assert {x["substrate_id"] for x in lines[:3]} == {s["substrate_id"] for s in subs}


def test_export_of_an_empty_registry(api):
    assert api.get(f"{API}/substrates/export").json() == {"substrates": [], "relationships": []}
    assert api.get(f"{API}/substrates/export", query={"format": "ndjson"}).body == b""


def test_export_rejects_unknown_format(api):
    res = api.get(f"{API}/substrates/export", query={"format": "xml"})
    assert res.status == 422
    assert res.json()["details"]["field"] == "format"


def test_large_export_streams_in_chunks(api):
    items = [
        {"expression_type": "constant", "expression_code": str(i), "metadata": {"pad": "x" * 200}}
        for i in range(600)
    ]
    assert api.post(f"{API}/substrates/batch", json={"substrates": items}).status == 200
    res = api.get(f"{API}/substrates/export")
    assert res.chunks > 2
    assert len(res.json()["substrates"]) == 600
    nd = api.get(f"{API}/substrates/export", query={"format": "ndjson"})
    assert nd.chunks > 2
    assert len(nd.body.splitlines()) == 600


def _records(body: bytes, fmt: str) -> list[str]:
    if fmt == "ndjson":
        return sorted(body.splitlines())
    doc = msgspec.json.decode(body)
    return sorted(
        msgspec.json.encode(r, order="sorted").decode()
        for r in doc["substrates"] + doc["relationships"]
    )


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_round_trip_keeps_ids_metadata_times_and_relationships(api, other, fmt):
    populate(api)
    exported = api.get(f"{API}/substrates/export", query={"format": fmt})
    ctype = "application/json" if fmt == "json" else "application/x-ndjson"
    res = other.post(f"{API}/substrates/import", body=exported.body, content_type=ctype)
    assert res.status == 200, res
    assert res.json() == {"imported_substrates": 3, "imported_relationships": 2, "skipped": 0}
    again = other.get(f"{API}/substrates/export", query={"format": fmt})
    assert _records(again.body, fmt) == _records(exported.body, fmt)
    # Importing the same again skips everything.
    res = other.post(f"{API}/substrates/import", body=exported.body, content_type=ctype)
    assert res.json() == {"imported_substrates": 0, "imported_relationships": 0, "skipped": 5}


def test_import_validates_records_naming_the_field(api):
    body = {"substrates": [{"expression_type": "constant"}]}
    res = api.post(f"{API}/substrates/import", json=body)
    assert res.status == 422
    assert res.json()["details"]["field"] == "substrates[0].expression_code"
    lines = (
        b'{"kind": "substrate", "expression_type": "constant", "expression_code": "1"}\n'
        b'{"kind": "thing"}\n'
    )
    res = api.post(f"{API}/substrates/import", body=lines, content_type="application/x-ndjson")
    assert res.status == 422
    assert "line 2" in res.json()["message"]
    res = api.post(
        f"{API}/substrates/import",
        body=b'{"kind": "substrate"\n',
        content_type="application/x-ndjson",
    )
    assert res.status == 400
    assert res.json()["details"]["line"] == 1


def test_import_rejects_a_substrate_whose_id_does_not_match(api):
    rec = {
        "expression_type": "constant",
        "expression_code": "1",
        "substrate_id": "0x0000000000000001",
    }
    res = api.post(f"{API}/substrates/import", json={"substrates": [rec]})
    assert res.status in (409, 422)


def test_import_content_types(api):
    res = api.post(f"{API}/substrates/import", body=b"a,b\n", content_type="text/csv")
    assert res.status == 415
    res = api.post(f"{API}/substrates/import", body=b"{}", content_type="application/xml")
    assert res.status == 415
    res = api.post(f"{API}/substrates/import", body=b"{}", content_type=None)
    assert res.json() == {"imported_substrates": 0, "imported_relationships": 0, "skipped": 0}


def test_import_has_its_own_body_limit():
    driver = started(body_limit=100, import_body_limit=10_000)
    try:
        recs = {
            "substrates": [
                {"expression_type": "constant", "expression_code": str(i)} for i in range(20)
            ]
        }
        res = driver.post(f"{API}/substrates/import", json=recs)
        assert res.status == 200, res
        big = {
            "substrates": [
                {"expression_type": "constant", "expression_code": str(i)} for i in range(1000)
            ]
        }
        assert driver.post(f"{API}/substrates/import", json=big).status == 413
    finally:
        finish(driver)
