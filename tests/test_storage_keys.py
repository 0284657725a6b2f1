"""API keys in the durable stores (SQLite and PostgreSQL): kept as keyed digests,
followed through the change log by every other process's key map, loaded on start
(from a full load or a snapshot), and written by a store opened without an arena (as
``bfx keys`` does) while servers run on it."""

from __future__ import annotations

import pytest

from bfx import Registry
from bfx.security.keys import KeyRecord, digest, new_key, now_us
from bfx.storage import SCHEMA_VERSION, open_store
from bfx.storage.snapshot import SNAPSHOT_NAME


def _record(store, scopes=("admin",), expires_us=None):
    key_id, key = new_key()
    return key, KeyRecord(key_id, "t", scopes, digest(store.key_secret, key), now_us(), expires_us)


def test_keys_follow_the_change_log_in_every_process(store_locator):
    a = Registry(storage=store_locator)
    b = Registry(storage=store_locator)
    try:
        assert a.store.key_secret == b.store.key_secret
        assert len(a.store.key_secret) == 32
        _, rec = _record(a.store)
        a.store.add_key(rec)
        assert rec.key_id in a.store.keys
        assert rec.key_id not in b.store.keys
        b.refresh()
        assert b.store.keys[rec.key_id] == rec
        # Written by a store without an arena (the CLI), while both run.
        cli = open_store(store_locator)
        try:
            _, rec2 = _record(cli, ("graph:read",))
            cli.add_key(rec2)
            assert [r.key_id for r in cli.list_keys()] == [rec.key_id, rec2.key_id]
            assert cli.revoke_key(rec.key_id, now_us())
            assert not cli.revoke_key(rec.key_id, now_us())
        finally:
            cli.close()
        for reg in (a, b):
            reg.refresh()
            assert set(reg.store.keys) == {rec2.key_id}
        # Substrate writes after key entries still follow the log.
        made = a.create("expression", "x + 1")
        b.refresh()
        assert b.get(made.identity).identity == made.identity
    finally:
        a.close()
        b.close()
    again = Registry(storage=store_locator)
    try:
        assert set(again.store.keys) == {rec2.key_id}
        assert again.store.keys[rec2.key_id].scopes == ("graph:read",)
    finally:
        again.close()


def test_the_store_keeps_digests_not_keys(tmp_path):
    import sqlite3

    reg = Registry(storage=str(tmp_path / "d"))
    key, rec = _record(reg.store)
    reg.store.add_key(rec)
    reg.close()
    raw = (tmp_path / "d" / "bfx.db").read_bytes()
    wal = tmp_path / "d" / "bfx.db-wal"
    raw += wal.read_bytes() if wal.exists() else b""
    assert key.encode() not in raw
    secret_part = key.split("_", 2)[2].encode()
    assert secret_part not in raw
    conn = sqlite3.connect(tmp_path / "d" / "bfx.db")
    try:
        assert conn.execute(
            "SELECT value FROM bfx_meta WHERE key = 'schema_version'"
        ).fetchone() == (str(SCHEMA_VERSION),)
        (stored,) = conn.execute("SELECT digest FROM api_keys").fetchone()
        assert bytes.fromhex(stored) == rec.digest
    finally:
        conn.close()


def test_a_schema_1_database_is_migrated_and_keeps_its_records(tmp_path):
    import sqlite3

    reg = Registry(storage=str(tmp_path / "d"))
    made = reg.create("expression", "x * 2")
    reg.close()
    # Back to what schema 1 looked like: no key table, no key secret.
    conn = sqlite3.connect(tmp_path / "d" / "bfx.db")
    conn.execute("DROP TABLE api_keys")
    conn.execute("DROP TABLE users")  # schema 3
    for table in ("version_members", "version_heads", "version_history", "aliases", "lenses"):
        conn.execute(f"DROP TABLE {table}")  # schema 4
    conn.execute("DELETE FROM bfx_meta WHERE key = 'key_secret'")
    conn.execute("UPDATE bfx_meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    reg = Registry(storage=str(tmp_path / "d"))
    try:
        assert reg.get(made.identity).identity == made.identity
        assert reg.store.list_keys() == []
        assert len(reg.store.key_secret) == 32
    finally:
        reg.close()


@pytest.mark.parametrize("snapshot", [True, False])
def test_keys_load_on_start_with_or_without_the_snapshot(tmp_path, snapshot):
    data = tmp_path / "d"
    reg = Registry(storage=str(data))
    reg.create("constant", "1")
    _, kept = _record(reg.store)
    reg.store.add_key(kept)
    reg.close()  # writes the snapshot
    # Changed after the snapshot: one key added, the first revoked.
    cli = open_store(str(data))
    _, later = _record(cli)
    cli.add_key(later)
    cli.revoke_key(kept.key_id, now_us())
    cli.close()
    if not snapshot:
        (data / SNAPSHOT_NAME).unlink()
    else:
        assert (data / SNAPSHOT_NAME).exists()
    reg = Registry(storage=str(data))
    try:
        assert set(reg.store.keys) == {later.key_id}
    finally:
        reg.close()


def test_a_damaged_key_row_or_key_secret_is_a_storage_error(tmp_path):
    import sqlite3

    from bfx import errors

    data = tmp_path / "d"
    reg = Registry(storage=str(data))
    _, rec = _record(reg.store)
    reg.store.add_key(rec)
    reg.close()
    conn = sqlite3.connect(data / "bfx.db")
    conn.execute("UPDATE api_keys SET digest = 'not hex'")
    conn.commit()
    with pytest.raises(errors.StorageError, match="stored API key cannot be read"):
        Registry(storage=str(data))
    conn.execute("UPDATE bfx_meta SET value = 'abcd' WHERE key = 'key_secret'")
    conn.commit()
    conn.close()
    with pytest.raises(errors.StorageError, match="no readable key_secret"):
        open_store(str(data))
