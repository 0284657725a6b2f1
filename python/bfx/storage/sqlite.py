"""The embedded backend: one SQLite database (WAL mode) in a data directory.

Durability: a write is answered only after its transaction commits. In WAL mode with
``synchronous=NORMAL`` (the default here) a committed transaction survives the
process being killed (``kill -9``); surviving a power cut as well needs
``synchronous=FULL`` (``BFX_SQLITE_SYNC=full``), which syncs the log on every commit.

Freshness across processes: ``PRAGMA data_version`` changes when another connection
commits; checking it costs a few microseconds and no I/O, so it is done on every
request, and only a change leads to reading the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from bfx import errors
from bfx._core import Arena
from bfx.storage import snapshot
from bfx.storage.base import SqlStore, WouldBlock
from bfx.storage.checkpoint import RESTART_WAIT, Checkpointer

__all__ = ["DB_NAME", "SqliteStore", "backup"]

log = logging.getLogger("bfx.storage")

DB_NAME = "bfx.db"
#: Written into the database header, so a bfx database is recognised as one.
APPLICATION_ID = 0x62667831  # "bfx1"
SYNC_MODES = ("normal", "full")
#: What bfx keeps in its data directory; anything else there means it is not ours.
_OWN_FILES = frozenset(
    {DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", snapshot.SNAPSHOT_NAME}
)


def _check_directory(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise errors.StorageError(
            f"data directory {data_dir} exists and is not a directory", {"path": str(data_dir)}
        )
    if (data_dir / DB_NAME).exists() or not data_dir.exists():
        return
    foreign = sorted(
        p.name
        for p in data_dir.iterdir()
        if p.name not in _OWN_FILES and not p.name.endswith(".tmp")
    )
    if foreign:
        raise errors.StorageError(
            f"data directory {data_dir} is not empty and holds no {DB_NAME} "
            f"(found {', '.join(foreign[:5])}); point bfx at a new or empty directory",
            {"path": str(data_dir), "found": foreign[:20]},
        )


#: SQLite's answers when a file cannot be opened or written (rather than being damaged).
_ACCESS_ERRORS = ("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")


def _access_problem(data_dir: Path, path: Path) -> tuple[str, str] | None:
    """Why bfx cannot write in ``data_dir`` (``(cause, text)``), if it cannot:
    a read-only file system, or a file or directory this user may not write."""
    probe = data_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        read_only = False
    if read_only:
        return "read_only", f"{probe} is on a read-only file system"
    # access(2) answers for this process's user (root passes unless read-only).
    for target in (data_dir, path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        if target.exists() and not os.access(target, os.W_OK):
            what = "directory" if target.is_dir() else "file"
            return (
                "permission_denied",
                f"permission denied: this user may not write the {what} {target}",
            )
    if not data_dir.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return (
            "permission_denied",
            f"permission denied: this user may not create directories in {probe}",
        )
    return None


def _open_error(data_dir: Path, path: Path, what: str, exc: BaseException) -> errors.StorageError:
    """A failure to open the store, saying what is wrong: access, else the cause."""
    problem = _access_problem(data_dir, path)
    if problem is not None:
        cause, text = problem
        return errors.StorageError(
            f"{what}: {text}; bfx must write its database, log and snapshot there",
            {"path": str(path), "cause": cause},
        )
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return errors.StorageError(
        f"{what}: {reason}", {"path": str(path), "cause": type(exc).__name__}
    )


def _connect(path: Path, *, read_only: bool = False, timeout: float = 30.0) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    return conn


class SqliteStore(SqlStore):
    """SQLite in ``data_dir/bfx.db``; created (with its directory) when missing,
    unless ``create`` is false (for commands that only read: a missing database is
    then an error and nothing is created)."""

    dialect = "sqlite"

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        synchronous: str = "normal",
        timeout: float = 30.0,
        create: bool = True,
    ) -> None:
        super().__init__()
        if synchronous not in SYNC_MODES:
            raise errors.StorageError(
                f"synchronous must be one of {', '.join(SYNC_MODES)}", {"value": synchronous}
            )
        self.data_dir = Path(data_dir).absolute()
        self.path = self.data_dir / DB_NAME
        self._timeout = timeout
        # Without a sync per commit, a write on the loop takes microseconds when no
        # other process is writing (the engine's writer on the loop, group_commit.py).
        self.writes_without_waiting = synchronous != "full"
        self._data_version = -1
        self._seen_version = -1
        self._checkpoints = Checkpointer(
            lambda: _connect(self.path, timeout=RESTART_WAIT), hold=self._lock
        )
        if not create and not self.path.is_file():
            raise errors.StorageError(
                f"no bfx database at {self.path}; nothing was created",
                {"path": str(self.path), "cause": "missing"},
            )
        try:
            _check_directory(self.data_dir)
        except OSError as exc:
            raise _open_error(
                self.data_dir, self.path, f"cannot read data directory {self.data_dir}", exc
            ) from None
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _open_error(
                self.data_dir, self.path, f"cannot create data directory {self.data_dir}", exc
            ) from None
        try:
            self._conn = _connect(self.path, timeout=timeout)
            self._configure(synchronous)
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            self.close()
            what = f"{self.describe()} cannot be used"
            problem = _access_problem(self.data_dir, self.path)
            if problem is not None or getattr(exc, "sqlite_errorname", "").startswith(
                _ACCESS_ERRORS
            ):
                raise _open_error(self.data_dir, self.path, what, exc) from None
            raise errors.StorageError(
                f"{what}: {exc} (a damaged file, or not a bfx database)",
                {"path": str(self.path), "cause": type(exc).__name__},
            ) from None
        except BaseException:
            self.close()
            raise

    def _configure(self, synchronous: str) -> None:
        conn = self._conn
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id not in (0, APPLICATION_ID):
            raise errors.StorageError(
                f"{self.describe()} belongs to another application "
                f"(application_id {app_id:#x}); refusing to use it",
                {"path": str(self.path), "application_id": app_id},
            )
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise errors.StorageError(
                f"{self.describe()}: could not switch to WAL mode (got {mode})", {}
            )
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Checkpoints run on a thread of their own, not inside a commit (checkpoint.py).
        conn.execute("PRAGMA wal_autocheckpoint = 0")

    def describe(self) -> str:
        return f"SQLite database {self.path}"

    # ---- start-up from a snapshot ----

    def open_arena(self) -> Arena:
        """The arena the serving process loaded (a forked worker), else the snapshot
        plus the log after it when the snapshot is usable (see
        :mod:`bfx.storage.snapshot`), else a full load, after which a snapshot is
        written for the next start."""
        with self._lock:
            arena = self._adopt()
            if arena is None:  # an empty arena is falsy: no `or`
                arena = self._from_snapshot()
            if arena is not None:
                return arena
            arena = Arena()
            self.attach(arena)
            self.write_snapshot()
            return arena

    def _from_snapshot(self) -> Arena | None:
        found = snapshot.read_header(self.data_dir)
        if found is None:
            return None
        header, offset = found
        if header.store_id != self.store_id or header.last_change != self.change_at(header.seq):
            log.info("storage: the arena snapshot does not match %s; loading in full", self.path)
            return None
        arena = snapshot.read(self.data_dir, offset)
        if arena is None:
            return None
        return self.resume(arena, header.seq)

    #: Whether a full load is read by the core itself (``rust/src/sqlite_load.rs``)
    #: when Python's SQLite library lets it; else, or when it declines, through Python.
    load_in_core = True

    def _load_records(self, arena: Arena) -> None:
        """Every substrate and relationship, read by the core straight from the
        database through the SQLite library Python's ``sqlite3`` runs on, in a read
        transaction of its own at the head this one's snapshot holds: no Python
        object per row (through Python, most of a full load's time). When the core
        declines (a Python whose ``sqlite3`` hides SQLite in itself, the head moved
        between the two reads, a row it does not take), the arena is empty again and
        the rows go through Python, which names a bad one."""
        why = self._load_in_core(arena) if self.load_in_core else "turned off"
        if why is None:
            return
        log.info("storage: full load through Python (the core's read declined: %s)", why)
        self._reserve(arena)  # the emptied arena lost its sizing
        super()._load_records(arena)

    def _load_in_core(self, arena: Arena) -> str | None:
        import _sqlite3

        module = getattr(_sqlite3, "__file__", None)
        if module is None:
            return "Python's sqlite3 is built into the interpreter"
        seq_query = "SELECT seq FROM bfx_head"
        seq = self._exec(seq_query).fetchone()[0]
        return arena.load_sqlite(
            module,
            str(self.path),
            seq_query,
            self._LOAD_SUBSTRATES,
            self._LOAD_RELATIONSHIPS,
            seq,
            int(self._timeout * 1000),
        )

    def write_snapshot(self) -> None:
        """Writes the arena as it is now (a cache for the next start)."""
        with self._lock:
            if self._arena is None or self._conn is None:
                return
            header = snapshot.Snapshot(self.store_id, self._seq, self.change_at(self._seq))
            snapshot.write(self.data_dir, self._arena, header)

    # ---- dialect hooks ----

    def _tables(self) -> set[str]:
        rows = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ).fetchall()
        return {r[0] for r in rows}

    def _begin_migration(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")
        self._conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def _commit_write(self, entries: int) -> None:
        self._commit()
        # A log entry is a row or two of the database: some 16 of them to a page.
        self._checkpoints.committed(1 + entries // 16)

    def _begin_write(self, nowait: bool = False) -> int:
        conn = self._conn
        if not nowait:
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
                    raise WouldBlock from None  # another process is writing
                raise
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        return conn.execute("SELECT seq FROM bfx_head").fetchone()[0]

    def _begin_read(self) -> None:
        self._conn.execute("BEGIN")

    def _begin_read_on(self, conn: Any) -> None:
        conn.execute("BEGIN")

    def _changed(self) -> bool:
        self._seen_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        return self._seen_version != self._data_version

    def _after_catch_up(self) -> None:
        self._data_version = self._seen_version

    def _reader(self) -> sqlite3.Connection:
        return _connect(self.path, read_only=True, timeout=self._timeout)

    def close(self) -> None:
        self._close_probe()
        self._checkpoints.close()
        with self._lock:
            if self._arena is not None and self._conn is not None:
                found = snapshot.read_header(self.data_dir)
                if found is None or found[0].seq != self._seq:
                    self.write_snapshot()
            conn, self._conn = self._conn, None
            self._arena = None
            if conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()


def backup(data_dir: str | os.PathLike[str], destination: str | os.PathLike[str]) -> int:
    """A consistent copy of a live database (SQLite's online backup), checked
    after writing; returns its size in bytes. Refuses to overwrite a file."""
    source_path = Path(data_dir).absolute() / DB_NAME
    dest = Path(destination).absolute()
    if not source_path.exists():
        raise errors.StorageError(f"no bfx database at {source_path}", {"path": str(source_path)})
    if dest.exists():
        raise errors.StorageError(f"{dest} exists; refusing to overwrite it", {"path": str(dest)})
    tmp = dest.with_name(dest.name + ".tmp")
    source = _connect(source_path, read_only=True)
    try:
        target = sqlite3.connect(tmp)
        try:
            source.backup(target)
            # The copy is a standalone file: no -wal to carry along.
            target.execute("PRAGMA journal_mode = DELETE")
            verdict = target.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            target.close()
    except sqlite3.Error as exc:
        tmp.unlink(missing_ok=True)
        raise errors.StorageError(f"backup of {source_path} failed: {exc}", {}) from None
    finally:
        source.close()
    if verdict != "ok":
        tmp.unlink(missing_ok=True)
        raise errors.StorageError(f"the backup failed its check: {verdict}", {})
    os.replace(tmp, dest)
    return dest.stat().st_size
