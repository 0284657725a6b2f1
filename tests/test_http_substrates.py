"""Routes under /api/v1/substrates, driven in process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from asgi_driver import finish, started

API = "/api/v1/substrates"
MUL = {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"}
RECORD_FIELDS = {
    "substrate_id",
    "identity",
    "created_at",
    "expression_type",
    "expression_code",
    "canonical_code",
    "metadata",
    "invocations",
}


@pytest.fixture
def api():
    driver = started()
    yield driver
    finish(driver)


def create(api, expression_type="lambda", code="lambda x, y=2: x * y", **extra) -> dict:
    res = api.post(API, json={"expression_type": expression_type, "expression_code": code, **extra})
    assert res.status == 201, res
    return res.json()


def error(res, status, code):
    assert res.status == status, res
    body = res.json()
    assert body["error"] == code, body
    return body


# --- records ---------------------------------------------------------------------------


def test_create_returns_the_record(api):
    res = api.post(API, json={**MUL, "metadata": {"name": "multiply", "tags": ["a"]}})
    assert res.status == 201
    rec = res.json()
    assert set(rec) == RECORD_FIELDS
    sid = rec["substrate_id"]
    assert sid.startswith("0x")
    assert len(sid) == 18
    assert sid[2:] == sid[2:].upper()
    assert int(sid, 16) == rec["identity"]
    assert rec["expression_type"] == "lambda"
    assert rec["expression_code"] == MUL["expression_code"]
    assert rec["metadata"] == {"name": "multiply", "tags": ["a"]}
    assert rec["invocations"] == 0
    created = datetime.fromisoformat(rec["created_at"])
    assert created.utcoffset() == timedelta(0)
    assert rec["created_at"].endswith("Z")
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert res.headers["location"] == f"{API}/{sid}"


def test_omitted_metadata_comes_back_empty(api):
    assert create(api)["metadata"] == {}
    assert create(api, "constant", "7", metadata=None)["metadata"] == {}


def test_get_by_any_spelling_of_the_id(api):
    rec = create(api)
    sid = rec["substrate_id"]
    for spelling in (sid, sid.lower(), sid[2:], "0X" + sid[2:].lower(), sid[2:].lstrip("0")):
        res = api.get(f"{API}/{spelling}")
        assert res.status == 200, spelling
        assert res.json() == rec


def test_get_unknown_is_404(api):
    error(api.get(f"{API}/0xDEADBEEF"), 404, "not_found")


def test_duplicate_is_409_naming_the_existing_id(api):
    rec = create(api)
    res = api.post(
        API, json={"expression_type": "lambda", "expression_code": "lambda   x, y=2:   x*y"}
    )
    body = error(res, 409, "duplicate")
    assert body["details"]["substrate_id"] == rec["substrate_id"]
    assert rec["substrate_id"] in body["message"]


def test_sandbox_rejection_is_422(api):
    res = api.post(
        API, json={"expression_type": "lambda", "expression_code": "lambda: __import__('os')"}
    )
    assert res.status == 422
    assert res.json()["error"] in ("sandbox_rejected", "validation_error")


def test_delete_then_404(api):
    sid = create(api)["substrate_id"]
    res = api.delete(f"{API}/{sid}")
    assert res.status == 204
    assert res.body == b""
    assert "content-type" not in res.headers
    error(api.get(f"{API}/{sid}"), 404, "not_found")
    error(api.delete(f"{API}/{sid}"), 404, "not_found")


def test_list_pages_by_cursor(api):
    ids = sorted(create(api, "constant", str(n))["identity"] for n in range(7))
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        res = api.get(API, query=query)
        assert res.status == 200
        body = res.json()
        # DESIGN.md §6: every list answers count (the total) too.
        assert set(body) == {"substrates", "next_cursor", "count"}
        assert body["count"] == 7
        seen += [r["identity"] for r in body["substrates"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
        assert cursor.startswith("0x")
    assert seen == ids
    assert pages in (3, 4)


def test_list_defaults(api):
    create(api)
    body = api.get(API).json()
    assert len(body["substrates"]) == 1
    assert body["next_cursor"] is None


# --- invoke ------------------------------------------------------------------------------


def test_invoke(api):
    sid = create(api)["substrate_id"]
    res = api.post(f"{API}/{sid}/invoke", json={"parameters": {"x": 21}})
    assert res.status == 200
    body = res.json()
    assert set(body) == {"substrate_id", "result", "invocation_time_ms"}
    assert body["substrate_id"] == sid
    assert body["result"] == 42
    assert body["invocation_time_ms"] >= 0
    assert api.get(f"{API}/{sid}").json()["invocations"] == 1


@pytest.mark.parametrize("body", [None, {}, {"parameters": None}, {"parameters": {}}])
def test_invoke_body_is_optional(api, body):
    sid = create(api, "constant", "42")["substrate_id"]
    if body is None:
        res = api.request("POST", f"{API}/{sid}/invoke")
    else:
        res = api.post(f"{API}/{sid}/invoke", json=body)
    assert res.status == 200, res
    assert res.json()["result"] == 42


def test_invoke_returns_big_integers_exactly(api):
    sid = create(api, "expression", "x ** 300")["substrate_id"]
    res = api.post(f"{API}/{sid}/invoke", json={"parameters": {"x": 7}})
    assert res.status == 200, res
    assert res.json()["result"] == 7**300
    assert str(7**300).encode() in res.body


def test_invoke_big_integer_parameters(api):
    sid = create(api, "expression", "x + 1")["substrate_id"]
    res = api.post(f"{API}/{sid}/invoke", json={"parameters": {"x": 2**100}})
    assert res.status == 200, res
    assert res.json()["result"] == 2**100 + 1


def test_invoke_failure_is_422(api):
    sid = create(api)["substrate_id"]
    error(api.post(f"{API}/{sid}/invoke", json={"parameters": {}}), 422, "invocation_error")


def test_invoke_unknown_is_404(api):
    error(api.post(f"{API}/0x1234/invoke", json={}), 404, "not_found")


def test_invoke_parameters_must_be_an_object(api):
    sid = create(api)["substrate_id"]
    body = error(api.post(f"{API}/{sid}/invoke", json={"parameters": [1]}), 422, "validation_error")
    assert body["details"]["field"] == "parameters"


# --- operators --------------------------------------------------------------------------


def test_divide(api):
    sid = create(api, "constant", "42")["substrate_id"]
    res = api.request("POST", f"{API}/{sid}/divide")
    assert res.status == 200
    body = res.json()
    assert body["substrate_id"] == sid
    assert body["fibonacci_sequence"] == [0, 1, 1, 2, 3, 5, 8, 13, 21]
    assert [d["level"] for d in body["dimensions"]] == body["fibonacci_sequence"]
    assert body["dimensions"][0] == {"level": 0, "name": "Void", "description": "Potential"}
    assert all(set(d) == {"level", "name", "description"} for d in body["dimensions"])
    error(api.request("POST", f"{API}/0x99/divide"), 404, "not_found")


def test_multiply(api):
    res = api.post(f"{API}/multiply", json={"dimension_values": [1, 1, 2, 3, 5, 8, 13, 21, 34]})
    assert res.status == 200
    assert res.json() == {
        "operation": "multiply",
        "unity_value": 2227680,
        "unity_hex": "0x000000000021FDE0",
        "dimensions_collapsed": 9,
    }


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ([], None),
        (["3"], "dimension_values[0]"),
        ([1, True], "dimension_values[1]"),
        ([None], "dimension_values[0]"),
        ("12", "dimension_values"),
    ],
)
def test_multiply_rejects(api, values, field):
    body = error(
        api.post(f"{API}/multiply", json={"dimension_values": values}), 422, "validation_error"
    )
    if field:
        assert body["details"]["field"] == field


def test_add_and_subtract(api):
    sid = create(api, "constant", "-7")["substrate_id"]
    res = api.post(f"{API}/{sid}/add", json={"value": 100})
    assert res.status == 200
    assert res.json() == {
        "substrate_id": sid,
        "operation": "add",
        "original_value": -7,
        "value": 100,
        "new_value": 93,
    }
    res = api.post(f"{API}/{sid}/subtract", json={"value": 3})
    assert res.json()["operation"] == "subtract"
    assert res.json()["original_value"] == -7
    assert res.json()["new_value"] == (-10) % 2**64


def test_add_with_parameters(api):
    sid = create(api)["substrate_id"]
    res = api.post(f"{API}/{sid}/add", json={"value": 1, "parameters": {"x": 5}})
    assert res.json()["original_value"] == 10
    assert res.json()["new_value"] == 11


@pytest.mark.parametrize("value", ["5", None, True, [1], {"v": 1}])
def test_operator_numbers_are_strict(api, value):
    sid = create(api, "constant", "1")["substrate_id"]
    body = error(api.post(f"{API}/{sid}/add", json={"value": value}), 422, "validation_error")
    assert body["details"]["field"] == "value"


def test_modulus(api):
    sid = create(api, "constant", "100")["substrate_id"]
    res = api.post(f"{API}/{sid}/modulus", json={"modulus": 7})
    assert res.status == 200
    assert res.json() == {
        "substrate_id": sid,
        "value": 100,
        "modulus": 7,
        "expressed": 2,
        "residue": 98,
    }
    neg = create(api, "constant", "-7")["substrate_id"]
    assert api.post(f"{API}/{neg}/modulus", json={"modulus": 3}).json()["expressed"] == 2
    for bad in (0, -3):
        assert api.post(f"{API}/{sid}/modulus", json={"modulus": bad}).status == 422


def test_power_and_root(api):
    sid = create(api, "constant", "3")["substrate_id"]
    res = api.post(f"{API}/{sid}/power", json={"exponent": 4})
    assert res.status == 200
    assert res.json() == {
        "substrate_id": sid,
        "operation": "power",
        "original_value": 3,
        "result_value": 81,
    }
    big = api.post(f"{API}/{sid}/power", json={"exponent": 2**64 - 1})
    assert big.status == 200, big
    assert big.json()["result_value"] == pow(3, 2**64 - 1, 2**64)
    assert api.post(f"{API}/{sid}/power", json={"exponent": 2**64}).status == 422
    assert api.post(f"{API}/{sid}/power", json={"exponent": -1}).status == 422
    sq = create(api, "constant", "81")["substrate_id"]
    res = api.post(f"{API}/{sq}/root", json={"degree": 2})
    assert res.json() == {
        "substrate_id": sq,
        "operation": "root",
        "original_value": 81,
        "result_value": 9,
    }
    neg = create(api, "constant", "-8")["substrate_id"]
    assert api.post(f"{API}/{neg}/root", json={"degree": 3}).status == 422
    assert api.post(f"{API}/{sq}/root", json={"degree": 0}).status == 422


def test_operator_on_a_non_number_is_422(api):
    sid = create(api, "expression", "'text'")["substrate_id"]
    assert api.post(f"{API}/{sid}/add", json={"value": 1}).status == 422


def test_operator_unknown_substrate_is_404(api):
    error(api.post(f"{API}/0xABC/add", json={"value": 1}), 404, "not_found")


def test_operator_body_required(api):
    sid = create(api, "constant", "1")["substrate_id"]
    body = error(api.request("POST", f"{API}/{sid}/modulus"), 422, "validation_error")
    assert body["details"]["field"] == "modulus"


# --- batches -------------------------------------------------------------------------------


def test_batch_create_reports_each_item_in_order(api):
    existing = create(api, "constant", "1")["substrate_id"]
    items = [
        {"expression_type": "constant", "expression_code": "2"},
        {"expression_type": "constant", "expression_code": "1"},
        {"expression_type": "lambda", "expression_code": "lambda: __import__('os')"},
        {"expression_type": "constant", "expression_code": "2"},
        {"expression_type": "expression", "expression_code": "x + 1", "metadata": {"k": 1}},
    ]
    res = api.post(f"{API}/batch", json={"substrates": items})
    assert res.status == 200
    results = res.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["status"] for r in results] == [201, 409, 422, 409, 201]
    assert results[1]["error"]["error"] == "duplicate"
    assert results[1]["error"]["details"]["substrate_id"] == existing
    assert set(results[2]["error"]) == {"error", "message", "details"}
    assert results[3]["error"]["details"]["substrate_id"] == results[0]["substrate_id"]
    assert "error" not in results[0]
    assert "substrate_id" not in results[2]
    got = api.get(f"{API}/{results[4]['substrate_id']}").json()
    assert got["metadata"] == {"k": 1}


def test_atomic_batch_failure_writes_nothing(api):
    items = [
        {"expression_type": "constant", "expression_code": "5"},
        {"expression_type": "lambda", "expression_code": "lambda: __import__('os')"},
    ]
    res = api.post(f"{API}/batch", json={"substrates": items, "atomic": True})
    body = error(res, 422, "batch_failed")
    failures = body["details"]["failures"]
    assert [f["index"] for f in failures] == [1]
    assert failures[0]["status"] == 422
    assert set(failures[0]["error"]) == {"error", "message", "details"}
    assert api.get(API).json()["substrates"] == []
    ok = api.post(f"{API}/batch", json={"substrates": items[:1], "atomic": True})
    assert ok.json()["results"][0]["status"] == 201


def test_batch_invoke(api):
    mul = create(api)["substrate_id"]
    const = create(api, "constant", "42")["substrate_id"]
    calls = [
        {"substrate_id": mul, "parameters": {"x": 4}},
        {"substrate_id": const},
        {"substrate_id": "not-an-id"},
        {"substrate_id": "0x1"},
        {"substrate_id": mul, "parameters": {}},
    ]
    res = api.post(f"{API}/batch/invoke", json={"invocations": calls})
    assert res.status == 200
    results = res.json()["results"]
    assert [r["status"] for r in results] == [200, 200, 422, 404, 422]
    assert results[0]["result"] == 8
    assert results[0]["substrate_id"] == mul
    assert results[0]["invocation_time_ms"] >= 0
    assert results[1]["result"] == 42
    assert results[2]["error"]["error"] == "invalid_id"
    assert results[2]["error"]["details"]["field"] == "invocations[2].substrate_id"
    assert results[3]["error"]["error"] == "not_found"
    assert results[4]["error"]["error"] == "invocation_error"


def test_batch_invoke_keeps_null_results(api):
    sid = create(api, "expression", "None")["substrate_id"]
    res = api.post(f"{API}/batch/invoke", json={"invocations": [{"substrate_id": sid}]})
    assert res.json()["results"] == [
        {
            "index": 0,
            "status": 200,
            "substrate_id": sid,
            "result": None,
            "invocation_time_ms": res.json()["results"][0]["invocation_time_ms"],
        }
    ]


def test_empty_batches(api):
    assert api.post(f"{API}/batch", json={"substrates": []}).json() == {"results": []}
    assert api.post(f"{API}/batch/invoke", json={"invocations": []}).json() == {"results": []}


# --- search and query -----------------------------------------------------------------------


def test_search_by_name_and_type(api):
    a = create(api, metadata={"name": "Multiply Two"})
    b = create(api, "constant", "2", metadata={"name": "two"})
    create(api, "constant", "3", metadata={"other": "two"})
    res = api.get(f"{API}/search", query={"name": "TWO"})
    assert res.status == 200
    body = res.json()
    assert set(body) == {"substrates", "count", "next_cursor"}
    assert body["next_cursor"] is None
    assert {r["substrate_id"] for r in body["substrates"]} == {a["substrate_id"], b["substrate_id"]}
    assert body["count"] == 2
    typed = api.get(f"{API}/search", query={"name": "two", "type": "constant"}).json()
    assert [r["substrate_id"] for r in typed["substrates"]] == [b["substrate_id"]]
    # DESIGN.md §6: count is the total number of matches, not the page length.
    one = api.get(f"{API}/search", query={"limit": 1}).json()
    assert len(one["substrates"]) == 1
    assert one["count"] == 3
    assert one["next_cursor"] is not None


def test_query_filters_and_sort(api):
    first = create(api, "constant", "1", metadata={"category": "math"})
    second = create(api, "constant", "2", metadata={"category": "math"})
    create(api, "lambda", "lambda: 3", metadata={"category": "art"})
    res = api.post(f"{API}/query", json={"filters": {"metadata.category": "math"}})
    assert res.status == 200
    body = res.json()
    assert body["count"] == 2
    assert [r["substrate_id"] for r in body["substrates"]] == [
        first["substrate_id"],
        second["substrate_id"],
    ]
    desc = api.post(
        f"{API}/query",
        json={"filters": {"expression_type": "constant"}, "sort": "-created_at", "limit": 1},
    ).json()
    assert [r["substrate_id"] for r in desc["substrates"]] == [second["substrate_id"]]
    after = api.post(
        f"{API}/query", json={"filters": {"created_after": first["created_at"]}}
    ).json()
    assert first["substrate_id"] not in {r["substrate_id"] for r in after["substrates"]}
    before = api.post(
        f"{API}/query", json={"filters": {"created_before": "2000-01-01T00:00:00Z"}}
    ).json()
    assert before == {"substrates": [], "count": 0, "next_cursor": None}


@pytest.mark.parametrize(
    "payload",
    [
        {"filters": {"colour": "red"}},
        {"sort": "name"},
        {"limit": 0},
        {"filters": {"created_after": "yesterday"}},
        {"filters": []},
    ],
)
def test_query_rejects(api, payload):
    assert error(api.post(f"{API}/query", json=payload), 422, "validation_error")
