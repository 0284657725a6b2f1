"""The graph routes under /api/v1/relationships, driven in process."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_driver import finish, started

API = "/api/v1"
REL = f"{API}/relationships"


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


def relate(api, rel_type, src, dst, **extra) -> str:
    res = api.post(REL, json={"rel_type": rel_type, "source_id": src, "target_id": dst, **extra})
    assert res.status == 201, res
    return res.json()["relationship_id"]


def error(res, status, code):
    assert res.status == status, res
    body = res.json()
    assert body["error"] == code, body
    assert isinstance(body["details"], dict)
    return body


@pytest.fixture
def chain(api):
    """a -> b -> c -> a (a cycle), c <-> d (bidirectional), e alone."""
    a, b, c, d, e = make(api, 5)
    rels = [
        relate(api, "DEPENDENCY", a, b),
        relate(api, "DEPENDENCY", b, c),
        relate(api, "LINEAGE", c, a),
        relate(api, "SIBLING", c, d, bidirectional=True),
    ]
    return [a, b, c, d, e], rels


def test_traverse(api, chain):
    (a, b, c, d, _e), rels = chain
    res = api.post(f"{REL}/traverse", json={"start_substrate_id": a, "max_depth": 2})
    assert res.status == 200, res
    body = res.json()
    assert body["start_substrate_id"] == a
    assert body["nodes"] == [
        {"substrate_id": a, "depth": 0},
        {"substrate_id": b, "depth": 1},
        {"substrate_id": c, "depth": 2},
    ]
    # DESIGN.md §3 revised: a list, one path per node in the order of nodes.
    assert body["paths"] == [[a], [a, b], [a, b, c]]
    assert {e["relationship_id"] for e in body["edges"]} == {rels[0], rels[1]}
    assert body["truncated"] is False
    edge = body["edges"][0]
    assert set(edge) == {"relationship_id", "rel_type", "source_id", "target_id", "bidirectional"}

    both = api.post(
        f"{REL}/traverse",
        json={
            "start_substrate_id": d.lower(),
            "direction": "both",
            "max_depth": 1,
            "relationship_types": ["sibling"],
            "include_substrates": True,
        },
    ).json()
    assert [n["substrate_id"] for n in both["nodes"]] == [d, c]
    assert both["nodes"][1]["substrate"]["substrate_id"] == c
    assert both["nodes"][1]["substrate"]["expression_code"] == "2"

    capped = api.post(f"{REL}/traverse", json={"start_substrate_id": a, "max_nodes": 2}).json()
    assert len(capped["nodes"]) == 2
    assert capped["truncated"] is True


def test_traverse_errors(api, chain):
    (a, *_), _ = chain
    url = f"{REL}/traverse"
    error(api.post(url, json={"start_substrate_id": "0x1"}), 404, "not_found")
    error(api.post(url, json={"start_substrate_id": "zz"}), 422, "invalid_id")
    error(api.post(url, json={"start_substrate_id": a, "max_depth": 33}), 422, "limit_exceeded")
    error(api.post(url, json={"start_substrate_id": a, "max_nodes": 10_001}), 422, "limit_exceeded")
    error(api.post(url, json={"start_substrate_id": a, "direction": "up"}), 422, "validation_error")
    error(
        api.post(url, json={"start_substrate_id": a, "relationship_types": ["FRIEND"]}),
        422,
        "invalid_relationship_type",
    )
    error(api.post(url, json={"start_substrate_id": a, "depth": 1}), 422, "validation_error")
    error(api.post(url, json={}), 422, "validation_error")
    error(api.post(url, body=b"{", content_type="application/json"), 400, "malformed_json")
    assert api.get(url).status == 405


def test_path(api, chain):
    (a, b, c, d, e), _ = chain
    body = api.get(f"{REL}/path/{a}/{d}").json()
    assert body == {"source_id": a, "target_id": d, "path": [a, b, c, d], "length": 3}
    back = api.get(f"{REL}/path/{d}/{a}").json()
    assert back["path"] == [d, c, a]
    assert api.get(f"{REL}/path/{a}/{a}").json()["path"] == [a]
    inc = api.get(f"{REL}/path/{a}/{c}", query={"direction": "incoming"}).json()
    assert inc["path"] == [a, c]
    typed = api.get(f"{REL}/path/{a}/{c}", query={"relationship_types": "dependency"}).json()
    assert typed["path"] == [a, b, c]
    body = error(api.get(f"{REL}/path/{a}/{e}"), 404, "no_path")
    assert body["details"]["source_id"] == a
    error(api.get(f"{REL}/path/{a}/{c}", query={"relationship_types": "SIBLING"}), 404, "no_path")
    error(api.get(f"{REL}/path/{a}/0x1"), 404, "not_found")
    error(api.get(f"{REL}/path/nothex/{a}"), 400, "invalid_id")
    error(api.get(f"{REL}/path/{a}/{c}", query={"direction": "up"}), 422, "validation_error")


def test_cycles(api, chain):
    (a, b, c, d, _e), _ = chain
    body = api.get(f"{REL}/cycles").json()
    assert body["has_cycle"] is True
    assert body["truncated"] is False
    got = {frozenset(cy) for cy in body["cycles"]}
    assert got == {frozenset({a, b, c}), frozenset({c, d})}
    one = api.get(f"{REL}/cycles", query={"limit": 1}).json()
    assert len(one["cycles"]) == 1
    assert one["truncated"] is True
    short = api.get(f"{REL}/cycles", query={"max_length": 2}).json()
    assert [set(cy) for cy in short["cycles"]] == [{c, d}]
    error(api.get(f"{REL}/cycles", query={"max_length": 0}), 422, "validation_error")
    none = api.get(f"{REL}/cycles", query={"relationship_types": "DEPENDENCY"}).json()
    assert none == {"has_cycle": False, "cycles": [], "truncated": False}
    error(api.get(f"{REL}/cycles", query={"limit": 10_001}), 422, "validation_error")


def test_components_paged(api, chain):
    (a, b, c, d, e), _ = chain
    body = api.get(f"{REL}/components").json()
    assert body["count"] == 2
    assert body["next_cursor"] is None
    assert body["components"][0] == {
        "size": 4,
        "substrate_ids": sorted([a, b, c, d]),
        "truncated": False,
    }
    assert body["components"][1] == {"size": 1, "substrate_ids": [e], "truncated": False}
    first = api.get(f"{REL}/components", query={"limit": 1, "member_limit": 2}).json()
    assert first["components"][0]["size"] == 4
    assert len(first["components"][0]["substrate_ids"]) == 2
    assert first["components"][0]["truncated"] is True
    assert first["next_cursor"] is not None
    rest = api.get(f"{REL}/components", query={"limit": 1, "cursor": first["next_cursor"]}).json()
    assert rest["components"] == [{"size": 1, "substrate_ids": [e], "truncated": False}]
    assert rest["next_cursor"] is None
    error(api.get(f"{REL}/components", query={"cursor": "x"}), 422, "validation_error")
    error(api.get(f"{REL}/components", query={"limit": 0}), 422, "validation_error")


def test_pagerank_paged(api, chain):
    ids, _ = chain
    body = api.get(f"{REL}/pagerank").json()
    assert body["count"] == 5
    assert body["converged"] is True
    assert body["next_cursor"] is None
    scores = body["scores"]
    assert {x["substrate_id"] for x in scores} == set(ids)
    assert sum(x["score"] for x in scores) == pytest.approx(1.0)
    values = [x["score"] for x in scores]
    assert values == sorted(values, reverse=True)
    page = api.get(f"{REL}/pagerank", query={"limit": 2}).json()
    assert page["scores"] == scores[:2]
    nxt = api.get(f"{REL}/pagerank", query={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert nxt["scores"] == scores[2:4]
    error(api.get(f"{REL}/pagerank", query={"damping": 2}), 422, "validation_error")
    error(api.get(f"{REL}/pagerank", query={"tol": "nan"}), 422, "validation_error")
    error(api.get(f"{REL}/pagerank", query={"max_iter": 0}), 422, "validation_error")


def test_stats_use_the_core(api, chain):
    body = api.get(f"{REL}/stats").json()
    assert body == {
        "total_relationships": 4,
        "total_substrates": 5,
        "by_type": {"DEPENDENCY": 2, "LINEAGE": 1, "SIBLING": 1},
        "avg_connections_per_substrate": pytest.approx(8 / 5),
        "max_connections": 3,
        "isolated_substrates": 1,
    }


def test_empty_registry(api):
    assert api.get(f"{REL}/cycles").json() == {"has_cycle": False, "cycles": [], "truncated": False}
    assert api.get(f"{REL}/components").json() == {
        "components": [],
        "count": 0,
        "next_cursor": None,
    }
    assert api.get(f"{REL}/pagerank").json()["scores"] == []


def test_graph_routes_are_in_openapi(api):
    paths = api.get(f"{API}/openapi.json").json()["paths"]
    for p in (
        "/relationships/traverse",
        "/relationships/path/{src}/{dst}",
        "/relationships/cycles",
        "/relationships/components",
        "/relationships/pagerank",
    ):
        assert any(k.endswith(p) for k in paths), p


# --- whatever arrives, a graph route answers below 500 -----------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.text(max_size=12), max_size=3),
)
_keys = st.sampled_from([
    "start_substrate_id", "direction", "max_depth", "relationship_types",
    "include_substrates", "max_nodes", "limit", "cursor", "member_limit", "damping", "tol",
    "max_iter", "extra",
])  # fmt: skip


@pytest.fixture(scope="module")
def loaded():
    driver = started()
    ids = make(driver, 4)
    relate(driver, "DEPENDENCY", ids[0], ids[1])
    relate(driver, "SIBLING", ids[1], ids[2], bidirectional=True)
    relate(driver, "CYCLE", ids[3], ids[3])
    yield driver, ids
    finish(driver)


@given(st.dictionaries(_keys, _values, max_size=5), st.data())
def test_graph_routes_never_fail_with_a_5xx(loaded, body, data):
    api, ids = loaded
    some_id = data.draw(st.sampled_from([*ids, "0x1", "zz", "", "0x" + "F" * 17]))
    if "start_substrate_id" not in body and data.draw(st.booleans()):
        body["start_substrate_id"] = some_id
    res = api.post(f"{REL}/traverse", json=body)
    assert res.status < 500, res
    query = {k: str(v) for k, v in body.items() if v is not None}
    for route in ("cycles", "components", "pagerank"):
        res = api.get(f"{REL}/{route}", query=query)
        assert res.status < 500, res
        if res.status >= 400:
            assert set(res.json()) == {"error", "message", "details"}
    other = data.draw(st.sampled_from(ids))
    res = api.get(f"{REL}/path/{some_id or 'x'}/{other}", query=query)
    assert res.status < 500, res
