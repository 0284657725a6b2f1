"""The change feed (``GET /changes``) and the change log's retention: what the feed lists
over every store, its errors, pruning on SQLite and PostgreSQL, and a follower that fell
behind the pruned log reloading in full.

Two ``Registry`` objects on one store stand for two processes (workers or nodes), as in
tests/test_storage.py. The live stream and real servers: tests/test_e2e_changes.py.
"""

from __future__ import annotations

import contextlib
import random

import pytest

from asgi_driver import finish, started
from bfx import Registry, errors
from bfx.domain.changes import OP_NAMES, PUBLIC_OPS
from bfx.identity import format_id
from bfx.security.keys import KeyRecord, digest, new_key, now_us
from bfx.storage import base
from bfx.storage.base import OP_KEY, OP_USER
from test_storage import _state

API = "/api/v1"


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def any_locator(request, tmp_path):
    if request.param == "memory":
        return None
    if request.param == "sqlite":
        return str(tmp_path / "data")
    return request.getfixturevalue("postgres").new_database()


def _key(store) -> KeyRecord:
    key_id, key = new_key()
    return KeyRecord(key_id, "t", ("admin",), digest(store.key_secret, key), now_us(), None)


def _feed(reg: Registry, since: int = 0, limit: int = 1000) -> list[tuple[int, str, int]]:
    page = reg.changes.read(since, limit)
    return [(c.seq, OP_NAMES[c.op], c.identity) for c in page.changes]


def _all(reg: Registry, since: int = 0, limit: int = 3) -> list[tuple[int, str, int]]:
    """The whole feed, a page of ``limit`` at a time, following ``next_since``."""
    out: list[tuple[int, str, int]] = []
    for _ in range(1000):
        page = reg.changes.read(since, limit)
        out += [(c.seq, OP_NAMES[c.op], c.identity) for c in page.changes]
        if page.next_since == since:
            return out
        since = page.next_since
    raise AssertionError("the feed did not end")


# ---- what the feed lists ---------------------------------------------------------------


def test_every_published_write_is_listed_in_order(any_locator):
    with Registry(storage=any_locator) as reg:
        a = reg.create("constant", "1")
        b = reg.create("constant", "2")
        rel = reg.relate("DEPENDENCY", a.identity, b.identity)
        if reg.store.durable:  # key records are logged by a database store only
            reg.store.add_key(_key(reg.store))
        reg.update(a.identity, {"name": "one"})
        reg.delete_relationship(rel.identity)
        reg.delete(b.identity)
        batch = reg.create_many([{"expression_type": "constant", "expression_code": "3"}])
        feed = _feed(reg)
        assert [(op, ident) for _, op, ident in feed] == [
            ("substrate_created", a.identity),
            ("substrate_created", b.identity),
            ("relationship_created", rel.identity),
            ("substrate_updated", a.identity),
            ("relationship_deleted", rel.identity),
            ("substrate_deleted", b.identity),
            ("substrate_created", batch[0].identity),
        ]
        seqs = [seq for seq, _, _ in feed]
        assert seqs == sorted(set(seqs))
        # The key's entry is not published, but its number is used: seq skips it.
        assert seqs[3] == seqs[2] + (2 if reg.store.durable else 1)
        page = reg.changes.read(0, 1000)
        assert page.next_since == reg.store.seq == seqs[-1]
        # Paging by next_since gives the same, nothing twice, nothing left out.
        assert _all(reg, limit=2) == feed
        assert _all(reg, since=seqs[2], limit=1) == feed[3:]


def test_failed_and_dry_writes_log_nothing(any_locator):
    with Registry(storage=any_locator) as reg:
        a = reg.create("constant", "1")
        with pytest.raises(errors.DuplicateError):
            reg.create("constant", "1")
        with pytest.raises(errors.BatchError):
            reg.create_many(
                [
                    {"expression_type": "constant", "expression_code": "2"},
                    {"expression_type": "constant", "expression_code": "1"},
                ],
                atomic=True,
            )
        with pytest.raises(errors.NotFoundError):
            reg.delete(12345)
        assert _feed(reg) == [(1, "substrate_created", a.identity)]


def test_a_since_past_the_head_comes_back_to_it(any_locator):
    with Registry(storage=any_locator) as reg:
        reg.create("constant", "1")
        page = reg.changes.read(2**63 - 1, 10)
        assert page.changes == []
        assert page.next_since == 1


def test_the_op_table_names_every_published_op_and_no_security_record():
    assert set(OP_NAMES.values()) == {
        "substrate_created",
        "substrate_deleted",
        "substrate_updated",
        "relationship_created",
        "relationship_deleted",
        "version_chain_changed",
        "alias_changed",
        "lens_changed",
    }
    assert OP_KEY not in PUBLIC_OPS
    assert OP_USER not in PUBLIC_OPS


def test_versions_aliases_and_lenses_are_in_the_feed_on_every_store(any_locator):
    with Registry(storage=any_locator) as reg:
        v1 = reg.create("lambda", "lambda x: x + 1").identity
        _, v2 = reg.create_version(v1, "lambda x: x + 2", "two")
        reg.put_alias("inc", v1)
        reg.create_lens("low", "z & 15")
        reg.delete_lens("low")
        names = [name for _, name, _ in _feed(reg)]
        assert names == [
            "substrate_created",  # v1
            "substrate_created",  # v2, its LINEAGE edge and the chain in one write
            "relationship_created",
            "version_chain_changed",
            "alias_changed",
            "lens_changed",
            "lens_changed",
        ]
        chain_entry = next(c for c in _feed(reg) if c[1] == "version_chain_changed")
        assert chain_entry[2] == v1  # the chain's id is its version 1
        assert v2.identity in [c[2] for c in _feed(reg) if c[1] == "substrate_created"]


# ---- retention and pruning -------------------------------------------------------------


def test_memory_log_keeps_the_last_entries():
    with Registry() as reg:
        reg.store.set_retention(3)
        ids = [reg.create("constant", str(i)).identity for i in range(10)]
        assert _feed(reg, since=7) == [(8, "substrate_created", ids[7]),
                                       (9, "substrate_created", ids[8]),
                                       (10, "substrate_created", ids[9])]  # fmt: skip
        with pytest.raises(errors.ChangesPrunedError) as caught:
            reg.changes.read(6, 10)
        assert caught.value.status == 410
        assert caught.value.details == {"since": 6, "oldest_since": 7, "head": 10}


@pytest.fixture(params=["sqlite", "postgresql"])
def db_locator(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "data")
    return request.getfixturevalue("postgres").new_database()


def _log_seqs(reg: Registry) -> list[int]:
    store = reg.store
    with store._lock:
        return [r[0] for r in store._exec("SELECT seq FROM changes ORDER BY seq").fetchall()]


def test_a_writer_prunes_past_the_retention(db_locator):
    with Registry(storage=db_locator) as reg:
        reg.store.set_retention(6)  # pruned every 3 entries written
        ids = [reg.create("constant", str(i)).identity for i in range(30)]
        seqs = _log_seqs(reg)
        assert seqs == list(range(seqs[0], 31))  # a suffix of the log, without gaps
        assert 6 <= len(seqs) <= 6 + 3
        floor = seqs[0] - 1
        with pytest.raises(errors.ChangesPrunedError) as caught:
            reg.changes.read(floor - 1, 10)
        assert caught.value.details == {"since": floor - 1, "oldest_since": floor, "head": 30}
        assert [i for _, _, i in _feed(reg, since=floor)] == ids[floor:]


def test_pruning_deletes_in_bounded_batches(db_locator, monkeypatch):
    with Registry(storage=db_locator) as reg:
        reg.store.set_retention(0)  # no pruning while writing
        reg.create_many(
            [{"expression_type": "constant", "expression_code": str(i)} for i in range(50)]
        )
        monkeypatch.setattr(base, "PRUNE_BATCH", 7)
        monkeypatch.setattr(base, "PRUNE_ROUNDS", 3)
        reg.store.set_retention(10)
        assert reg.store.prune() == 21  # three batches of 7, then it stops
        assert _log_seqs(reg)[0] == 22
        assert reg.store.prune() == 19  # the rest down to the last 10
        assert _log_seqs(reg) == list(range(41, 51))
        assert reg.store.prune() == 0
        reg.store.set_retention(0)
        assert reg.store.prune() == 0  # 0 keeps everything


def _workload(reg: Registry, rng: random.Random, n: int) -> None:
    """Creates, metadata updates, relationships and deletes, and an API key."""
    live: list[int] = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.5 or len(live) < 3:
            live.append(reg.create("constant", str(rng.getrandbits(40)), {"i": i}).identity)
        elif roll < 0.65:
            reg.update(rng.choice(live), {"touched": i})
        elif roll < 0.85:
            src, dst = rng.sample(live, 2)
            with contextlib.suppress(errors.DuplicateError):
                reg.relate("DEPENDENCY", src, dst)
        else:
            live.remove(victim := rng.choice(live))
            reg.delete(victim)
    reg.store.add_key(_key(reg.store))


def test_a_follower_behind_the_pruned_log_reloads_in_full(db_locator, caplog):
    """One process falls behind; the other writes and prunes; the first then holds
    exactly what the database holds (records, metadata, keys), by a full reload."""
    rng = random.Random(15)
    with Registry(storage=db_locator) as writer, Registry(storage=db_locator) as follower:
        _workload(writer, rng, 40)
        follower.refresh()
        assert _state(follower) == _state(writer)
        stale = follower.create("constant", "999")  # its own write, kept by the reload
        revoked = _key(writer.store)
        writer.store.add_key(revoked)
        follower.refresh()
        assert revoked.key_id in follower.store.keys
        writer.refresh()
        writer.store.set_retention(5)
        _workload(writer, rng, 120)
        writer.store.revoke_key(revoked.key_id, now_us())
        writer.delete(stale.identity)
        assert _log_seqs(writer)[0] > follower.store.seq + 1  # the follower's next is gone
        assert follower.refresh() > 0
        assert "reloading in full" in caplog.text
        assert _state(follower) == _state(writer)
        assert stale.identity not in follower
        assert follower.store.keys == writer.store.keys
        assert revoked.key_id not in follower.store.keys
        assert follower.store.seq == writer.store.seq
        # And it follows the log entry by entry again from there.
        c = writer.create("constant", "1000")
        assert follower.refresh() == 1
        assert c.identity in follower


def test_a_follower_behind_the_pruned_log_reloads_before_it_writes(db_locator, caplog):
    """A write catches up first, inside its transaction: the reload runs there too."""
    with Registry(storage=db_locator) as writer, Registry(storage=db_locator) as follower:
        a = writer.create("constant", "1")
        follower.refresh()
        writer.store.set_retention(2)
        for i in range(10):
            writer.create("constant", str(100 + i))
        writer.delete(a.identity)
        b = follower.create("constant", "2")  # no refresh first: the write path catches up
        assert "reloading in full" in caplog.text
        writer.refresh()
        assert _state(follower) == _state(writer)
        assert b.identity in writer
        assert a.identity not in follower


# ---- over HTTP ---------------------------------------------------------------------------


@pytest.fixture
def api():
    driver = started(changes_retention=5)
    yield driver
    finish(driver)


def _create(api, code: str) -> str:
    res = api.request(
        "POST", f"{API}/substrates", json={"expression_type": "constant", "expression_code": code}
    )
    assert res.status == 201, res
    return res.json()["substrate_id"]


def test_changes_route_answers_pages(api):
    ids = [_create(api, str(i)) for i in range(3)]
    res = api.request("GET", f"{API}/changes")
    assert res.status == 200
    assert res.json() == {
        "changes": [
            {"seq": i + 1, "op": "substrate_created", "id": sid} for i, sid in enumerate(ids)
        ],
        "next_since": 3,
    }
    res = api.request("GET", f"{API}/changes", query={"since": 1, "limit": 1})
    assert res.json() == {
        "changes": [{"seq": 2, "op": "substrate_created", "id": ids[1]}],
        "next_since": 2,
    }
    assert api.request("DELETE", f"{API}/substrates/{ids[0]}").status == 204
    res = api.request("GET", f"{API}/changes", query={"since": 3})
    assert res.json()["changes"] == [{"seq": 4, "op": "substrate_deleted", "id": ids[0]}]
    assert ids[0] == format_id(int(ids[0], 16))  # the API's own id format


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": -1}, "since"),
        ({"since": "abc"}, "since"),
        ({"since": 2**63}, "since"),
        ({"since": "1.5"}, "since"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "x"}, "limit"),
    ],
)
def test_changes_route_refuses_bad_cursors_and_limits(api, query, field):
    res = api.request("GET", f"{API}/changes", query=query)
    assert res.status == 422, res
    body = res.json()
    assert body["error"] == "validation_error"
    assert body["details"] == {"location": "query", "field": field}


def test_changes_route_answers_410_past_the_retention(api):
    for i in range(12):
        _create(api, str(i))
    res = api.request("GET", f"{API}/changes", query={"since": 0})
    assert res.status == 410
    body = res.json()
    assert body["error"] == "changes_pruned"
    assert body["details"] == {"since": 0, "oldest_since": 7, "head": 12}
    assert api.request("GET", f"{API}/changes", query={"since": 7}).status == 200


def test_change_stream_refuses_a_bad_or_pruned_cursor_before_streaming(api):
    res = api.request("GET", f"{API}/changes/stream", headers=[("Last-Event-ID", "abc")])
    assert res.status == 422
    assert res.json()["details"] == {"field": "Last-Event-ID", "location": "header"}
    for i in range(8):
        _create(api, str(i))
    res = api.request("GET", f"{API}/changes/stream", headers=[("Last-Event-ID", "1")])
    assert res.status == 410
    assert res.json()["error"] == "changes_pruned"
    res = api.request("GET", f"{API}/changes/stream", query={"since": -5})
    assert res.status == 422
    assert res.json()["details"]["field"] == "since"


def test_openapi_shows_the_stream_as_an_event_stream():
    import bfx
    from bfx.api import openapi

    doc = openapi.build(bfx.__version__)
    op = doc["paths"]["/api/v1/changes/stream"]["get"]
    assert "text/event-stream" in op["responses"]["200"]["content"]
    assert set(op["responses"]) >= {"200", "410", "422", "503"}
    feed = doc["paths"]["/api/v1/changes"]["get"]
    assert feed["x-bfx-scope"] == "substrates:read"
    assert feed["responses"]["410"]["description"].endswith("(changes_pruned)")


def test_bfx_import_prunes_with_the_servers_variable(tmp_path):
    import os
    import subprocess
    import sys

    records = tmp_path / "in.ndjson"
    records.write_text(
        "".join(
            f'{{"kind":"substrate","expression_type":"constant","expression_code":"{i}"}}\n'
            for i in range(5)
        )
    )
    data = tmp_path / "d"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    command = [sys.executable, "-m", "bfx.cli", "import", str(records), "--data-dir", str(data)]
    bad = subprocess.run(
        command, env={**env, "BFX_CHANGES_RETENTION": "x"}, capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert "BFX_CHANGES_RETENTION" in bad.stderr
    done = subprocess.run(
        command, env={**env, "BFX_CHANGES_RETENTION": "2"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    with Registry(storage=str(data)) as reg:
        assert _log_seqs(reg) == [4, 5]
        assert len(reg) == 5


def _arena_state(arena) -> tuple[list, list]:
    subs, edges = [], []
    position = 0
    while position is not None:
        records, position = arena.scan(position, 100)
        subs += [tuple(r[:6]) for r in records]
    position = 0
    while position is not None:
        records, position = arena.scan_edges(position, 100)
        edges += [tuple(r) for r in records]
    return sorted(subs), sorted(edges)


def test_reconcile_makes_an_arena_equal_to_another():
    """Removed, added, metadata changed, and the same ids created again meanwhile (a new
    created_at, an edge's new constraints): all of it ends equal."""
    from bfx._core import Arena
    from bfx.storage.base import reconcile

    live, fresh = Arena(), Arena()
    a = live.insert("constant", "1", "1", b"", 1_000)
    b = live.insert("constant", "2", "2", b"", 1_000)
    live.insert("constant", "4", "4", b"", 7)  # gone from fresh
    live.link("DEPENDENCY", a, b, False, b'{"w":1}', 5)
    fresh.insert("constant", "1", "1", b'{"m":1}', 2_000)  # created again, new metadata
    fresh.insert("constant", "2", "2", b'{"n":2}', 1_000)  # new metadata only
    fresh.insert("constant", "3", "3", b"", 7)  # new
    fresh.link("DEPENDENCY", a, b, False, b'{"w":2}', 6)  # created again
    done = reconcile(live, fresh)
    assert _arena_state(live) == _arena_state(fresh)
    assert done.count == 6  # 4 removed, the edge and "1" replaced, "2" patched, "3" added
    assert all(type(answer) is int for answer in done.refused)
