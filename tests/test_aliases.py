"""Aliases (DESIGN §9, docs/domain.md "Aliases"): put, get, delete and invoke end to
end against a real ``bfx serve`` on each store, following a chain's head, the name
rules, an alias whose substrate was deleted, and two workers seeing a change at once."""

from __future__ import annotations

import pytest

from bfx import Registry, errors
from bfx_server import STORES, Server, connections_to_each_worker, send_json, store_args


@pytest.fixture(scope="module", params=STORES)
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"aliases-{request.param}")
    srv = Server(tmp, *store_args(request, tmp))
    yield srv
    srv.stop()


_made = iter(range(10**6))


def _create(server) -> str:
    code = f"lambda x=1: x * {2000 + next(_made)}"
    status, rec = server.json(
        "POST", "/api/v1/substrates", {"expression_type": "lambda", "expression_code": code}
    )
    assert status == 201, rec
    return rec["substrate_id"]


def _put(server, name: str, sid: str):
    return server.json("PUT", f"/api/v1/aliases/{name}", {"substrate_id": sid})


def _invoke(server, name: str, parameters=None):
    return server.json("POST", f"/api/v1/aliases/{name}/invoke", {"parameters": parameters})


def test_put_get_invoke_delete(server):
    sid = _create(server)
    status, rec = _put(server, "prod.double-v1_x", sid.lower())
    assert status == 200, rec
    assert rec["name"] == "prod.double-v1_x"
    assert rec["substrate_id"] == sid
    assert rec["target_id"] == sid
    status, got = server.json("GET", "/api/v1/aliases/prod.double-v1_x")
    assert (status, got) == (200, rec)
    direct = server.json("POST", f"/api/v1/substrates/{sid}/invoke", {"parameters": {"x": 3}})[1]
    status, via = _invoke(server, "prod.double-v1_x", {"x": 3})
    assert status == 200
    assert via["substrate_id"] == sid
    assert via["result"] == direct["result"]
    # Pointing it elsewhere replaces it.
    other = _create(server)
    assert _put(server, "prod.double-v1_x", other)[1]["target_id"] == other
    assert _invoke(server, "prod.double-v1_x")[1]["substrate_id"] == other
    assert server.json("DELETE", "/api/v1/aliases/prod.double-v1_x") == (204, None)
    status, err = server.json("GET", "/api/v1/aliases/prod.double-v1_x")
    assert (status, err["error"]) == (404, "not_found")
    assert _invoke(server, "prod.double-v1_x")[0] == 404
    assert server.json("DELETE", "/api/v1/aliases/prod.double-v1_x")[0] == 404


def test_an_alias_follows_its_chain_head(server):
    v1 = _create(server)
    _put(server, "follows", v1)
    status, v2 = server.json(
        "POST", f"/api/v1/substrates/{v1}/versions", {"expression_code": "lambda x=1: x - 1"}
    )
    assert status == 201, v2
    v2 = v2["substrate_id"]
    assert server.json("GET", "/api/v1/aliases/follows")[1]["target_id"] == v2
    status, via = _invoke(server, "follows", {"x": 10})
    assert (via["substrate_id"], via["result"]) == (v2, 9)
    server.json("POST", f"/api/v1/substrates/{v2}/rollback/{v1}")
    rec = server.json("GET", "/api/v1/aliases/follows")[1]
    assert (rec["substrate_id"], rec["target_id"]) == (v1, v1)
    assert _invoke(server, "follows")[1]["substrate_id"] == v1
    # An alias pointed at a later member follows the same chain.
    _put(server, "follows2", v2)
    assert _invoke(server, "follows2")[1]["substrate_id"] == v1


def test_an_alias_to_a_deleted_substrate_answers_alias_target_deleted(server):
    sid = _create(server)
    _put(server, "gone", sid)
    assert server.json("DELETE", f"/api/v1/substrates/{sid}")[0] == 204
    status, err = _invoke(server, "gone", {"x": 1})
    assert status == 404
    assert err["error"] == "alias_target_deleted"
    assert err["details"] == {"name": "gone", "substrate_id": sid}
    status, rec = server.json("GET", "/api/v1/aliases/gone")
    assert status == 200
    assert (rec["substrate_id"], rec["target_id"]) == (sid, None)
    # It can be pointed elsewhere (or removed) as usual.
    other = _create(server)
    assert _put(server, "gone", other)[0] == 200
    assert _invoke(server, "gone")[0] == 200
    assert server.json("DELETE", "/api/v1/aliases/gone")[0] == 204


@pytest.mark.parametrize(
    "name",
    ["-lead", ".lead", "a%20b", "x" * 65, "caf%C3%A9", "semi;colon", "a%2C", "%00"],
)
def test_names_outside_the_rule_are_refused(server, name):
    sid = _create(server)
    status, err = _put(server, name, sid)
    assert status == 422, (name, err)
    assert err["error"] == "validation_error"
    assert err["details"]["field"] == "name"


def test_the_longest_name_is_accepted(server):
    name = "A9" + "z" * 62
    assert _put(server, name, _create(server))[0] == 200
    assert server.json("GET", f"/api/v1/aliases/{name}")[0] == 200


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"substrate_id": "0x1"}, 404, "not_found"),
        ({"substrate_id": "nothex"}, 422, "invalid_id"),
        ({}, 422, "validation_error"),
        ({"substrate_id": "0x1", "more": 1}, 422, "validation_error"),
    ],
)
def test_put_refusals(server, body, status, error):
    got, err = server.json("PUT", "/api/v1/aliases/refused", body)
    assert (got, err["error"]) == (status, error), err
    assert server.json("GET", "/api/v1/aliases/refused")[0] == 404


def test_invoke_refusals(server):
    _put(server, "inv", _create(server))
    status, err = _invoke(server, "inv", {"y": 1})
    assert (status, err["error"]) == (422, "invocation_error")
    status, err = server.json("POST", "/api/v1/aliases/inv/invoke", {"parameters": [1]})
    assert status == 422
    status, err = _invoke(server, "never-set")
    assert (status, err["error"]) == (404, "not_found")


@pytest.mark.e2e
def test_two_workers_see_an_alias_change_at_once(tmp_path):
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "d"), "--workers", "2")
    try:
        conns = connections_to_each_worker(srv.port)
        ids = []
        for i in range(3):
            status, rec = send_json(conns[0], "POST", "/substrates",
                                    {"expression_type": "constant", "expression_code": str(i)})  # fmt: skip
            assert status == 201
            ids.append(rec["substrate_id"])
        for i in range(9):
            writer, reader = conns[i % 2], conns[(i + 1) % 2]
            assert (
                send_json(writer, "PUT", "/aliases/shared", {"substrate_id": ids[i % 3]})[0] == 200
            )
            status, got = send_json(reader, "POST", "/aliases/shared/invoke", {})
            assert (status, got["result"]) == (200, i % 3)
        assert send_json(conns[0], "DELETE", "/aliases/shared")[0] == 204
        assert send_json(conns[1], "GET", "/aliases/shared")[0] == 404
        for conn in conns:
            conn.close()
    finally:
        srv.stop()


def test_every_durable_store_logs_aliases(store_locator):
    a = Registry(storage=store_locator)
    b = Registry(storage=store_locator)
    try:
        one = a.create("constant", "1").identity
        two = a.create("constant", "2").identity
        a.put_alias("n", one)
        b.refresh()
        assert b.invoke_alias("n").result == 1
        b.put_alias("n", two)
        a.refresh()
        assert a.get_alias("n").substrate == two
        a.delete_alias("n")
        b.refresh()
        with pytest.raises(errors.NotFoundError):
            b.get_alias("n")
        b.put_alias("kept", one)
    finally:
        a.close()
        b.close()
    with Registry(storage=store_locator) as again:
        assert again.invoke_alias("kept").result == 1
        with pytest.raises(errors.ValidationError):
            again.put_alias("", one)
