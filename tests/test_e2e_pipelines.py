"""Pipelines end to end on a real ``bfx serve`` (Granian, two workers, SQLite): the
routes' success and error answers, ``409 in_use`` through the other worker, the nesting
bound's flag, one time budget over HTTP, batch invoke, export and import."""

from __future__ import annotations

import msgspec
import pytest

from bfx_server import Server, connections_to_each_worker, send_json

#: One modular power: about a millisecond (more on a loaded machine, less on a fast one).
SLOW = "pow(b, x, m)"
SLOW_PARAMS = {"b": 3, "x": 2**300 - 1, "m": 2**600 + 1}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipes")
    srv = Server(tmp, "--data-dir", str(tmp / "d"), "--workers", "2", "--pipeline-max-depth", "2")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def conns(server):
    found = connections_to_each_worker(server.port)
    yield found
    for conn in found:
        conn.close()


def create(conn, expression_type, code):
    status, body = send_json(conn, "POST", "/substrates",
                             {"expression_type": expression_type, "expression_code": code})  # fmt: skip
    if status == 409 and body["error"] == "duplicate":
        return body["details"]["substrate_id"]
    assert status == 201, body
    return body["substrate_id"]


def assert_error(status, body, want_status, code):
    assert status == want_status, body
    assert set(body) == {"error", "message", "details"}, body
    assert body["error"] == code, body
    assert isinstance(body["details"], dict)
    assert body["message"]


def test_compose_invoke_and_errors(server, conns):
    one, other = conns
    inc = create(one, "lambda", "lambda **kw: kw['x'] + 1")
    dbl = create(one, "expression", "y * 2")
    status, headers, raw = server.call(
        "POST", "/api/v1/substrates/compose",
        b'{"name": "inc then double", "pipeline": [{"substrate_id": "%s"}, '
        b'{"substrate_id": "%s", "as": "y"}]}' % (inc.lower().encode(), dbl.encode()),
        {"content-type": "application/json"},
    )  # fmt: skip
    assert status == 201, raw
    rec = msgspec.json.decode(raw)
    pid = rec["substrate_id"]
    assert headers["location"] == f"/api/v1/substrates/{pid}"
    assert rec["expression_type"] == "pipeline"
    assert rec["metadata"] == {"name": "inc then double"}
    assert rec["canonical_code"] == (
        f'{{"steps":[{{"substrate_id":"{inc}"}},{{"as":"y","substrate_id":"{dbl}"}}]}}'
    )
    # The same pipeline through POST /substrates: the same id, a 409 naming it.
    status, body = send_json(other, "POST", "/substrates",
                             {"expression_type": "pipeline", "expression_code": rec["canonical_code"]})  # fmt: skip
    assert_error(status, body, 409, "duplicate")
    assert body["details"]["substrate_id"] == pid
    # Invoked through either worker.
    for conn in conns:
        status, body = send_json(
            conn, "POST", f"/substrates/{pid}/invoke", {"parameters": {"x": 20}}
        )
        assert (status, body["result"]) == (200, 42), body
    # Its edges are in the graph.
    status, body = send_json(other, "GET", f"/relationships/outgoing/{pid}")
    assert status == 200
    assert body["count"] == 2
    assert {r["rel_type"] for r in body["relationships"]} == {"COMPOSITION"}
    # A failing step: 422 naming it.
    status, body = send_json(one, "POST", f"/substrates/{pid}/invoke", {"parameters": {}})
    assert_error(status, body, 422, "invocation_error")
    assert body["details"]["step"] == 0
    assert body["details"]["substrate_id"] == inc
    # Creation errors.
    for payload, want in [
        ({"pipeline": [{"substrate_id": inc}, {"substrate_id": "0xdead", "as": "y"}]}, "steps[1].substrate_id"),
        ({"pipeline": [{"substrate_id": inc, "as": "y"}]}, "steps[0].as"),
        ({"pipeline": [{"substrate_id": inc, "parameters": {"k": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}]}, None),
    ]:  # fmt: skip
        status, body = send_json(other, "POST", "/substrates/compose", payload)
        assert_error(status, body, 422, "validation_error")
        if want is not None:
            assert body["details"]["field"] == want, body
    for payload in [
        {"pipeline": []},
        {"pipeline": [{"substrate_id": inc, "as": "not a name"}]},
        {"pipeline": [{"substrate_id": "xyz"}]},
        {"pipeline": [{"substrate_id": inc}], "aggregate": "max"},
        {"pipeline": [{"substrate_id": inc}], "bogus": 1},
        {"pipeline": [{"substrate_id": inc}] * 101},
        {"name": "no steps"},
    ]:
        status, body = send_json(one, "POST", "/substrates/compose", payload)
        assert status == 422, (payload, body)
        assert set(body) == {"error", "message", "details"}
    status, body = send_json(one, "POST", "/substrates",
                             {"expression_type": "pipeline", "expression_code": "{not json"})  # fmt: skip
    assert_error(status, body, 422, "validation_error")


def test_in_use_holds_across_workers(conns):
    one, other = conns
    step = create(one, "constant", "7")
    status, pipe = send_json(one, "POST", "/substrates/compose",
                             {"pipeline": [{"substrate_id": step}, {"substrate_id": step}], "aggregate": "sum"})  # fmt: skip
    assert status == 201, pipe
    pid = pipe["substrate_id"]
    # Deleted through the other worker: refused, naming the pipeline.
    status, body = send_json(other, "DELETE", f"/substrates/{step}")
    assert_error(status, body, 409, "in_use")
    assert body["details"] == {"substrate_id": step, "pipelines": [pid], "count": 1}
    # Its edge cannot be deleted alone either.
    status, body = send_json(other, "GET", f"/relationships/outgoing/{pid}")
    rid = body["relationships"][0]["relationship_id"]
    status, body = send_json(one, "DELETE", f"/relationships/{rid}")
    assert_error(status, body, 409, "in_use")
    assert send_json(other, "POST", f"/substrates/{pid}/invoke", {})[1]["result"] == 14
    # The pipeline goes (through one worker), then the step may (through the other).
    assert send_json(other, "DELETE", f"/substrates/{pid}")[0] == 204
    status, body = send_json(one, "POST", f"/substrates/{pid}/invoke", {})
    assert_error(status, body, 404, "not_found")
    assert send_json(one, "DELETE", f"/substrates/{step}")[0] == 204


def test_nesting_bound_from_the_flag(conns):
    one, other = conns
    leaf = create(one, "constant", "3")
    status, first = send_json(
        one, "POST", "/substrates/compose", {"pipeline": [{"substrate_id": leaf}]}
    )
    assert status == 201, first
    status, second = send_json(other, "POST", "/substrates/compose",
                               {"pipeline": [{"substrate_id": first["substrate_id"]}], "aggregate": "list"})  # fmt: skip
    assert status == 201, second
    status, body = send_json(one, "POST", "/substrates/compose",
                             {"pipeline": [{"substrate_id": second["substrate_id"]}]})  # fmt: skip
    assert_error(status, body, 422, "limit_exceeded")
    assert body["details"]["reason"] == "too_deep"
    assert body["details"]["limit"] == 2
    status, body = send_json(other, "POST", f"/substrates/{second['substrate_id']}/invoke", {})
    assert (status, body["result"]) == (200, [3])


def test_one_budget_over_http_and_batches(conns):
    one, other = conns
    slow = create(one, "expression", SLOW)
    status, inner = send_json(one, "POST", "/substrates/compose",
                              {"pipeline": [{"substrate_id": slow}] * 100, "aggregate": "sum"})  # fmt: skip
    assert status == 201, inner
    status, pipe = send_json(one, "POST", "/substrates/compose",
                             {"pipeline": [{"substrate_id": inner["substrate_id"]}] * 100})  # fmt: skip
    assert status == 201, pipe
    pid = pipe["substrate_id"]
    # 100 x 100 steps of about a millisecond each: far past the default 100 ms budget
    # of one invocation, which each step alone fits.
    status, body = send_json(
        other, "POST", f"/substrates/{pid}/invoke", {"parameters": SLOW_PARAMS}
    )
    assert_error(status, body, 422, "invocation_error")
    assert body["details"]["reason"] == "timeout"
    assert body["details"]["limit_ms"] == 100
    status, body = send_json(one, "POST", f"/substrates/{slow}/invoke", {"parameters": SLOW_PARAMS})
    assert status == 200, body
    # The worker still answers, and a batch mixes pipelines with plain substrates.
    three = create(one, "constant", "3")
    status, small = send_json(one, "POST", "/substrates/compose",
                              {"pipeline": [{"substrate_id": three}, {"substrate_id": three}], "aggregate": "product"})  # fmt: skip
    assert status == 201, small
    status, body = send_json(other, "POST", "/substrates/batch/invoke", {"invocations": [
        {"substrate_id": small["substrate_id"]},
        {"substrate_id": three},
        {"substrate_id": pid, "parameters": SLOW_PARAMS},
    ]})  # fmt: skip
    assert status == 200, body
    items = body["results"]
    assert [i["status"] for i in items] == [200, 200, 422]
    assert [items[0]["result"], items[1]["result"]] == [9, 3]
    assert items[2]["error"]["details"]["reason"] == "timeout"


def test_export_and_import_round_trip(server, conns, tmp_path):
    one, _ = conns
    base = create(one, "lambda", "lambda **kw: kw.get('v', 1) * 10")
    status, inner = send_json(one, "POST", "/substrates/compose",
                              {"pipeline": [{"substrate_id": base}, {"substrate_id": base, "as": "v"}]})  # fmt: skip
    assert status == 201, inner
    status, _, exported = server.call("GET", "/api/v1/substrates/export?format=ndjson")
    assert status == 200
    copy = Server(tmp_path, "--memory")
    try:
        status, _, raw = copy.call("POST", "/api/v1/substrates/import", exported,
                                   {"content-type": "application/x-ndjson"})  # fmt: skip
        assert status == 200, raw
        status, body = copy.json("POST", f"/api/v1/substrates/{inner['substrate_id']}/invoke", {})
        assert (status, body["result"]) == (200, 100), body
        status, body = copy.json("DELETE", f"/api/v1/substrates/{base}")
        assert status == 409
        assert body["error"] == "in_use"
    finally:
        copy.stop()
