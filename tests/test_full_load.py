"""A full load from the database (no snapshot) goes through ``Arena.load_sqlite`` (the
core reading SQLite itself) or ``Arena.load_substrates`` and ``load_relationships``
(rows read through Python; PostgreSQL, or when the core declines): either must build
the very arena the per-item path built (records, and adjacency in the same order), and
a damaged row must stop it with a StorageError naming the row, never a crash."""

from __future__ import annotations

import logging
import random
import sqlite3
from pathlib import Path

import pytest

from bfx import errors
from bfx._core import REL_TYPES, Arena, substrate_id
from bfx.storage import open_store

EXPR_TYPES = ("lambda", "constant", "expression")


def signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


def unsigned(i: int) -> int:
    return i & ((1 << 64) - 1)


def random_store(data_dir: Path, seed: int, n: int = 300, m: int = 1200) -> None:
    """Substrates and relationships written with plain SQL: blobs and NULLs, self
    loops, both directions, several relationships between one pair."""
    rng = random.Random(seed)
    open_store(str(data_dir)).close()
    subs: dict[int, tuple] = {}
    while len(subs) < n:
        kind = rng.choice(EXPR_TYPES)
        code = f"x{rng.randrange(10**9)}"
        canonical = code if rng.random() < 0.7 else f"{code}_c"
        meta = rng.choice([None, b"", bytes(rng.randrange(256) for _ in range(rng.randrange(40)))])
        sid = substrate_id(kind, canonical)
        subs[sid] = (signed(sid), kind, code, canonical, meta, rng.randrange(1, 2**50))
    ids = list(subs)
    scratch = Arena()
    scratch.insert_many(
        [(k, c, can, m or b"", t, unsigned(i)) for i, k, c, can, m, t in subs.values()]
    )
    rels = []
    for _ in range(m):
        src, dst = rng.choice(ids), rng.choice(ids + [ids[0]] * 20)
        if rng.random() < 0.05:
            dst = src
        rel = rng.choice(REL_TYPES)
        both = rng.random() < 0.3
        cons = rng.choice(
            [None, None, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))]
        )
        created = rng.randrange(1, 2**50)
        (rid,), _ = scratch.link_many([(rel, src, dst, both, cons or b"", created)])
        if isinstance(rid, int):
            rels.append((signed(rid), rel, signed(src), signed(dst), int(both), cons, created))
    conn = sqlite3.connect(data_dir / "bfx.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO substrates VALUES (?, ?, ?, ?, ?, ?)", list(subs.values()))
    conn.executemany("INSERT INTO relationships VALUES (?, ?, ?, ?, ?, ?, ?)", rels)
    conn.execute("COMMIT")
    conn.close()


def per_item_arena(data_dir: Path) -> Arena:
    """The arena as the per-item path loads it: ``insert_many``/``link_many`` of the
    rows in the order a full load reads them (the table's)."""
    conn = sqlite3.connect(data_dir / "bfx.db")
    arena = Arena()
    subs = conn.execute(
        "SELECT expression_type, expression_code, canonical_code, metadata, created_us, id "
        "FROM substrates"
    ).fetchall()
    answers, _ = arena.insert_many(
        [(k, c, can, m or b"", t, unsigned(i)) for k, c, can, m, t, i in subs]
    )
    assert all(isinstance(a, int) for a in answers)
    rels = conn.execute(
        "SELECT rel_type, source_id, target_id, bidirectional, constraints, created_us "
        "FROM relationships"
    ).fetchall()
    answers, _ = arena.link_many(
        [(r, unsigned(s), unsigned(t), bool(b), c or b"", at) for r, s, t, b, c, at in rels]
    )
    assert all(isinstance(a, int) for a in answers)
    conn.close()
    return arena


def full_load(data_dir: Path) -> Arena:
    store = open_store(str(data_dir))
    try:
        arena = Arena()
        store.attach(arena)
        store._arena = None  # closing writes no snapshot
        return arena
    finally:
        store.close()


def shape(arena: Arena) -> tuple:
    """Every record, and every substrate's adjacency in both directions, in order."""
    ids = sorted(arena.ids())
    records = [arena.get(i) for i in ids]
    adjacency = [(arena.outgoing(i), arena.incoming(i)) for i in ids]
    edges = []
    position: int | None = 0
    while position is not None:
        page, position = arena.scan_edges(position, 500)
        edges.extend(page)
    return records, adjacency, sorted(edges), arena.relationship_count


DECLINED = "full load through Python"


@pytest.fixture
def storage_log(caplog):
    caplog.set_level(logging.INFO, logger="bfx.storage")
    return caplog


@pytest.mark.parametrize("reader", ["core", "python"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bulk_load_builds_the_arena_the_per_item_path_built(
    tmp_path, seed, reader, monkeypatch, storage_log
):
    from bfx.storage.sqlite import SqliteStore

    if reader == "python":
        monkeypatch.setattr(SqliteStore, "load_in_core", False)
    elif not _sqlite_shared():
        pytest.skip(shared_sqlite.kwargs["reason"])
    random_store(tmp_path, seed)
    loaded, reference = full_load(tmp_path), per_item_arena(tmp_path)
    assert len(loaded) == 300
    assert loaded.relationship_count > 1000
    assert shape(loaded) == shape(reference)
    # The core read every row itself (this Python's sqlite3 links SQLite as a
    # shared library), or was told not to.
    assert (DECLINED in storage_log.text) == (reader == "python")


def _sqlite_shared() -> bool:
    """Whether Python's sqlite3 module exposes the SQLite it runs on (as a Python
    linking the system's libsqlite3 does), which the core's read needs."""
    import _sqlite3
    import ctypes

    try:
        return hasattr(ctypes.CDLL(_sqlite3.__file__), "sqlite3_open_v2")
    except (OSError, AttributeError):
        return False


shared_sqlite = pytest.mark.skipif(
    not _sqlite_shared(),
    reason="this Python's sqlite3 has SQLite built in and hidden: the core declines",
)


def _load_sqlite(arena: Arena, data_dir: Path, seq: int, module: str | None = None):
    import _sqlite3

    from bfx.storage.sqlite import SqliteStore

    return arena.load_sqlite(
        module or _sqlite3.__file__,
        str(data_dir / "bfx.db"),
        "SELECT seq FROM bfx_head",
        SqliteStore._LOAD_SUBSTRATES,
        SqliteStore._LOAD_RELATIONSHIPS,
        seq,
        1000,
    )


def _head(data_dir: Path) -> int:
    conn = sqlite3.connect(data_dir / "bfx.db")
    try:
        return int(conn.execute("SELECT seq FROM bfx_head").fetchone()[0])
    finally:
        conn.close()


@shared_sqlite
def test_the_core_read_declines_a_head_other_than_the_caller_s(tmp_path):
    """The core reads in a transaction of its own: it loads only when that
    transaction's head is the one the caller's snapshot holds."""
    random_store(tmp_path, 4, n=30, m=60)
    head = _head(tmp_path)
    arena = Arena()
    why = _load_sqlite(arena, tmp_path, head + 1)
    assert "moved on" in (why or "")
    assert len(arena) == 0
    assert _load_sqlite(arena, tmp_path, head) is None
    assert len(arena) == 30
    assert shape(arena) == shape(per_item_arena(tmp_path))


def test_the_core_read_declines_a_sqlite_it_cannot_share(tmp_path):
    """Only the SQLite library Python's sqlite3 runs on may open the database (two
    copies in one process would drop each other's locks): a module that does not
    expose SQLite, or one not loaded, is declined, and nothing is loaded."""
    from bfx import _core

    random_store(tmp_path, 5, n=10, m=10)
    head = _head(tmp_path)
    arena = Arena()
    why = _load_sqlite(arena, tmp_path, head, module=_core.__file__)
    assert "does not expose SQLite" in (why or "")
    why = _load_sqlite(arena, tmp_path, head, module=str(tmp_path / "missing.so"))
    assert "not a loaded shared object" in (why or "")
    assert len(arena) == 0


@shared_sqlite
def test_a_row_the_core_declines_leaves_the_arena_empty(tmp_path):
    """A bad row after good ones (the substrates are loaded by then): the core's
    answer says which, and the arena it had filled is empty again."""
    random_store(tmp_path, 6, n=50, m=150)
    conn = sqlite3.connect(tmp_path / "bfx.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(
        "UPDATE relationships SET rel_type = 'loves' "
        "WHERE rowid = (SELECT max(rowid) FROM relationships)"
    )
    conn.close()
    arena = Arena()
    why = _load_sqlite(arena, tmp_path, _head(tmp_path))
    assert "relationship row" in (why or "")
    assert len(arena) == 0
    assert arena.relationship_count == 0


def test_an_empty_store_loads_empty(tmp_path):
    open_store(str(tmp_path)).close()
    arena = full_load(tmp_path)
    assert len(arena) == 0
    assert arena.relationship_count == 0


# Each edit damages one row as a hand edit could (SQLite keeps any value in any
# column); the full load must refuse it with what it refused and the row.
DAMAGE = {
    "substrate id not its hash": ("UPDATE substrates SET id = id + 1 WHERE rowid = "
                                  "(SELECT min(rowid) FROM substrates)", "substrate", "id"),
    "unknown expression type": ("UPDATE substrates SET expression_type = 'cobol' WHERE rowid = "
                                "(SELECT max(rowid) FROM substrates)", "substrate", "cobol"),
    "code stored as a blob": ("UPDATE substrates SET expression_code = X'00FF' WHERE rowid = "
                              "(SELECT min(rowid) FROM substrates)", "substrate", "must be"),
    "metadata stored as text": ("UPDATE substrates SET metadata = 'text' WHERE rowid = "
                                "(SELECT min(rowid) FROM substrates)", "substrate", "must be"),
    "target stored as a real": ("UPDATE relationships SET target_id = 1.5 WHERE rowid = "
                                "(SELECT max(rowid) FROM relationships)", "relationship",
                                "must be"),
    "unknown relationship type": ("UPDATE relationships SET rel_type = 'loves' WHERE rowid = "
                                  "(SELECT min(rowid) FROM relationships)", "relationship", "loves"),
    "missing endpoint": ("UPDATE relationships SET target_id = 12345 WHERE rowid = "
                         "(SELECT min(rowid) FROM relationships)", "relationship", "not found"),
    "source stored as text": ("UPDATE relationships SET source_id = 'x' WHERE rowid = "
                              "(SELECT min(rowid) FROM relationships)", "relationship", "must be"),
    "direction stored as text": ("UPDATE relationships SET bidirectional = 'yes' WHERE rowid = "
                                 "(SELECT min(rowid) FROM relationships)", "relationship", "must be"),
    "constraints stored as a number": ("UPDATE relationships SET constraints = 7 WHERE rowid = "
                                       "(SELECT max(rowid) FROM relationships)", "relationship",
                                       "must be"),
    "a relationship twice": ("INSERT INTO relationships SELECT id + 1, rel_type, source_id, "
                             "target_id, bidirectional, constraints, created_us FROM relationships "
                             "WHERE rowid = (SELECT min(rowid) FROM relationships)", "relationship",
                             "exists"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_row_stops_the_load_with_a_clear_error(tmp_path, case, storage_log):
    edit, kind, says = DAMAGE[case]
    random_store(tmp_path, 7, n=50, m=150)
    conn = sqlite3.connect(tmp_path / "bfx.db", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(edit)
    conn.close()
    with pytest.raises(errors.StorageError) as caught:
        full_load(tmp_path)
    message = str(caught.value)
    assert f"a stored {kind} cannot be loaded" in message
    assert says.lower() in message.lower()
    assert caught.value.details["record"].startswith("(")
    # The core declined the row rather than load it; Python's path named it.
    assert DECLINED in storage_log.text


@pytest.fixture(params=["sqlite", "postgresql"])
def locator(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "data")
    return request.getfixturevalue("postgres").new_database()


def test_a_store_written_through_the_api_loads_in_full_as_it_was(locator):
    """Each dialect's own column types (PostgreSQL: BOOLEAN, BYTEA; SQLite: 0/1,
    BLOB) go through the bulk path: a full load equals the arena that wrote them."""
    from bfx.registry import Registry

    with Registry(storage=locator) as reg:
        subs = reg.create_many(
            [{"expression_type": "constant", "expression_code": str(i), "metadata": {"i": i}}
             for i in range(40)] + [{"expression_type": "constant", "expression_code": "99"}]
        )  # fmt: skip
        rels = reg.relate_many(
            [{"rel_type": "LINEAGE", "source_id": subs[i].identity,
              "target_id": subs[(i * 7) % 41].identity, "bidirectional": i % 3 == 0,
              "constraints": {"n": i} if i % 2 else None} for i in range(41)]
        )  # fmt: skip
        assert all(not isinstance(r, errors.BfxError) for r in rels)
        written = shape(reg.arena)
    store = open_store(locator)
    try:
        arena = Arena()
        store.attach(arena)
        store._arena = None  # closing writes no snapshot
    finally:
        store.close()
    assert shape(arena) == written
    assert arena.relationship_count == 41
