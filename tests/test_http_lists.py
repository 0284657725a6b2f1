"""Every list pages the same way (DESIGN.md §6), and every number has a bound.

* A walk of any list with ``cursor`` pages of random ``limit`` visits each match exactly
  once, in the list's order, and every page answers ``count`` = the total.
* A number beyond its documented range, in any numeric field of a list or graph query
  string or body, is a 422 naming the field (never a 500); an ``offset`` past the total
  (within its bound) is an empty page.
* Traverse answers ``paths`` as a list (DESIGN.md §3 revised), PageRank is bounded.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_driver import finish, started
from bfx import Registry, graph, paging

API = "/api/v1"
REL = f"{API}/relationships"
SAME_TIME = "2024-05-01T12:00:00Z"


def _ok(res):
    assert res.status == 200, res
    return res.json()


@pytest.fixture(scope="module")
def loaded():
    """31 substrates (8 imported with one shared created_at, to exercise the id
    tie-break), a hub with 14 outgoing relationships, a few incoming, a cycle."""
    api = started()
    ids = []
    for i in range(23):
        meta = {"name": f"item {i}" + (" special" if i % 3 == 0 else ""), "team": i % 2}
        kind, code = ("constant", str(i)) if i % 2 else ("lambda", f"lambda x: x + {i}")
        res = api.post(
            f"{API}/substrates",
            json={"expression_type": kind, "expression_code": code, "metadata": meta},
        )
        assert res.status == 201, res
        ids.append(res.json()["substrate_id"])
    same = [
        {
            "expression_type": "constant",
            "expression_code": str(1000 + i),
            "metadata": {"name": f"tied special {i}", "team": 1},
            "created_at": SAME_TIME,
        }
        for i in range(8)
    ]
    res = api.post(f"{API}/substrates/import", json={"substrates": same})
    assert res.status == 200, res
    assert res.json()["imported_substrates"] == 8
    hub = ids[0]
    types = ["DEPENDENCY", "COMPOSITION", "SIBLING"]
    for k, other in enumerate(ids[1:15]):
        body = {"rel_type": types[k % 3], "source_id": hub, "target_id": other}
        body["bidirectional"] = k % 5 == 0
        assert api.post(REL, json=body).status == 201
    for other in ids[15:20]:
        assert api.post(REL, json={"rel_type": "CYCLE", "source_id": other, "target_id": hub})
    yield api, ids
    finish(api)


def _lists(ids):
    """(name, method, path, query or body, key of an item, items field)."""
    hub = ids[0]
    return [
        ("list", "GET", f"{API}/substrates", {}, "substrate_id", "substrates"),
        ("search", "GET", f"{API}/substrates/search", {"name": "SPECIAL"}, "substrate_id", None),
        ("search all", "GET", f"{API}/substrates/search", {}, "substrate_id", None),
        ("search type", "GET", f"{API}/substrates/search", {"type": "constant"}, "substrate_id", None),
        ("query", "POST", f"{API}/substrates/query", {"filters": {"metadata.team": 1}}, "substrate_id", None),
        ("query desc", "POST", f"{API}/substrates/query", {"sort": "-created_at"}, "substrate_id", None),
        ("relationships", "GET", REL, {}, "relationship_id", "relationships"),
        ("relationships type", "GET", REL, {"type": "dependency"}, "relationship_id", "relationships"),
        ("relationships source", "GET", REL, {"source_id": hub}, "relationship_id", "relationships"),
        ("outgoing", "GET", f"{REL}/outgoing/{hub}", {}, "relationship_id", "relationships"),
        ("incoming", "GET", f"{REL}/incoming/{hub}", {}, "relationship_id", "relationships"),
        ("components", "GET", f"{REL}/components", {}, None, "components"),
        ("pagerank", "GET", f"{REL}/pagerank", {}, "substrate_id", "scores"),
    ]  # fmt: skip


def _call(api, method, path, params, **extra):
    if method == "GET":
        return api.get(path, query={**params, **extra})
    return api.post(path, json={**params, **extra})


def _items(body, field):
    items = body[field or "substrates"]
    return items


def _key(item, key):
    return item[key] if key else tuple(item["substrate_ids"])


@given(st.data())
def test_cursor_walk_visits_each_match_once(loaded, data):
    api, ids = loaded
    for _name, method, path, params, key, field in _lists(ids):
        whole = _ok(_call(api, method, path, params, limit=1000))
        everything = [_key(x, key) for x in _items(whole, field)]
        total = whole["count"]
        assert whole["next_cursor"] is None
        if path.endswith("/substrates"):
            assert total == len(everything) == 31
        assert len(everything) == total
        seen, cursor, pages = [], None, 0
        while True:
            limit = data.draw(st.integers(1, 9), label="limit")
            extra = {"limit": limit} | ({"cursor": cursor} if cursor else {})
            body = _ok(_call(api, method, path, params, **extra))
            page = [_key(x, key) for x in _items(body, field)]
            assert body["count"] == total, (_name, body)
            assert 1 <= len(page) <= limit or total == 0
            seen += page
            pages += 1
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert isinstance(cursor, str)
            assert pages <= total
        assert seen == everything, _name  # once each, in the list's order


def test_orders_are_total_and_documented(loaded):
    api, _ids = loaded
    asc = _ok(api.post(f"{API}/substrates/query", json={"limit": 1000}))["substrates"]
    desc = _ok(api.post(f"{API}/substrates/query", json={"limit": 1000, "sort": "-created_at"}))[
        "substrates"
    ]
    assert [x["substrate_id"] for x in desc] == [x["substrate_id"] for x in reversed(asc)]
    keys = [(x["created_at"], x["identity"]) for x in asc]
    assert keys == sorted(keys)
    tied = [x for x in asc if x["created_at"].startswith("2024-05-01T12:00:00")]
    assert len(tied) == 8
    # search answers in the query's default order: oldest first, ties by id.
    search = _ok(api.get(f"{API}/substrates/search", query={"limit": 1000}))["substrates"]
    assert [x["substrate_id"] for x in search] == [x["substrate_id"] for x in asc]


def test_key_cursors_survive_writes_between_pages(loaded):
    """A query walk sees every record that exists throughout, once, even when records
    are created and deleted between its pages."""
    api, _ids = loaded
    first = _ok(api.post(f"{API}/substrates/query", json={"sort": "-created_at", "limit": 5}))
    before = _ok(api.post(f"{API}/substrates/query", json={"sort": "-created_at", "limit": 1000}))
    made = api.post(
        f"{API}/substrates", json={"expression_type": "constant", "expression_code": "777"}
    )
    assert made.status == 201
    seen = [x["substrate_id"] for x in first["substrates"]]
    cursor = first["next_cursor"]
    while cursor:
        body = _ok(
            api.post(
                f"{API}/substrates/query",
                json={"sort": "-created_at", "limit": 7, "cursor": cursor},
            )
        )
        seen += [x["substrate_id"] for x in body["substrates"]]
        cursor = body["next_cursor"]
    assert seen == [x["substrate_id"] for x in before["substrates"]]
    assert api.delete(f"{API}/substrates/{made.json()['substrate_id']}").status == 204


def test_cursor_errors(loaded):
    api, ids = loaded
    asc = _ok(api.post(f"{API}/substrates/query", json={"limit": 1}))
    res = api.post(
        f"{API}/substrates/query",
        json={"limit": 1, "sort": "-created_at", "cursor": asc["next_cursor"]},
    )
    assert res.status == 422, res
    assert res.json()["details"]["field"] == "cursor"
    out = _ok(api.get(f"{REL}/outgoing/{ids[0]}", query={"limit": 2}))
    for bad in ("x", "0x12", "e30", "W10", "WyJvIiwtMV0", "a" * 300, out["next_cursor"] + "A"):
        for path in (f"{API}/substrates/search", f"{REL}/outgoing/{ids[0]}", f"{REL}/pagerank"):
            res = api.get(path, query={"cursor": bad})
            assert res.status == 422, (path, bad, res)
            assert res.json()["details"]["field"] == "cursor"
    # A search cursor is a query cursor of the same order; an offset cursor is not.
    res = api.post(f"{API}/substrates/query", json={"cursor": out["next_cursor"]})
    assert res.status == 422, res
    # cursor and a different offset: give one.
    res = api.get(f"{REL}/outgoing/{ids[0]}", query={"cursor": out["next_cursor"], "offset": 5})
    assert res.status == 422, res
    assert res.json()["details"]["field"] == "cursor"


def test_offset_alias_and_past_the_total(loaded):
    api, ids = loaded
    hub = ids[0]
    whole = _ok(api.get(f"{REL}/outgoing/{hub}", query={"limit": 1000}))
    total = whole["count"]
    page = _ok(api.get(f"{REL}/outgoing/{hub}", query={"limit": 3, "offset": 2}))
    assert page["relationships"] == whole["relationships"][2:5]
    assert page["count"] == total
    # The cursor continues where the offset page ended.
    nxt = _ok(api.get(f"{REL}/outgoing/{hub}", query={"limit": 3, "cursor": page["next_cursor"]}))
    assert nxt["relationships"] == whole["relationships"][5:8]
    for path in (f"{REL}/outgoing/{hub}", f"{REL}/incoming/{hub}", REL):
        n = _ok(api.get(path))["count"]
        assert n > 0
        for offset in (n, n + 1, 10**6, paging.MAX_OFFSET):
            body = _ok(api.get(path, query={"offset": offset}))
            assert body == {"relationships": [], "count": n, "next_cursor": None}


HUGE = [2**64, 2**63, -(2**64), 10**30]
HUGE_TEXT = ["18446744073709551616", "1e400", "-1e400", "9" * 400]


def _numeric_fields(ids):
    """(method, path, base params, field) of every numeric field of the list and graph
    routes' query strings and bodies."""
    hub = ids[0]
    q = [
        (f"{API}/substrates", "limit"),
        (f"{API}/substrates/search", "limit"),
        (REL, "limit"),
        (REL, "offset"),
        (f"{REL}/outgoing/{hub}", "limit"),
        (f"{REL}/outgoing/{hub}", "offset"),
        (f"{REL}/incoming/{hub}", "limit"),
        (f"{REL}/incoming/{hub}", "offset"),
        (f"{REL}/cycles", "limit"),
        (f"{REL}/cycles", "max_length"),
        (f"{REL}/components", "limit"),
        (f"{REL}/components", "member_limit"),
        (f"{REL}/pagerank", "limit"),
        (f"{REL}/pagerank", "damping"),
        (f"{REL}/pagerank", "tol"),
        (f"{REL}/pagerank", "max_iter"),
    ]
    b = [
        (f"{API}/substrates/query", {}, "limit"),
        (f"{REL}/traverse", {"start_substrate_id": hub}, "max_depth"),
        (f"{REL}/traverse", {"start_substrate_id": hub}, "max_nodes"),
    ]
    return [("GET", path, {}, f) for path, f in q] + [("POST", p, base, f) for p, base, f in b]


def test_huge_numbers_are_422_naming_the_field(loaded):
    api, ids = loaded
    for method, path, base, field in _numeric_fields(ids):
        values = HUGE + ([float("1e300"), -1e300] if method == "POST" else HUGE_TEXT)
        for value in values:
            if method == "GET":
                res = api.get(path, query={**base, field: value})
            else:
                res = api.post(path, json={**base, field: value})
            assert res.status == 422, (path, field, value, res)
            body = res.json()
            assert set(body) == {"error", "message", "details"}
            assert body["details"].get("field") == field, (path, field, value, body)


def test_bounds_at_the_edge(loaded):
    """The documented maxima are accepted; one past them is a 422 naming the field."""
    api, ids = loaded
    hub = ids[0]
    edges = [
        (f"{REL}/outgoing/{hub}", "offset", paging.MAX_OFFSET),
        (f"{REL}/pagerank", "limit", paging.MAX_PAGE),
        (f"{REL}/components", "limit", paging.MAX_PAGE),
        (f"{REL}/pagerank", "max_iter", graph.MAX_PAGERANK_ITER),
        (f"{API}/substrates/search", "limit", paging.MAX_PAGE),
    ]
    for path, field, top in edges:
        assert api.get(path, query={field: top}).status == 200, (path, field)
        res = api.get(path, query={field: top + 1})
        assert res.status == 422, (path, field)
        assert res.json()["details"]["field"] == field
    for tol in (graph.MIN_PAGERANK_TOL / 10, 0, -1, 2, "nan", "inf"):
        res = api.get(f"{REL}/pagerank", query={"tol": tol})
        assert res.status == 422, (tol, res)
        assert res.json()["details"]["field"] == "tol"
    for damping in (-0.1, 1.01, "nan"):
        res = api.get(f"{REL}/pagerank", query={"damping": damping})
        assert res.status == 422, (damping, res)
        assert res.json()["details"]["field"] == "damping"
    worst = {"tol": graph.MIN_PAGERANK_TOL, "max_iter": graph.MAX_PAGERANK_ITER, "damping": 1}
    assert _ok(api.get(f"{REL}/pagerank", query=worst))["iterations"] <= graph.MAX_PAGERANK_ITER


def test_traverse_paths_is_a_list_in_node_order(loaded):
    api, ids = loaded
    body = _ok(
        api.post(
            f"{REL}/traverse",
            json={"start_substrate_id": ids[0], "direction": "both", "max_depth": 2},
        )
    )
    assert isinstance(body["paths"], list)
    assert len(body["paths"]) == len(body["nodes"])
    for node, path in zip(body["nodes"], body["paths"], strict=True):
        assert path[0] == ids[0]
        assert path[-1] == node["substrate_id"]
        assert len(path) == node["depth"] + 1
    spec = _ok(api.get(f"{API}/openapi.json"))
    schema = spec["components"]["schemas"]["TraverseResponse"]["properties"]["paths"]
    assert schema["type"] == "array"
    assert schema["items"]["type"] == "array"


def test_openapi_lists_answer_count_and_next_cursor(loaded):
    api, _ids = loaded
    schemas = _ok(api.get(f"{API}/openapi.json"))["components"]["schemas"]
    for name in ("SubstratePage", "SubstrateList", "RelationshipPage"):
        props = schemas[name]["properties"]
        assert {"count", "next_cursor"} <= set(props), name
    for name in ("SearchQuery", "QueryRequest", "EdgeQuery", "RelationshipQuery"):
        if name in schemas:
            assert "cursor" in schemas[name]["properties"], name


def test_pagerank_work_budget(monkeypatch):
    """Whatever the knobs, one PageRank call runs at most PAGERANK_WORK units of
    iterations x (substrates + relationships); beyond, converged is false."""
    reg = Registry()
    subs = [reg.create("constant", str(i)) for i in range(20)]
    for a, b in itertools.pairwise(subs):
        reg.relate("DEPENDENCY", a.identity, b.identity)
    units = len(reg) + 19
    assert graph.pagerank_iterations(len(reg), 19, 1000) == min(1000, graph.PAGERANK_WORK // units)
    monkeypatch.setattr(graph, "PAGERANK_WORK", units * 3)
    pr = reg.pagerank(damping=1.0, tol=graph.MIN_PAGERANK_TOL, max_iter=1000)
    assert pr["iterations"] == 3
    assert pr["converged"] is False
    monkeypatch.setattr(graph, "PAGERANK_WORK", 1)
    assert reg.pagerank(max_iter=1000)["iterations"] == 1


def test_registry_pages_like_http():
    reg = Registry()
    made = [reg.create("constant", str(i), {"name": f"n{i}"}) for i in range(12)]
    page = reg.search(name="n", limit=5)
    assert len(page) == 5
    assert page.count == 12
    walked = list(page)
    while page.next_cursor:
        page = reg.query({}, limit=5, cursor=page.next_cursor)
        walked += page
    assert [s.identity for s in walked] == [s.identity for s in made]
    with pytest.raises(Exception, match="offset") as info:
        reg.outgoing(made[0].identity, offset=2**64)
    assert info.value.details["field"] == "offset"
    with pytest.raises(Exception, match="limit"):
        reg.search(limit=paging.MAX_PAGE + 1)
