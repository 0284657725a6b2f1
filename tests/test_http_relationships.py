"""Routes under /api/v1/relationships, driven in process."""

from __future__ import annotations

from datetime import datetime

import pytest

from asgi_driver import finish, started

API = "/api/v1"
REL_FIELDS = {
    "relationship_id",
    "rel_type",
    "source_id",
    "target_id",
    "bidirectional",
    "constraints",
    "created_at",
}


@pytest.fixture
def api():
    driver = started()
    yield driver
    finish(driver)


def make(api, n: int) -> list[str]:
    out = []
    for i in range(n):
        res = api.post(
            f"{API}/substrates", json={"expression_type": "constant", "expression_code": str(i)}
        )
        assert res.status == 201, res
        out.append(res.json()["substrate_id"])
    return out


def relate(api, rel_type, src, dst, **extra) -> dict:
    res = api.post(
        f"{API}/relationships",
        json={"rel_type": rel_type, "source_id": src, "target_id": dst, **extra},
    )
    assert res.status == 201, res
    return res.json()


def error(res, status, code):
    assert res.status == status, res
    body = res.json()
    assert body["error"] == code, body
    return body


def test_create_get_delete(api):
    a, b = make(api, 2)
    rel = relate(api, "dependency", a.lower(), b[2:], constraints={"weight": 2})
    assert set(rel) == REL_FIELDS
    assert rel["rel_type"] == "DEPENDENCY"
    assert rel["source_id"] == a
    assert rel["target_id"] == b
    assert rel["bidirectional"] is False
    assert rel["constraints"] == {"weight": 2}
    assert rel["created_at"].endswith("Z")
    datetime.fromisoformat(rel["created_at"])
    rid = rel["relationship_id"]
    assert rid.startswith("0x")
    assert len(rid) == 18
    got = api.get(f"{API}/relationships/{rid.lower()}")
    assert got.status == 200
    assert got.json() == rel
    assert api.delete(f"{API}/relationships/{rid}").status == 204
    error(api.get(f"{API}/relationships/{rid}"), 404, "not_found")
    error(api.delete(f"{API}/relationships/{rid}"), 404, "not_found")


def test_omitted_constraints_come_back_empty(api):
    a, b = make(api, 2)
    assert relate(api, "SIBLING", a, b)["constraints"] == {}


def test_duplicate_edge_is_409(api):
    a, b = make(api, 2)
    rel = relate(api, "SIBLING", a, b)
    body = error(
        api.post(
            f"{API}/relationships", json={"rel_type": "sibling", "source_id": a, "target_id": b}
        ),
        409,
        "duplicate",
    )
    assert rel["relationship_id"] in str(body)
    # Another type between the same ends is a different edge.
    relate(api, "LINEAGE", a, b)


def test_unknown_endpoint_is_404(api):
    (a,) = make(api, 1)
    error(
        api.post(
            f"{API}/relationships", json={"rel_type": "SIBLING", "source_id": a, "target_id": "0x1"}
        ),
        404,
        "not_found",
    )


def test_invalid_type_and_body_ids_are_422(api):
    a, b = make(api, 2)
    error(
        api.post(
            f"{API}/relationships", json={"rel_type": "FRIEND", "source_id": a, "target_id": b}
        ),
        422,
        "invalid_relationship_type",
    )
    body = error(
        api.post(
            f"{API}/relationships", json={"rel_type": "SIBLING", "source_id": "zz", "target_id": b}
        ),
        422,
        "invalid_id",
    )
    assert body["details"]["field"] == "source_id"
    body = error(
        api.post(
            f"{API}/relationships", json={"rel_type": "SIBLING", "source_id": a, "target_id": 5}
        ),
        422,
        "validation_error",
    )
    assert body["details"]["field"] == "target_id"


def test_self_loops_are_allowed(api):
    (a,) = make(api, 1)
    rel = relate(api, "RECURSION", a, a)
    assert rel["source_id"] == rel["target_id"] == a


def test_outgoing_and_incoming(api):
    a, b, c = make(api, 3)
    ab = relate(api, "DEPENDENCY", a, b)
    ac = relate(api, "COMPOSITION", a, c)
    bc = relate(api, "SIBLING", b, c, bidirectional=True)
    out = api.get(f"{API}/relationships/outgoing/{a}")
    assert out.status == 200
    body = out.json()
    # DESIGN.md §6: every list answers next_cursor too.
    assert set(body) == {"relationships", "count", "next_cursor"}
    assert body["next_cursor"] is None
    assert body["count"] == 2
    assert {r["relationship_id"] for r in body["relationships"]} == {
        ab["relationship_id"],
        ac["relationship_id"],
    }
    # A bidirectional edge is outgoing and incoming of both ends.
    c_out = api.get(f"{API}/relationships/outgoing/{c}").json()
    assert [r["relationship_id"] for r in c_out["relationships"]] == [bc["relationship_id"]]
    b_in = api.get(f"{API}/relationships/incoming/{b}").json()
    assert {r["relationship_id"] for r in b_in["relationships"]} == {
        ab["relationship_id"],
        bc["relationship_id"],
    }
    typed = api.get(f"{API}/relationships/outgoing/{a}", query={"rel_type": "dependency"})
    assert [r["relationship_id"] for r in typed.json()["relationships"]] == [ab["relationship_id"]]
    aliased = api.get(f"{API}/relationships/outgoing/{a}", query={"type": "DEPENDENCY"})
    assert aliased.json() == typed.json()


def test_outgoing_pages_with_total_count(api):
    ids = make(api, 6)
    hub = ids[0]
    for other in ids[1:]:
        relate(api, "AGGREGATION", hub, other)
    seen = []
    for offset in (0, 2, 4):
        body = api.get(
            f"{API}/relationships/outgoing/{hub}", query={"limit": 2, "offset": offset}
        ).json()
        assert body["count"] == 5
        seen += [r["relationship_id"] for r in body["relationships"]]
    assert len(set(seen)) == 5


def test_outgoing_of_unknown_substrate_is_404(api):
    error(api.get(f"{API}/relationships/outgoing/0x77"), 404, "not_found")
    error(api.get(f"{API}/relationships/incoming/0x77"), 404, "not_found")


def test_edge_query_validation(api):
    (a,) = make(api, 1)
    error(
        api.get(f"{API}/relationships/outgoing/{a}", query={"offset": -1}), 422, "validation_error"
    )
    error(
        api.get(
            f"{API}/relationships/outgoing/{a}", query={"rel_type": "SIBLING", "type": "LINEAGE"}
        ),
        422,
        "validation_error",
    )


def test_filtered_list(api):
    a, b, c = make(api, 3)
    ab = relate(api, "DEPENDENCY", a, b)
    relate(api, "DEPENDENCY", b, c)
    relate(api, "SIBLING", a, c)
    res = api.get(f"{API}/relationships", query={"type": "DEPENDENCY", "source_id": a})
    assert res.status == 200
    assert res.json()["count"] == 1
    assert res.json()["relationships"][0]["relationship_id"] == ab["relationship_id"]
    assert api.get(f"{API}/relationships", query={"type": "dependency"}).json()["count"] == 2
    assert api.get(f"{API}/relationships", query={"target_id": c}).json()["count"] == 2
    everything = api.get(f"{API}/relationships", query={"limit": 1}).json()
    assert everything["count"] == 3
    assert len(everything["relationships"]) == 1
    error(api.get(f"{API}/relationships", query={"source_id": "nope"}), 400, "invalid_id")


def test_stats(api):
    a, b, c, _d = make(api, 4)
    relate(api, "DEPENDENCY", a, b)
    relate(api, "DEPENDENCY", b, c)
    relate(api, "SIBLING", a, c, bidirectional=True)
    res = api.get(f"{API}/relationships/stats")
    assert res.status == 200
    body = res.json()
    assert body["total_relationships"] == 3
    assert body["total_substrates"] == 4
    assert body["by_type"] == {"DEPENDENCY": 2, "SIBLING": 1}
    assert body["isolated_substrates"] == 1
    assert body["max_connections"] == 2
    assert body["avg_connections_per_substrate"] == pytest.approx(6 / 4)


def test_deleting_a_substrate_cascades(api):
    a, b = make(api, 2)
    rel = relate(api, "DEPENDENCY", a, b)
    assert api.delete(f"{API}/substrates/{b}").status == 204
    error(api.get(f"{API}/relationships/{rel['relationship_id']}"), 404, "not_found")
    assert api.get(f"{API}/relationships/outgoing/{a}").json() == {
        "relationships": [],
        "count": 0,
        "next_cursor": None,
    }


def test_batch(api):
    a, b, c = make(api, 3)
    items = [
        {"rel_type": "DEPENDENCY", "source_id": a, "target_id": b},
        {"rel_type": "dependency", "source_id": a, "target_id": b},
        {"rel_type": "FRIEND", "source_id": a, "target_id": c},
        {"rel_type": "SIBLING", "source_id": a, "target_id": "0x5"},
        {"rel_type": "SIBLING", "source_id": "bad!", "target_id": c},
        {"rel_type": "SIBLING", "source_id": b, "target_id": c, "bidirectional": True},
    ]
    res = api.post(f"{API}/relationships/batch", json={"relationships": items})
    assert res.status == 200
    results = res.json()["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["status"] for r in results] == [201, 409, 422, 404, 422, 201]
    assert results[4]["error"]["error"] == "invalid_id"
    rid = results[5]["relationship_id"]
    assert api.get(f"{API}/relationships/{rid}").json()["bidirectional"] is True


def test_atomic_batch_writes_nothing(api):
    a, b = make(api, 2)
    items = [
        {"rel_type": "DEPENDENCY", "source_id": a, "target_id": b},
        {"rel_type": "DEPENDENCY", "source_id": a, "target_id": "0x5"},
    ]
    body = error(
        api.post(f"{API}/relationships/batch", json={"relationships": items, "atomic": True}),
        422,
        "batch_failed",
    )
    assert [f["index"] for f in body["details"]["failures"]] == [1]
    assert body["details"]["failures"][0]["status"] == 404
    assert api.get(f"{API}/relationships").json()["count"] == 0
