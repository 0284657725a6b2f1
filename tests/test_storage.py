"""The storage suite: every test runs against SQLite and against a real PostgreSQL.

Two ``Registry`` objects on one store stand for two processes (workers or nodes):
each has its own arena and follows the change log.
"""

from __future__ import annotations

import contextlib
import random
import threading

import pytest

from bfx import Registry, errors
from bfx.storage import SCHEMA_VERSION, open_store


def _open(locator: str) -> Registry:
    return Registry(storage=locator)


def _state(reg: Registry) -> tuple[set, set]:
    """Everything a registry shows, as comparable sets."""
    subs = {
        (s.identity, s.expression_type, s.expression_code, s.canonical_code,
         repr(sorted(s.metadata.items())), s.created_at)
        for s in reg.iter_substrates()
    }  # fmt: skip
    rels = {
        (r.identity, r.rel_type, r.source, r.target, r.bidirectional,
         repr(sorted(r.constraints.items())), r.created_at)
        for r in reg.iter_relationships()
    }  # fmt: skip
    return subs, rels


def test_records_survive_reopening(store_locator):
    with _open(store_locator) as reg:
        a = reg.create("lambda", "lambda x: x  +  1", {"name": "inc", "tags": ["a", 1]})
        b = reg.create("constant", "18446744073709551615")  # an id may be >= 2**63
        c = reg.create("expression", "2 ** 10")
        rel = reg.relate("DEPENDENCY", a.identity, b.identity, True, {"weight": 0.5})
        reg.relate("SIBLING", c.identity, c.identity)  # a self-loop
        before = _state(reg)
    with _open(store_locator) as again:
        assert _state(again) == before
        assert again.get(a.identity) == a
        assert again.get_relationship(rel.identity) == rel
        assert again.invoke(a.identity, {"x": 41}).result == 42
        assert again.store.durable
        assert again.store.seq == 5


def test_a_second_process_sees_writes_after_refresh(store_locator):
    with _open(store_locator) as one, _open(store_locator) as two:
        a = one.create("constant", "1")
        assert a.identity not in two
        assert two.refresh() == 1
        assert two.get(a.identity) == a
        b = two.create("constant", "2")
        rel = two.relate("DEPENDENCY", a.identity, b.identity)
        one.refresh()
        assert one.get_relationship(rel.identity) == rel
        assert one.delete(a.identity) == 1  # the relationship goes with it
        two.refresh()
        assert a.identity not in two
        with pytest.raises(errors.NotFoundError):
            two.get_relationship(rel.identity)
        assert two.refresh() == 0  # nothing new: the cheap path
        assert _state(one) == _state(two)


def test_writes_check_against_the_store_not_a_stale_arena(store_locator):
    """A write first catches up with the log under the database's write lock, so
    two processes can never both create the same substrate."""
    with _open(store_locator) as one, _open(store_locator) as two:
        a = one.create("constant", "7")
        with pytest.raises(errors.DuplicateError) as info:
            two.create("constant", "7")  # two has not refreshed; still a 409
        assert info.value.details == {"substrate_id": a.substrate_id}
        b = two.create("constant", "8")
        # one has not seen b, yet can link to it; and not to what two deleted.
        one.relate("DEPENDENCY", a.identity, b.identity)
        two.delete(b.identity)
        with pytest.raises(errors.NotFoundError):
            one.relate("SIBLING", a.identity, b.identity)


def test_failed_atomic_batch_writes_nothing(store_locator):
    with _open(store_locator) as reg:
        reg.create("constant", "5")
        items = [
            {"expression_type": "constant", "expression_code": "6"},
            {"expression_type": "constant", "expression_code": "5"},  # exists
            {"expression_type": "lambda", "expression_code": "lambda: __import__('os')"},
        ]
        with pytest.raises(errors.BatchError) as info:
            reg.create_many(items, atomic=True)
        assert [f["index"] for f in info.value.details["failures"]] == [1, 2]
        assert len(reg) == 1
        seq = reg.store.seq
        results = reg.create_many(items)  # not atomic: the good one is written
        assert isinstance(results[0].identity, int)
        assert isinstance(results[1], errors.DuplicateError)
        assert isinstance(results[2], errors.SandboxError)
        assert reg.store.seq == seq + 1
    with _open(store_locator) as again:
        assert len(again) == 2


def test_batch_relationships_and_cascade(store_locator):
    with _open(store_locator) as reg:
        subs = reg.create_many(
            [{"expression_type": "constant", "expression_code": str(i)} for i in range(20)]
        )
        ids = [s.identity for s in subs]
        rels = reg.relate_many(
            [{"rel_type": "DEPENDENCY", "source_id": ids[i], "target_id": ids[i + 1]}
             for i in range(19)]
            + [{"rel_type": "DEPENDENCY", "source_id": ids[0], "target_id": ids[1]},
               {"rel_type": "DEPENDENCY", "source_id": ids[0], "target_id": 12345}]
        )  # fmt: skip
        assert isinstance(rels[19], errors.DuplicateError)
        assert isinstance(rels[20], errors.NotFoundError)
        assert reg.delete(ids[5]) == 2
        expected = _state(reg)
    with _open(store_locator) as again:
        assert _state(again) == expected
        assert again.stats() == {"total_substrates": 19, "total_relationships": 17}


def test_export_import_round_trip_between_stores(store_locator, tmp_path):
    with _open(store_locator) as src:
        a = src.create("lambda", "lambda x: x * 3", {"name": "triple"})
        b = src.create("constant", "-1")
        src.relate("COMPOSITION", a.identity, b.identity, constraints={"k": [1, 2]})
        exported = list(src.export_records())
        expected = _state(src)
    with Registry(data_dir=tmp_path / "copy") as dst:
        counts = dst.import_records(exported)
        assert counts == {"imported_substrates": 2, "imported_relationships": 1, "skipped": 0}
        assert _state(dst) == expected  # ids, metadata, times and relationships kept
        assert dst.import_records(exported)["skipped"] == 3


def test_import_stops_at_the_first_bad_record(store_locator):
    records = [{"kind": "substrate", "expression_type": "constant", "expression_code": str(i)}
               for i in range(5)]  # fmt: skip
    records.insert(3, {"kind": "substrate", "expression_type": "constant", "expression_code": "x("})
    with _open(store_locator) as reg:
        with pytest.raises(errors.SandboxError) as info:
            reg.import_records(records)
        assert info.value.details["index"] == 3
        assert sorted(s.expression_code for s in reg.iter_substrates()) == ["0", "1", "2"]
    with _open(store_locator) as again:
        assert len(again) == 3


def test_concurrent_writers_converge(store_locator):
    """Threads writing through two handles at once: every answered write is
    stored once, and both handles end equal to a fresh load."""
    one, two = _open(store_locator), _open(store_locator)
    created: list[int] = []
    deleted: list[int] = []
    failures: list[BaseException] = []

    def work(reg: Registry, seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(60):
                code = str(rnd.randrange(150))
                with contextlib.suppress(errors.DuplicateError):
                    created.append(reg.create("constant", code).identity)
                if created and rnd.random() < 0.3:
                    with contextlib.suppress(errors.DuplicateError, errors.NotFoundError):
                        reg.relate("ADJACENCY", rnd.choice(created), rnd.choice(created))
                if created and rnd.random() < 0.1:
                    victim = rnd.choice(created)
                    try:
                        reg.delete(victim)
                        deleted.append(victim)
                    except errors.NotFoundError:
                        pass
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(r, i)) for i, r in enumerate([one, two] * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    # A substrate is created again only after a delete: never twice while it exists.
    assert all(created.count(i) <= deleted.count(i) + 1 for i in set(created))
    one.refresh()
    two.refresh()
    with _open(store_locator) as fresh:
        assert _state(one) == _state(two) == _state(fresh)
    one.close()
    two.close()


def test_random_operations_keep_every_handle_equal(store_locator):
    rnd = random.Random(5)
    handles = [_open(store_locator) for _ in range(3)]
    ids: list[int] = []
    for _ in range(150):
        reg = rnd.choice(handles)
        op = rnd.random()
        try:
            if op < 0.5 or not ids:
                ids.append(reg.create("constant", str(rnd.randrange(60))).identity)
            elif op < 0.75:
                reg.relate(rnd.choice(["SIBLING", "LINEAGE"]), rnd.choice(ids), rnd.choice(ids))
            elif op < 0.9:
                reg.delete(rnd.choice(ids))
            else:
                reg.create_many(
                    [{"expression_type": "constant", "expression_code": str(rnd.randrange(60))}
                     for _ in range(5)]
                )  # fmt: skip
        except (errors.DuplicateError, errors.NotFoundError):
            pass
    for h in handles:
        h.refresh()
    with _open(store_locator) as fresh:
        want = _state(fresh)
        assert all(_state(h) == want for h in handles)
    for h in handles:
        h.close()


def test_newer_schema_is_refused(store_locator):
    _open(store_locator).close()
    store = open_store(store_locator)
    with store._lock:  # bump the recorded version behind bfx's back
        store._begin_migration()
        store._exec(
            "UPDATE bfx_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),)
        )
        store._commit()
    store.close()
    with pytest.raises(errors.StorageError, match="newer than this bfx"):
        _open(store_locator)


def test_foreign_tables_are_refused(store_locator):
    if store_locator.startswith("postgresql"):
        import psycopg

        with psycopg.connect(store_locator, autocommit=True) as conn:
            conn.execute("CREATE TABLE customers (id int)")
    else:
        import sqlite3
        from pathlib import Path

        Path(store_locator).mkdir()
        conn = sqlite3.connect(Path(store_locator) / "bfx.db")
        conn.execute("CREATE TABLE customers (id int)")
        conn.commit()
        conn.close()
    with pytest.raises(errors.StorageError, match="not bfx's"):
        _open(store_locator)


def test_metrics_report_the_store(store_locator):
    with _open(store_locator) as reg:
        assert reg.store.backend in ("sqlite", "postgresql")
        assert reg.store.seq == 0
        reg.create("constant", "1")
        assert reg.store.seq == 1
