"""Version chains (DESIGN §9, docs/domain.md "Versions"): create_version, versions and
rollback end to end against a real ``bfx serve`` on each store, two workers seeing
moves at once, and the stores following the change log (op 8)."""

from __future__ import annotations

import threading

import pytest

from bfx import Registry, errors
from bfx.storage.catalog import OP_CHAIN
from bfx_server import STORES, Server, connections_to_each_worker, send_json, store_args

LAMBDA = {"expression_type": "lambda", "expression_code": "lambda x: x + 1"}


@pytest.fixture(scope="module", params=STORES)
def server(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"versions-{request.param}")
    srv = Server(tmp, *store_args(request, tmp))
    yield srv
    srv.stop()


_made = iter(range(10**6))


def _create(server, code: str | None = None, metadata=None) -> str:
    body = dict(LAMBDA)
    body["expression_code"] = code or f"lambda x: x + {1000 + next(_made)}"
    if metadata is not None:
        body["metadata"] = metadata
    status, rec = server.json("POST", "/api/v1/substrates", body)
    assert status == 201, rec
    return rec["substrate_id"]


def _version(server, sid: str, code: str, description=None):
    body = {"expression_code": code}
    if description is not None:
        body["change_description"] = description
    return server.json("POST", f"/api/v1/substrates/{sid}/versions", body)


def test_a_version_is_a_new_substrate_linked_by_lineage_and_made_head(server):
    v1 = _create(server, "lambda x: x * 10", {"name": "tenfold"})
    status, headers, _ = server.call(
        "POST",
        f"/api/v1/substrates/{v1}/versions",
        b'{"expression_code": "lambda x: x * 11", "change_description": "eleven"}',
        {"content-type": "application/json"},
    )
    assert status == 201
    v2 = headers["location"].rsplit("/", 1)[1]
    status, rec = server.json("GET", f"/api/v1/substrates/{v2}")
    assert status == 200
    assert rec["expression_type"] == "lambda"
    assert rec["metadata"] == {"name": "tenfold"}  # same type and metadata
    # The third version is made through the second: linked from the chain's latest.
    status, third = _version(server, v2, "lambda x: x * 12")
    assert status == 201, third
    assert third["version"] == 3
    assert third["chain_id"] == v1
    assert third["change_description"] is None
    assert third["metadata"] == {"name": "tenfold"}
    v3 = third["substrate_id"]
    status, out = server.json("GET", f"/api/v1/relationships/outgoing/{v1}")
    lineage = [e for e in out["relationships"] if e["rel_type"] == "LINEAGE"]
    assert [(e["target_id"], e["constraints"]) for e in lineage] == [
        (v2, {"change_description": "eleven"})
    ]
    status, out = server.json("GET", f"/api/v1/relationships/outgoing/{v2}")
    assert [e["target_id"] for e in out["relationships"]] == [v3]
    # Any member answers the same chain, oldest first, head the newest.
    answers = [server.json("GET", f"/api/v1/substrates/{m}/versions")[1] for m in (v1, v2, v3)]
    assert answers[0] == answers[1] == answers[2]
    chain = answers[0]
    assert chain["head"] == v3
    assert chain["chain_id"] == v1
    assert [(v["version"], v["substrate_id"]) for v in chain["versions"]] == [
        (1, v1),
        (2, v2),
        (3, v3),
    ]
    assert [v["change_description"] for v in chain["versions"]] == [None, "eleven", None]
    assert [(h["action"], h["head"]) for h in chain["history"]] == [
        ("created", v1),
        ("version", v2),
        ("version", v3),
    ]


def test_rollback_moves_the_head_and_is_recorded(server):
    v1 = _create(server)
    v2 = _version(server, v1, "lambda x: x - 1")[1]["substrate_id"]
    status, chain = server.json("POST", f"/api/v1/substrates/{v2}/rollback/{v1}")
    assert status == 200, chain
    assert chain["head"] == v1
    assert [h["action"] for h in chain["history"]] == ["created", "version", "rollback"]
    assert chain["history"][-1]["head"] == v1
    # Forward again, through the other member; the versions themselves never change.
    status, chain = server.json("POST", f"/api/v1/substrates/{v1}/rollback/{v2}")
    assert chain["head"] == v2
    assert len(chain["history"]) == 4
    assert [v["substrate_id"] for v in chain["versions"]] == [v1, v2]
    # A new version after a rollback follows the latest version, not the head.
    server.json("POST", f"/api/v1/substrates/{v1}/rollback/{v1}")
    status, v3 = _version(server, v1, "lambda x: x - 2")
    assert v3["version"] == 3
    status, into = server.json("GET", f"/api/v1/relationships/incoming/{v3['substrate_id']}")
    assert [e["source_id"] for e in into["relationships"]] == [v2]


def test_a_substrate_in_no_chain_is_a_chain_of_one(server):
    sid = _create(server)
    status, chain = server.json("GET", f"/api/v1/substrates/{sid}/versions")
    assert status == 200
    assert chain["head"] == sid
    assert chain["chain_id"] == sid
    assert [(v["version"], v["substrate_id"]) for v in chain["versions"]] == [(1, sid)]
    # Rolling back to itself moves nothing; to anything else is outside the chain.
    assert server.json("POST", f"/api/v1/substrates/{sid}/rollback/{sid}")[0] == 200
    other = _create(server)
    status, err = server.json("POST", f"/api/v1/substrates/{sid}/rollback/{other}")
    assert (status, err["error"], err["details"]["reason"]) == (
        422,
        "validation_error",
        "not_in_chain",
    )


def test_rollback_to_a_substrate_outside_the_chain_is_refused(server):
    v1 = _create(server)
    v2 = _version(server, v1, "lambda x: x * 3 + 1")[1]["substrate_id"]
    stranger = _create(server)
    # Another chain's member is outside too.
    elsewhere = _version(server, stranger, "lambda x: x * 3 + 2")[1]["substrate_id"]
    for target in (stranger, elsewhere, "0x1234"):
        status, err = server.json("POST", f"/api/v1/substrates/{v2}/rollback/{target}")
        assert status == 422, err
        assert err["details"] == {
            "reason": "not_in_chain",
            "chain_id": v1,
            "version_id": err["details"]["version_id"],
        }
    assert server.json("GET", f"/api/v1/substrates/{v1}/versions")[1]["head"] == v2
    assert server.json("GET", f"/api/v1/substrates/{stranger}/versions")[1]["head"] == elsewhere


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        ("/api/v1/substrates/0x1/versions", {"expression_code": "lambda x: x"}, 404, "not_found"),
        ("/api/v1/substrates/xyz/versions", {"expression_code": "lambda x: x"}, 400, "invalid_id"),
        ("/api/v1/substrates/{sid}/versions", {}, 422, "validation_error"),
        ("/api/v1/substrates/{sid}/versions", {"expression_code": 5}, 422, "validation_error"),
        (
            "/api/v1/substrates/{sid}/versions",
            {"expression_code": "lambda x: __import__('os')"},
            422,
            "sandbox_rejected",
        ),
        (
            "/api/v1/substrates/{sid}/versions",
            {"expression_code": "lambda x: x + 2", "change_description": "d" * 1001},
            422,
            "validation_error",
        ),
        (
            "/api/v1/substrates/{sid}/versions",
            {"expression_code": "lambda x: x + 2", "extra": 1},
            422,
            "validation_error",
        ),
        ("/api/v1/substrates/0x1/rollback/0x2", None, 404, "not_found"),
        ("/api/v1/substrates/{sid}/rollback/nothex", None, 400, "invalid_id"),
        ("/api/v1/substrates/0x1/versions", None, 404, "not_found"),
    ],
)
def test_refusals(server, path, body, status, error):
    sid = _create(server)
    method = "GET" if body is None and path.endswith("versions") else "POST"
    got, err = server.json(method, path.replace("{sid}", sid), body)
    assert (got, err["error"]) == (status, error), err
    assert set(err) == {"error", "message", "details"}


def test_the_same_code_as_a_member_names_its_version(server):
    v1 = _create(server)
    code = server.json("GET", f"/api/v1/substrates/{v1}")[1]["expression_code"]
    v2 = _version(server, v1, "lambda x: x * 7 + 7")[1]["substrate_id"]
    # The same code spelt differently has the same canonical form, so the same id.
    for spelling, version, member in (
        ("lambda x:x*7+7", 2, v2),
        (code.replace(" ", "  "), 1, v1),
    ):
        status, err = _version(server, v2, spelling)
        assert status == 409, err
        assert err["error"] == "duplicate"
        assert err["details"]["version"] == version
        assert err["details"]["substrate_id"] == member
        assert "roll back" in err["message"]
    # Code that is another substrate outside the chain: a plain duplicate.
    outside = _create(server, "lambda x: x * 7 + 8")
    status, err = _version(server, v2, "lambda x: x * 7 + 8")
    assert (status, err["details"]) == (409, {"substrate_id": outside})
    assert len(server.json("GET", f"/api/v1/substrates/{v1}/versions")[1]["versions"]) == 2


def test_members_of_a_chain_cannot_be_deleted(server):
    v1 = _create(server)
    v2 = _version(server, v1, "lambda x: x * 5 + 5")[1]["substrate_id"]
    for member in (v1, v2):
        status, err = server.json("DELETE", f"/api/v1/substrates/{member}")
        assert status == 409, err
        assert err["error"] == "in_use"
        assert err["details"] == {"chain_id": v1, "substrate_id": member}
        assert server.json("GET", f"/api/v1/substrates/{member}")[0] == 200
    # A substrate in no chain is deleted as always.
    lone = _create(server)
    assert server.json("DELETE", f"/api/v1/substrates/{lone}")[0] == 204


# ---- two workers ------------------------------------------------------------------


@pytest.mark.e2e
def test_two_workers_see_moves_and_rollbacks_at_once(tmp_path):
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "d"), "--workers", "2")
    try:
        conns = connections_to_each_worker(srv.port)
        status, rec = send_json(conns[0], "POST", "/substrates", LAMBDA)
        assert status == 201, rec
        v1 = rec["substrate_id"]
        members = [v1]
        for i in range(4):  # versions made alternately through each worker
            status, made = send_json(
                conns[i % 2], "POST", f"/substrates/{v1}/versions",
                {"expression_code": f"lambda x: x + {i + 2}"},
            )  # fmt: skip
            assert status == 201, made
            assert made["version"] == i + 2
            members.append(made["substrate_id"])
            # The other worker, on its very next request, sees the new head.
            status, chain = send_json(conns[(i + 1) % 2], "GET", f"/substrates/{v1}/versions")
            assert chain["head"] == made["substrate_id"]
        for i in range(12):  # a rollback through one, read through the other
            target = members[i % len(members)]
            writer, reader = conns[i % 2], conns[(i + 1) % 2]
            assert send_json(writer, "POST", f"/substrates/{v1}/rollback/{target}")[0] == 200
            status, chain = send_json(reader, "GET", f"/substrates/{members[-1]}/versions")
            assert chain["head"] == target
            assert len(chain["history"]) == 5 + i + 1
        # Versions made at once through both workers get distinct numbers, each linked
        # from the one before.
        results: list = []

        def make(worker: int) -> None:
            for j in range(5):
                results.append(
                    send_json(
                        conns[worker],
                        "POST",
                        f"/substrates/{v1}/versions",
                        {"expression_code": f"lambda x: x * {worker * 10 + j + 2}"},
                    )
                )

        threads = [threading.Thread(target=make, args=(w,)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r[0] for r in results] == [201] * 10
        chains = [send_json(c, "GET", f"/substrates/{v1}/versions")[1] for c in conns]
        assert chains[0] == chains[1]
        assert [v["version"] for v in chains[0]["versions"]] == list(range(1, 16))
        for conn in conns:
            conn.close()
    finally:
        srv.stop()


# ---- stores ---------------------------------------------------------------------


def test_every_durable_store_logs_chain_moves(store_locator):
    """SQLite and PostgreSQL: another process follows versions and rollbacks on its
    next refresh (one op-8 entry per move), and a restart keeps the chain."""
    a = Registry(storage=store_locator)
    b = Registry(storage=store_locator)
    try:
        v1 = a.create("lambda", "lambda x: x + 1").identity
        b.refresh()
        seq = a.store.seq
        version, v2 = a.create_version(v1, "lambda x: x + 2", "two")
        assert version == 2
        # The substrate, its LINEAGE edge and the chain: three entries, one write.
        assert a.store.seq == seq + 3
        assert b.refresh() == 3
        assert b.versions(v1) == a.versions(v1)
        assert b.versions(v1).head == v2.identity
        seq = a.store.seq
        b.rollback(v2.identity, v1)
        a.refresh()
        assert a.store.seq == seq + 1
        assert a.versions(v2.identity).head == v1
        with pytest.raises(errors.InUseError):
            b.delete(v1)
        with pytest.raises(errors.ValidationError) as info:
            a.rollback(v1, a.create("constant", "9").identity)
        assert info.value.details["reason"] == "not_in_chain"
        # A version made through b after a's rollback is linked from the latest.
        version, v3 = b.create_version(v1, "lambda x: x + 3")
        a.refresh()
        assert version == 3
        assert a.versions(v1).head == v3.identity
        assert [m.version for m in a.versions(v1).members] == [1, 2, 3]
        if hasattr(a.store, "_exec"):
            ops = [r[0] for r in a.store._exec("SELECT op FROM changes").fetchall()]
            assert ops.count(OP_CHAIN) == 3
    finally:
        a.close()
        b.close()
    with Registry(storage=store_locator) as again:
        chain = again.versions(v1)
        assert chain.head == v3.identity
        assert [h.action for h in chain.history] == ["created", "version", "rollback", "version"]


def test_a_failed_version_writes_nothing(tmp_path):
    with Registry(data_dir=tmp_path / "d") as reg:
        v1 = reg.create("lambda", "lambda x: x + 1").identity
        seq = reg.store.seq
        reg.create("lambda", "lambda x: x + 2")
        with pytest.raises(errors.DuplicateError):
            reg.create_version(v1, "lambda x: x + 2")
        with pytest.raises(errors.SandboxError):
            reg.create_version(v1, "lambda x: open('f')")
        assert reg.store.seq == seq + 1
        assert v1 not in reg.store.catalog.chain_of
        assert reg.relationships()[0] == 0


def test_a_schema_3_database_is_migrated_to_4_and_keeps_its_records(tmp_path):
    import sqlite3

    with Registry(storage=str(tmp_path / "d")) as reg:
        made = reg.create("expression", "x * 2")
    conn = sqlite3.connect(tmp_path / "d" / "bfx.db")
    for table in ("version_members", "version_heads", "version_history", "aliases", "lenses"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("UPDATE bfx_meta SET value = '3' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with Registry(storage=str(tmp_path / "d")) as reg:
        assert reg.get(made.identity).identity == made.identity
        version, _ = reg.create_version(made.identity, "x * 3")
        assert version == 2
    conn = sqlite3.connect(tmp_path / "d" / "bfx.db")
    try:
        found = conn.execute("SELECT value FROM bfx_meta WHERE key = 'schema_version'").fetchone()
    finally:
        conn.close()
    assert found == ("4",)
