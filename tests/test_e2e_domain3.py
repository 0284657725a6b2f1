"""Versions, aliases and lenses across processes (DESIGN §9): they survive a restart
and ``kill -9`` of a real ``bfx serve``, and round-trip through export and import into
an empty store, an older export document importing as before."""

from __future__ import annotations

import msgspec
import pytest

from bfx_server import Server

pytestmark = pytest.mark.e2e

API = "/api/v1"


def _populate(srv: Server) -> dict:
    """A chain of three versions rolled back to the second, an alias on it, a lens."""
    status, v1 = srv.json(
        "POST", f"{API}/substrates",
        {"expression_type": "lambda", "expression_code": "lambda x=2: x * 100",
         "metadata": {"name": "hundredfold"}},
    )  # fmt: skip
    assert status == 201, v1
    v1 = v1["substrate_id"]
    status, v2 = srv.json(
        "POST", f"{API}/substrates/{v1}/versions",
        {"expression_code": "lambda x=2: x * 200", "change_description": "double it"},
    )  # fmt: skip
    assert status == 201, v2
    v2 = v2["substrate_id"]
    status, v3 = srv.json(
        "POST", f"{API}/substrates/{v2}/versions", {"expression_code": "lambda x=2: x * 300"}
    )
    v3 = v3["substrate_id"]
    assert srv.json("POST", f"{API}/substrates/{v3}/rollback/{v2}")[0] == 200
    assert srv.json("PUT", f"{API}/aliases/hundred", {"substrate_id": v1})[0] == 200
    status, lens = srv.json(
        "POST", f"{API}/lenses",
        {"name": "low-byte", "expression_code": "z & m", "parameters": {"m": 255},
         "description": "the low byte"},
    )  # fmt: skip
    assert status == 201, lens
    # A second, unrelated substrate and an alias to it.
    status, c = srv.json(
        "POST", f"{API}/substrates", {"expression_type": "constant", "expression_code": "4242"}
    )
    assert srv.json("PUT", f"{API}/aliases/answer", {"substrate_id": c["substrate_id"]})[0] == 200
    return {"v1": v1, "v2": v2, "v3": v3, "c": c["substrate_id"]}


def _state(srv: Server, ids: dict) -> dict:
    """What a client sees of the chain, the aliases and the lenses."""
    return {
        "versions": srv.json("GET", f"{API}/substrates/{ids['v3']}/versions")[1],
        "hundred": srv.json("GET", f"{API}/aliases/hundred")[1],
        "answer": srv.json("GET", f"{API}/aliases/answer")[1],
        "via": srv.json("POST", f"{API}/aliases/hundred/invoke", {"parameters": {"x": 3}})[1][
            "result"
        ],
        "lenses": srv.json("GET", f"{API}/lenses")[1],
        "applied": srv.json(
            "POST", f"{API}/substrates/{ids['c']}/apply-lens", {"lens_name": "low-byte"}
        )[1],
        "lineage": sorted(
            (e["source_id"], e["target_id"], msgspec.json.encode(e["constraints"]))
            for m in ("v1", "v2")
            for e in srv.json("GET", f"{API}/relationships/outgoing/{ids[m]}")[1]["relationships"]
        ),
    }


def _check(state: dict, ids: dict) -> None:
    assert state["versions"]["head"] == ids["v2"]
    assert [v["substrate_id"] for v in state["versions"]["versions"]] == [
        ids["v1"],
        ids["v2"],
        ids["v3"],
    ]
    assert [h["action"] for h in state["versions"]["history"]] == [
        "created",
        "version",
        "version",
        "rollback",
    ]
    assert state["hundred"]["target_id"] == ids["v2"]
    assert state["via"] == 600
    assert state["applied"]["result"] == 4242 & 255
    assert [lens["name"] for lens in state["lenses"]["lenses"]][-1] == "low-byte"
    assert len(state["lineage"]) == 2


def test_chains_aliases_and_lenses_survive_kill_9_and_restart(tmp_path):
    data = str(tmp_path / "d")
    srv = Server(tmp_path, "--data-dir", data, "--workers", "2")
    try:
        ids = _populate(srv)
        before = _state(srv, ids)
        _check(before, ids)
    finally:
        srv.kill()  # SIGKILL: no snapshot, no clean close
    srv = Server(tmp_path, "--data-dir", data)
    try:
        assert _state(srv, ids) == before
        # A move after the crash, then a clean stop (the arena snapshot is written).
        assert srv.json("POST", f"{API}/substrates/{ids['v1']}/rollback/{ids['v3']}")[0] == 200
        moved = _state(srv, ids)
        assert moved["hundred"]["target_id"] == ids["v3"]
    finally:
        srv.stop()
    srv = Server(tmp_path, "--data-dir", data)  # from the snapshot, the catalog reloaded
    try:
        assert _state(srv, ids) == moved
    finally:
        srv.stop()


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_export_import_round_trip_into_an_empty_store(tmp_path, fmt):
    a = Server(tmp_path, "--data-dir", str(tmp_path / "a"))
    b = Server(tmp_path, "--memory")
    try:
        ids = _populate(a)
        status, _, body = a.call("GET", f"{API}/substrates/export?format={fmt}")
        assert status == 200
        ctype = "application/json" if fmt == "json" else "application/x-ndjson"
        status, _, raw = b.call("POST", f"{API}/substrates/import", body, {"content-type": ctype})
        assert status == 200, raw
        assert msgspec.json.decode(raw) == {
            "imported_substrates": 4,
            "imported_relationships": 2,
            "skipped": 0,
            "imported_chains": 1,
            "imported_aliases": 2,
            "imported_lenses": 1,
        }
        _check(_state(b, ids), ids)
        assert _state(b, ids) == _state(a, ids)
        # Importing again changes nothing: every record is already there.
        status, _, raw = b.call("POST", f"{API}/substrates/import", body, {"content-type": ctype})
        assert msgspec.json.decode(raw) == {
            "imported_substrates": 0,
            "imported_relationships": 0,
            "skipped": 10,
        }
    finally:
        a.stop()
        b.stop()


def test_import_refuses_inconsistent_chains_and_keeps_old_documents(tmp_path):
    srv = Server(tmp_path, "--memory")
    try:
        old = {
            "substrates": [{"expression_type": "constant", "expression_code": "7"}],
            "relationships": [],
        }
        status, answer = srv.json("POST", f"{API}/substrates/import", old)
        assert (status, answer) == (
            200,
            {"imported_substrates": 1, "imported_relationships": 0, "skipped": 0},
        )
        seven = srv.json("GET", f"{API}/substrates")[1]["substrates"][0]["substrate_id"]
        when = "2026-01-01T00:00:00Z"
        chain = {
            "chain_id": seven,
            "head": seven,
            "versions": [
                {"substrate_id": seven, "version": 1, "created_at": when},
                {"substrate_id": "0x1", "version": 2, "created_at": when},
            ],
            "history": [{"entry": 1, "head": seven, "action": "created", "created_at": when}],
        }
        # A member that does not exist.
        status, err = srv.json("POST", f"{API}/substrates/import", {"chains": [chain]})
        assert (status, err["error"], err["details"]["index"]) == (404, "not_found", 0)
        # Versions out of order, a head outside the chain, unknown actions.
        for broken in (
            {**chain, "versions": chain["versions"][::-1]},
            {**chain, "head": "0x2"},
            {**chain, "history": [{**chain["history"][0], "action": "teleport"}]},
        ):
            status, err = srv.json("POST", f"{API}/substrates/import", {"chains": [broken]})
            assert status == 422, err
        status, err = srv.json(
            "POST", f"{API}/substrates/import", {"aliases": [{"name": "-x", "substrate_id": seven}]}
        )
        assert status == 422, err
        status, err = srv.json(
            "POST", f"{API}/substrates/import",
            {"lenses": [{"name": "evil", "expression_code": "__import__('os')"}]},
        )  # fmt: skip
        assert (status, err["error"]) == (422, "sandbox_rejected")
        assert srv.json("GET", f"{API}/lenses/evil")[0] == 404
        assert srv.json("GET", f"{API}/substrates/{seven}/versions")[1]["versions"] == [
            {
                "version": 1,
                "substrate_id": seven,
                "change_description": None,
                "created_at": srv.json("GET", f"{API}/substrates/{seven}")[1]["created_at"],
            }
        ]
    finally:
        srv.stop()


def test_the_services_answer_what_http_answers():
    """``bfx.services`` (versions, aliases, lenses) gives in process exactly the HTTP
    answers and errors."""
    from asgi_driver import finish, started
    from bfx import errors
    from bfx.services import local_services

    def plain(answer):
        return msgspec.json.decode(msgspec.json.encode(answer))

    api = started()
    try:
        svc = local_services(
            api.app.registry, max_answer_bytes=None, batch_time_budget=None, request_metrics=dict
        )
        sid = api.post(
            f"{API}/substrates", json={"expression_type": "lambda", "expression_code": "lambda: 5"}
        ).json()["substrate_id"]
        made = svc.versions.create(int(sid, 16), "lambda: 6", "six")
        assert made.version == 2
        assert (
            plain(svc.versions.list(int(sid, 16)))
            == api.get(f"{API}/substrates/{sid}/versions").json()
        )
        moved = plain(svc.versions.rollback(int(sid, 16), int(sid, 16)))
        assert moved == api.get(f"{API}/substrates/{sid}/versions").json()
        assert plain(svc.aliases.put("five", sid)) == api.get(f"{API}/aliases/five").json()
        assert svc.aliases.invoke("five").result == 5
        assert plain(svc.lenses.list()) == api.get(f"{API}/lenses").json()
        assert plain(svc.lenses.get("mask")) == api.get(f"{API}/lenses/mask").json()
        applied = svc.lenses.apply(int(sid, 16), "mask", {"mask": 4})
        http = api.post(f"{API}/substrates/{sid}/apply-lens",
                        json={"lens_name": "mask", "parameters": {"mask": 4}})  # fmt: skip
        assert plain(applied) == http.json()
        for call, http in (
            (lambda: svc.aliases.get("absent"), api.get(f"{API}/aliases/absent")),
            (lambda: svc.lenses.delete("identity"), api.delete(f"{API}/lenses/identity")),
            (
                lambda: svc.versions.rollback(int(sid, 16), 1),
                api.post(f"{API}/substrates/{sid}/rollback/0x1"),
            ),
        ):
            with pytest.raises(errors.BfxError) as info:
                call()
            assert info.value.to_dict() == http.json()
            assert info.value.status == http.status
    finally:
        finish(api)
