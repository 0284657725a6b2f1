"""Imports cannot smuggle in a record that later breaks reads (DESIGN.md §6), and
reads survive any time already stored (docs/storage.md, "Times").

Issue 12: an imported ``created_at`` of ``0001-01-01T00:00:00+14:00`` or
``9999-12-31T23:59:59-14:00`` (outside datetime's range once in UTC) used to be
accepted, after which list, search, query and export answered 500 across restarts.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_driver import finish, started
from bfx import Registry, errors
from bfx.models import MAX_MICROS, MIN_MICROS, format_time, from_micros
from bfx.storage.snapshot import SNAPSHOT_NAME

API = "/api/v1"
EARLY = "0001-01-01T00:00:00+14:00"  # year 0 in UTC
LATE = "9999-12-31T23:59:59-14:00"  # year 10000 in UTC
BAD_TIMES = [EARLY, LATE, "2020-01-01T00:00:00"]  # the last one names no offset
EDGE_TIMES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00.000001-00:01",
    "9999-12-31T23:59:59.999999Z",
    "9999-12-31T23:59:59.999999+00:01",
]
# Stored values a hand edit or an older bfx could leave (i64 microseconds).
STORED_BAD = [-(2**63), MIN_MICROS - 1, MAX_MICROS + 1, 2**63 - 1]


def sub(code: str, **extra) -> dict:
    return {"expression_type": "constant", "expression_code": code, **extra}


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def api():
    driver = started()
    yield driver
    finish(driver)


def read_everything(api, sid: str) -> None:
    """Every read path of the API answers 200 (none raises on a stored time)."""
    paths = [
        f"/substrates/{sid}",
        "/substrates",
        "/substrates/search?name=n",
        "/substrates/export",
        "/substrates/export?format=ndjson",
        f"/relationships/outgoing/{sid}",
        f"/relationships/incoming/{sid}",
        "/relationships",
        "/relationships/stats",
        "/metrics",
    ]
    for path in paths:
        res = api.get(API + path)
        assert res.status == 200, (path, res)
    for sort in ("created_at", "-created_at"):
        res = api.post(f"{API}/substrates/query", json={"sort": sort})
        assert res.status == 200, res
    res = api.post(
        f"{API}/relationships/traverse",
        json={"start_substrate_id": sid, "direction": "both", "include_substrates": True},
    )
    assert res.status == 200, res


# ---- refused at import, over HTTP ----------------------------------------------------


@pytest.mark.parametrize("when", BAD_TIMES)
@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_http_import_refuses_a_substrate_time_out_of_range(api, when, fmt):
    records = [sub("1", metadata={"name": "n1"}), sub("2", created_at=when)]
    if fmt == "json":
        res = api.post(f"{API}/substrates/import", json={"substrates": records})
    else:
        body = b"\n".join(msgspec.json.encode({"kind": "substrate", **r}) for r in records)
        res = api.post(f"{API}/substrates/import", body=body, content_type="application/x-ndjson")
    assert res.status == 422, res
    err = res.json()
    assert err["error"] == "validation_error"
    assert err["details"]["index"] == 1
    assert err["details"]["field"] == "created_at"
    # The record before it was imported; the bad one was not.
    listed = api.get(f"{API}/substrates").json()["substrates"]
    assert [s["expression_code"] for s in listed] == ["1"]
    read_everything(api, listed[0]["substrate_id"])


@pytest.mark.parametrize("when", BAD_TIMES)
def test_http_import_refuses_a_relationship_time_out_of_range(api, when):
    a = api.post(f"{API}/substrates", json=sub("1", metadata={"name": "n1"})).json()
    b = api.post(f"{API}/substrates", json=sub("2")).json()
    rel = {"rel_type": "DEPENDENCY", "source_id": a["substrate_id"], "target_id": b["substrate_id"]}
    res = api.post(
        f"{API}/substrates/import",
        json={"relationships": [rel, {**rel, "rel_type": "SIBLING", "created_at": when}]},
    )
    assert res.status == 422, res
    assert res.json()["details"]["index"] == 1
    assert res.json()["details"]["field"] == "created_at"
    assert api.get(f"{API}/relationships").json()["count"] == 1
    read_everything(api, a["substrate_id"])


def test_http_import_checks_relationship_id_against_its_content(api):
    a = api.post(f"{API}/substrates", json=sub("1")).json()
    b = api.post(f"{API}/substrates", json=sub("2")).json()
    made = api.post(
        f"{API}/relationships",
        json={
            "rel_type": "DEPENDENCY",
            "source_id": a["substrate_id"],
            "target_id": b["substrate_id"],
        },
    ).json()
    api.delete(f"{API}/relationships/{made['relationship_id']}")
    good = {k: made[k] for k in ("relationship_id", "rel_type", "source_id", "target_id")}
    forged = {**good, "relationship_id": "0x1"}
    swapped = {**good, "source_id": good["target_id"], "target_id": good["source_id"]}
    retyped = {**good, "rel_type": "SIBLING"}
    for bad in (forged, swapped, retyped):
        res = api.post(f"{API}/substrates/import", json={"relationships": [bad]})
        assert res.status == 422, res
        assert res.json()["details"]["index"] == 0
        assert res.json()["details"]["field"] == "relationship_id"
    assert api.get(f"{API}/relationships").json()["count"] == 0
    res = api.post(f"{API}/substrates/import", json={"relationships": [good]})
    assert res.status == 200, res
    assert res.json()["imported_relationships"] == 1


def test_http_import_refuses_what_else_a_record_can_smuggle(api):
    made = api.post(f"{API}/substrates", json=sub("7")).json()
    api.delete(f"{API}/substrates/{made['substrate_id']}")
    cases = [
        # substrate_id and identity naming different ids
        (sub("7", substrate_id=made["substrate_id"], identity=1), "identity"),
        # an id of another type's content
        ({**sub("7"), "expression_type": "expression", "substrate_id": made["substrate_id"]}, None),
        (sub("7", canonical_code="8"), "canonical_code"),
        (sub("7", metadata={"blob": "x" * (70 * 1024)}), "metadata"),
    ]
    for record, field in cases:
        res = api.post(f"{API}/substrates/import", json={"substrates": [sub("1"), record]})
        assert res.status == 422, (record.keys(), res)
        assert res.json()["details"]["index"] == 1
        if field is not None:
            assert res.json()["details"]["field"] == field
    # Nesting past 32 levels: refused (by the body check before the registry's own).
    a = api.get(f"{API}/substrates").json()["substrates"][0]["substrate_id"]
    deep = {"rel_type": "DEPENDENCY", "source_id": a, "target_id": a, "constraints": nested(33)}
    res = api.post(f"{API}/substrates/import", json={"relationships": [deep]})
    assert res.status == 422, res
    res = api.post(f"{API}/substrates/import", json={"substrates": [sub("8", metadata=nested(33))]})
    assert res.status == 422, res
    # An exact, consistent record is imported.
    ok = sub("7", substrate_id=made["substrate_id"], identity=made["identity"], metadata=nested(8))
    res = api.post(f"{API}/substrates/import", json={"substrates": [ok]})
    assert res.status == 200, res
    read_everything(api, made["substrate_id"])


def test_http_edge_times_are_accepted_and_round_trip(api):
    records = [sub(str(i), created_at=t) for i, t in enumerate(EDGE_TIMES)]
    res = api.post(f"{API}/substrates/import", json={"substrates": records})
    assert res.status == 200, res
    subs = {s["expression_code"]: s for s in api.get(f"{API}/substrates").json()["substrates"]}
    assert [subs[str(i)]["created_at"] for i in range(4)] == [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:01:00.000001Z",
        "9999-12-31T23:59:59.999999Z",
        "9999-12-31T23:58:59.999999Z",
    ]
    exported = api.get(f"{API}/substrates/export").body
    other = started()
    try:
        assert other.post(f"{API}/substrates/import", body=exported).status == 200
        assert other.get(f"{API}/substrates/export").body == exported
    finally:
        finish(other)


# ---- refused at import, through the Registry on every backend ------------------------


@pytest.mark.parametrize("when", [EARLY, LATE])
def test_registry_import_refuses_out_of_range_times(store_locator, when):
    with Registry(storage=store_locator) as reg:
        a = reg.create("constant", "1")
        with pytest.raises(errors.ValidationError) as info:
            reg.import_records([sub("2"), sub("3", created_at=when)])
        assert info.value.details["index"] == 1
        rel = {"kind": "relationship", "rel_type": "DEPENDENCY", "source_id": a.identity}
        with pytest.raises(errors.ValidationError) as info:
            reg.import_records([{**rel, "target_id": a.identity, "created_at": when}])
        assert info.value.details["index"] == 0
        with pytest.raises(errors.ValidationError) as info:
            reg.import_records([{**rel, "target_id": a.identity, "relationship_id": "0x2A"}])
        assert info.value.details["field"] == "relationship_id"
        assert len(reg) == 2
        assert reg.stats()["total_relationships"] == 0
    with Registry(storage=store_locator) as reg:  # a restart: still readable
        assert {s.expression_code for s in reg.iter_substrates()} == {"1", "2"}
        assert len(list(reg.export_records())) == 2


def test_registry_import_bounds_nesting():
    rel = {"kind": "relationship", "rel_type": "DEPENDENCY"}
    with Registry() as reg:
        a = reg.create("constant", "1").substrate_id
        edge = {**rel, "source_id": a, "target_id": a}
        for record, field in [
            (sub("2", metadata=nested(33)), "metadata"),
            ({**edge, "constraints": nested(33)}, "constraints"),
            (sub("2", metadata={"deep": [nested(5000)]}), "metadata"),  # no RecursionError
        ]:
            with pytest.raises(errors.ValidationError) as info:
                reg.import_records([sub("3"), record])
            assert info.value.details == {"field": field, "limit": 32, "index": 1}
        counts = reg.import_records(
            [sub("2", metadata=nested(32)), {**edge, "constraints": nested(32)}]
        )
        assert counts["imported_substrates"] == 1
        assert counts["imported_relationships"] == 1


# ---- a bad value already stored ------------------------------------------------------


def _connect(locator: str):
    if locator.startswith("postgresql://"):
        import psycopg

        return psycopg.connect(locator, autocommit=True)
    conn = sqlite3.connect(Path(locator) / "bfx.db", isolation_level=None)
    return conn


def _poke(locator: str, table: str, value: object) -> None:
    """Writes ``value`` into every row's ``created_us`` behind bfx's back."""
    conn = _connect(locator)
    try:
        mark = "%s" if locator.startswith("postgresql://") else "?"
        conn.execute(f"UPDATE {table} SET created_us = {mark}", (value,))
    finally:
        conn.close()
    # The snapshot is a cache of the arena; a hand edit does not invalidate it.
    if not locator.startswith("postgresql://"):
        (Path(locator) / SNAPSHOT_NAME).unlink(missing_ok=True)


def _registry_reads(reg: Registry, a: int, b: int) -> list[dict]:
    rid = reg.outgoing(a)[1][0].identity
    assert reg.get_relationship(rid).created_at == reg.outgoing(a)[1][0].created_at
    assert reg.get_many([a, b])[0] == reg.get(a)
    reg.list()
    reg.search(name="n")
    reg.query(sort="created_at")
    reg.query(sort="-created_at")
    assert reg.outgoing(a)[0] == 1
    assert reg.incoming(b)[0] == 1
    assert reg.relationships()[0] == 1
    reg.traverse(a, direction="both", include_substrates=True)
    reg.stats()
    return list(reg.export_records())


@pytest.mark.parametrize("stored", STORED_BAD)
def test_reads_survive_a_stored_time_out_of_range(store_locator, stored):
    with Registry(storage=store_locator) as reg:
        a = reg.create("constant", "1", {"name": "n1"}).identity
        b = reg.create("constant", "2").identity
        reg.relate("DEPENDENCY", a, b)
    _poke(store_locator, "substrates", stored)
    _poke(store_locator, "relationships", stored)
    expected = "0001-01-01T00:00:00Z" if stored < 0 else "9999-12-31T23:59:59.999999Z"
    for _restart in range(2):  # a full load, then a start from the snapshot
        with Registry(storage=store_locator) as reg:
            exported = _registry_reads(reg, a, b)
            assert {r["created_at"] for r in exported} == {expected}
    # What export wrote (the clamped time) imports into a fresh registry, and equals.
    with Registry() as fresh:
        fresh.import_records(exported)
        assert list(fresh.export_records()) == exported


def test_a_follower_reads_a_stored_time_out_of_range(store_locator):
    """The catch-up path (another process's write read back from the log)."""
    with Registry(storage=store_locator) as follower, Registry(storage=store_locator) as writer:
        a = writer.create("constant", "1").identity
        b = writer.create("constant", "2").identity
        writer.relate("DEPENDENCY", a, b)
        _poke(store_locator, "substrates", 2**63 - 1)
        _poke(store_locator, "relationships", -(2**63))
        follower.refresh()
        assert format_time(follower.get(a).created_at) == "9999-12-31T23:59:59.999999Z"
        assert format_time(follower.outgoing(a)[1][0].created_at) == "0001-01-01T00:00:00Z"
        _registry_reads(follower, a, b)


def test_sqlite_reads_survive_a_stored_time_that_is_not_an_integer(tmp_path):
    locator = str(tmp_path / "data")
    with Registry(storage=locator) as reg:
        a = reg.create("constant", "1").identity
        b = reg.create("constant", "2").identity
        reg.relate("DEPENDENCY", a, b)
    _poke(locator, "substrates", "not a time")
    _poke(locator, "relationships", 1.5e30)
    with Registry(storage=locator) as reg:
        assert format_time(reg.get(a).created_at) == "1970-01-01T00:00:00Z"
        _registry_reads(reg, a, b)


def test_http_reads_survive_a_stored_time_out_of_range(tmp_path):
    locator = str(tmp_path / "data")
    with Registry(storage=locator) as reg:
        a = reg.create("constant", "1", {"name": "n1"})
        reg.relate("DEPENDENCY", a.identity, reg.create("constant", "2").identity)
    _poke(locator, "substrates", MAX_MICROS + 1)
    _poke(locator, "relationships", MIN_MICROS - 1)
    api = started(storage=locator)
    try:
        read_everything(api, a.substrate_id)
        got = api.get(f"{API}/substrates/{a.substrate_id}").json()
        assert got["created_at"] == "9999-12-31T23:59:59.999999Z"
    finally:
        finish(api)


def test_from_micros_clamps_and_is_exact_inside():
    assert from_micros(MIN_MICROS - 1) == from_micros(MIN_MICROS)
    assert from_micros(MAX_MICROS + 1) == from_micros(MAX_MICROS)
    assert format_time(from_micros(MAX_MICROS)) == "9999-12-31T23:59:59.999999Z"
    assert format_time(from_micros(1)) == "1970-01-01T00:00:00.000001Z"
    assert from_micros(MIN_MICROS) == datetime.min.replace(tzinfo=UTC)
    assert from_micros(MAX_MICROS) == datetime.max.replace(tzinfo=UTC)
    for huge in (2**64, 10**40, -(2**64), -(10**40)):  # past i64 too
        assert from_micros(huge) == from_micros(MAX_MICROS if huge > 0 else MIN_MICROS)


@given(st.integers(MIN_MICROS, MAX_MICROS))
def test_from_micros_is_the_epoch_plus_the_microseconds(us):
    # The core splits the value into datetime's fields (rust/src/civil.rs): the same
    # instant as Python's own arithmetic, aware, in UTC itself.
    got = from_micros(us)
    assert got == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    assert got.tzinfo is UTC


# ---- end to end: a real bfx serve ----------------------------------------------------


def test_e2e_malicious_import_leaves_the_server_readable_across_a_restart(tmp_path):
    from bfx_server import Server

    server = Server(tmp_path)
    try:
        status, made = server.json("POST", f"{API}/substrates", sub("1"))
        assert status == 201
        sid = made["substrate_id"]
        for when in (EARLY, LATE):
            doc = {
                "substrates": [sub("2", created_at=when)],
                "relationships": [
                    {
                        "rel_type": "DEPENDENCY",
                        "source_id": sid,
                        "target_id": sid,
                        "created_at": when,
                    }
                ],
            }
            status, err = server.json("POST", f"{API}/substrates/import", doc)
            assert status == 422, err
            assert err["details"]["index"] == 0
            rel = {"kind": "relationship", **doc["relationships"][0]}
            body = msgspec.json.encode(rel)
            status, _, raw = server.call(
                "POST",
                f"{API}/substrates/import",
                body,
                {"content-type": "application/x-ndjson"},
            )
            assert status == 422, raw
    finally:
        server.stop()
    # Also a value already stored (written while the server was down).
    _poke(str(tmp_path / "bfx-data"), "substrates", MAX_MICROS + 1)
    server = Server(tmp_path)
    try:
        for path in ("/substrates", "/substrates/export", "/substrates/export?format=ndjson"):
            status, _, raw = server.call("GET", API + path)
            assert status == 200, (path, raw[:300])
        status, _, raw = server.call("GET", f"{API}/substrates/{sid}")
        assert status == 200
        assert msgspec.json.decode(raw)["created_at"] == "9999-12-31T23:59:59.999999Z"
    finally:
        server.stop()


# ---- an import does not hold up other requests ----------------------------------------


def _records(n: int, start: int = 0) -> list[dict]:
    return [sub(str(i), metadata={"name": f"n{i}"}) for i in range(start, start + n)]


@pytest.mark.parametrize("window", ["writing", "applying"])
def test_refresh_does_not_wait_for_an_import_chunk(store_locator, window):
    """Issue 12: every request calls ``refresh()``, which used to take the store lock
    an import holds for a whole chunk (and SQLite's checkpoint inside its COMMIT).
    Here the chunk stops inside its transaction (``writing``) or after its commit,
    before the arena has it (``applying``); a refresh must still come back, and
    the rows appear once the chunk finishes. No timing is asserted: the refresh
    either returns or is still stuck when the chunk is released."""
    with Registry(storage=store_locator) as reg, Registry(storage=store_locator) as other:
        kept = reg.create("constant", "-1")
        store = reg.store
        entered, release = threading.Event(), threading.Event()
        hook = "_execmany" if window == "writing" else "check_applied"
        original = getattr(store, hook)

        def stall(*args, **kw):
            if not entered.is_set():
                entered.set()
                assert release.wait(30)
            return original(*args, **kw)

        setattr(store, hook, stall)
        failures: list[BaseException] = []

        def run_import() -> None:
            try:
                reg.import_records(_records(100))
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        importer = threading.Thread(target=run_import)
        importer.start()
        try:
            assert entered.wait(30)
            answered: list[object] = []
            reader = threading.Thread(target=lambda: answered.append(reg.refresh()))
            reader.start()
            reader.join(timeout=10)
            stuck = reader.is_alive()
            # Reads are served from the arena meanwhile.
            assert reg.get(kept.identity) == kept
        finally:
            release.set()
            importer.join(timeout=60)
        setattr(store, hook, original)
        assert not stuck, "refresh() waited for the import's lock"
        assert answered == [0]
        assert not failures
        assert len(reg) == 101
        # Read-your-writes across processes still holds: the other registry sees all.
        other.refresh()
        assert len(other) == 101
        other.create("constant", "-2")
        assert reg.refresh() == 1
        assert len(reg) == 102
