"""The storage interface, and the SQL logic both database backends share.

The Rust arena is the fast, in-memory view that every read is answered from; a
database is the system of record. Writes go through :meth:`Store.insert_substrates`
and friends, which for a database do, holding the database's write lock:

1. catch the arena up with the change log, so that it equals the database;
2. check the write against the arena (duplicates, collisions, missing endpoints,
   atomic batches: the same rules as the in-memory registry, from the same code);
3. write the rows and one change-log entry per row, and commit;
4. apply the same rows to the arena, and advance the cursor past them.

Every process follows the change log (``changes``: a gap-free sequence of adds and
deletes, numbered by the one-row ``bfx_head`` table that writers lock first, so
numbers are handed out in commit order). :meth:`Store.refresh` is the cheap
per-request check that another process wrote something, followed by the catch-up.

API keys (``bfx.security.keys``) live in every store too: :attr:`Store.keys` is the map
the authentication middleware reads (never the database), and a database store logs
each key added or revoked (op 5), so every process's map follows on its next refresh.
Users (``bfx.security.users``) likewise: :attr:`Store.users`, op 7 for an add or a removal.
Version chains, aliases and lenses (``bfx.storage.catalog``) likewise: :attr:`Store.catalog`,
ops 8 (a chain moved or grew), 9 (an alias) and 10 (a lens).

The log is also the public change feed (:meth:`Store.changes`, ``bfx.domain.changes``).
A database store keeps its last :attr:`Store.retention` entries: a writer prunes older
ones every so often (:meth:`SqlStore.prune`), and a process whose cursor fell behind the
oldest entry kept reloads in full instead of following the log (:meth:`SqlStore._reload`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from importlib import resources
from typing import Any

from bfx import errors
from bfx._core import Arena
from bfx.rows import ChangeRow, ChangeSlice, RelationshipRow, SubstrateRow
from bfx.security.keys import KeyRecord
from bfx.security.users import UserRecord
from bfx.storage.catalog import (
    OP_ALIAS,
    OP_CHAIN,
    OP_LENS,
    AliasRecord,
    Catalog,
    CatalogSql,
    Chain,
    HeadMove,
    LensRecord,
    VersionEntry,
)
from bfx.storage.metadata import set_metadata

__all__ = [
    "DEFAULT_RETENTION",
    "SCHEMA_VERSION",
    "SqlStore",
    "Store",
    "WouldBlock",
    "Write",
    "from_db",
    "reconcile",
    "to_db",
]

log = logging.getLogger("bfx.storage")

#: The schema this bfx writes and reads; a database with a higher one is refused.
SCHEMA_VERSION = 4

_MASK = (1 << 64) - 1
_SIGN = 1 << 63

OP_ADD_SUBSTRATE = 1
OP_DELETE_SUBSTRATE = 2
OP_ADD_RELATIONSHIP = 3
OP_DELETE_RELATIONSHIP = 4
#: An API key was added or revoked: re-read its row (``api_keys``).
OP_KEY = 5
#: A substrate's metadata was replaced (``PATCH``): re-read its row.
OP_UPDATE_SUBSTRATE = 6
#: A user was added or removed: re-read its row (``users``; gone means removed).
OP_USER = 7
# 8-10: a version chain, an alias, a lens (``bfx.storage.catalog``: OP_CHAIN, OP_ALIAS,
# OP_LENS).

#: Change-log entries a store keeps by default (``--changes-retention``; 0: all). At
#: ~20-40 bytes an entry on disk that is some 40 MB, and a process that falls further
#: behind than this (stopped for a million writes) reloads in full.
DEFAULT_RETENTION = 1_000_000
#: A writer prunes after every this many entries it wrote (fewer when the retention is
#: smaller: half of it), so pruning is one cheap statement now and then, never per request.
PRUNE_EVERY = 1_024
#: Entries deleted per pruning transaction (each holds the write lock briefly), and the
#: most transactions one pruning runs (what is left waits for the next one).
PRUNE_BATCH = 10_000
PRUNE_ROUNDS = 100

#: Rows fetched per round trip while loading or catching up. Larger batches load no
#: faster (1M substrates: 15.0 s at 8,192, 14.8 s at 65,536) but their Python rows
#: raised a full load's peak memory by ~80 MB (264 vs 342 B per substrate at 1M).
FETCH = 8_192

#: Chunks of ``FETCH`` rows a full load reads ahead of the arena (a bound on the
#: rows in memory while the reading thread runs ahead).
LOAD_AHEAD = 2

#: How a stored time is read: as a 64-bit integer whatever was stored (SQLite keeps
#: any value a hand edit put there; a REAL or TEXT would otherwise stop every load).
#: Out of datetime's range it is clamped when read (``bfx.models.from_micros``).
_TIME = "CAST({} AS BIGINT)"


_KEY_SELECT = (
    "SELECT id, name, scopes, digest, "
    + ", ".join(_TIME.format(c) for c in ("created_us", "expires_us", "revoked_us"))
    + " FROM api_keys"
)


_USER_SELECT = (
    "SELECT id, name, scopes, password_hash, " + _TIME.format("created_us") + " FROM users"
)


def _user_record(row: Sequence[Any]) -> UserRecord:
    return UserRecord(
        user_id=format(from_db(row[0]), "016x"),
        name=row[1],
        scopes=tuple(row[2].split()),
        password_hash=row[3],
        created_us=row[4],
    )


def _key_db_id(key_id: str) -> int:
    return to_db(int(key_id, 16))


def _key_record(row: Sequence[Any]) -> KeyRecord:
    try:
        return KeyRecord(
            key_id=format(from_db(row[0]), "016x"),
            name=row[1],
            scopes=tuple(row[2].split()),
            digest=bytes.fromhex(row[3]),
            created_us=row[4],
            expires_us=row[5],
            revoked_us=row[6],
        )
    except (AttributeError, TypeError, ValueError):
        raise errors.StorageError(
            "a stored API key cannot be read; the database is damaged or was edited by hand",
            {"key": format(from_db(row[0]), "016x") if isinstance(row[0], int) else None},
        ) from None


def _user_exists(name: str) -> errors.BfxError:
    return errors.DuplicateError(f"a user named {name!r} exists", {"username": name})


def to_db(identity: int) -> int:
    """A u64 id as the signed 64-bit integer both databases store."""
    return identity - (1 << 64) if identity >= _SIGN else identity


def from_db(value: int) -> int:
    return value & _MASK


class Store:
    """Where records live. The registry calls these with its arena attached."""

    #: Survives a restart of the process.
    durable: bool = False
    #: Other processes may write to it (so :meth:`refresh` has work to do).
    shared: bool = False
    #: :meth:`refresh` costs a network round trip (PostgreSQL), so concurrent requests
    #: share one (``bfx.asgi.middleware.freshness``); else it is cheap enough per request.
    check_is_round_trip: bool = False
    #: ``memory``, ``sqlite`` or ``postgresql``.
    backend: str = "memory"
    #: The last change-log entry applied to the arena (0 without a log).
    seq: int = 0
    #: Serialises writes (the in-memory store's check and apply; a database store
    #: takes its own lock and the database's).
    _write_lock: threading.Lock
    #: Change-log entries kept (0: all of them); older ones are pruned.
    retention: int = DEFAULT_RETENTION

    #: Usable-or-expired API keys by key id (revoked ones are dropped): what request
    #: authentication reads, so it costs no database round trip.
    keys: dict[str, KeyRecord]
    #: The key of the stored key digests (a database keeps it in ``bfx_meta``).
    key_secret: bytes
    #: Users by name, for login and for checking bfx-issued tokens (no round trip).
    users: dict[str, UserRecord]
    #: The HS256 key of bfx-issued tokens unless ``BFX_JWT_SECRET`` is set (a database
    #: keeps it in ``bfx_meta``; the in-memory store makes one per process).
    jwt_secret: bytes
    #: Version chains, aliases and stored lenses (``bfx.storage.catalog``): read on
    #: requests without a round trip, followed through the change log (ops 8-10).
    catalog: Catalog

    def __init__(self) -> None:
        self._write_lock = threading.Lock()
        self.catalog = Catalog()
        #: Held by the in-memory write path around an arena write and its :meth:`log`.
        self.log_lock = self._write_lock
        self.keys = {}
        self.key_secret = secrets.token_bytes(32)
        self.users = {}
        self.jwt_secret = secrets.token_bytes(32)

    # A full load reads the columns as stored (ids as the signed 64-bit integers,
    # NULL blobs as None): no text made per row in the database or in Python,
    # for ``Arena.load_substrates``/``load_relationships``.
    _LOAD_SUBSTRATES = (
        "SELECT expression_type, expression_code, canonical_code, metadata, "
        f"{_TIME.format('created_us')}, id FROM substrates"
    )
    _LOAD_RELATIONSHIPS = (
        "SELECT rel_type, source_id, target_id, bidirectional, constraints, "
        f"{_TIME.format('created_us')} FROM relationships"
    )

    def attach(self, arena: Arena) -> None:
        """Fills ``arena`` with what is stored; called once, before any other call."""
        self._arena = arena

    def release_arena(self) -> None:
        """Forgets the arena without writing anything (no snapshot at close): the
        process that loaded it hands it on (:mod:`bfx.storage.inherit`)."""
        self._arena = None

    def open_arena(self) -> Arena:
        """A new arena holding what is stored, attached (the registry's start-up)."""
        arena = Arena()
        self.attach(arena)
        return arena

    def describe(self) -> str:
        """One line for the service's start-up message (no passwords)."""
        raise NotImplementedError

    def refresh(self) -> int:
        """Applies other processes' writes to the arena; returns how many changes."""
        return 0

    def ping(self) -> None:
        """Raise :class:`~bfx.errors.StorageError` unless the store answers now (the
        readiness probe). In memory: it always does."""

    def set_retention(self, entries: int) -> None:
        """Keeps the last ``entries`` of the change log (0: all of them)."""
        self.retention = entries

    def changes(self, since: int, limit: int, ops: Collection[int]) -> ChangeSlice:
        """At most ``limit`` log entries after ``since`` whose op is in ``ops``, in
        sequence order, with the log's head and floor, all from one consistent read."""
        raise NotImplementedError

    def log(self, op: int, identity: int) -> None:
        """The in-memory store's write path logs what it wrote to the arena, holding
        :attr:`log_lock` across both (so the log's order is the arena's). A database
        store logs inside :meth:`write` and is never called here."""

    def log_many(self, op: int, ids: Sequence[int]) -> None:
        """:meth:`log` for several ids."""

    # The write path's primitives; the engine (``bfx.engine``) drives them.

    #: Whether :meth:`write` can be asked not to wait (``nowait``): a store whose write
    #: is quick when nothing stands in its way (SQLite without a sync per commit).
    writes_without_waiting = False
    #: A write done without waiting left the change log's pruning due (see
    #: :meth:`SqlStore.prune`): the caller runs ``prune_if_due`` where it may wait.
    prune_due = False

    @contextlib.contextmanager
    def write(self, *, nowait: bool = False) -> Iterator[Write]:
        """One write: held alone, the arena current. The body checks against the
        arena and fills ``w`` through :meth:`add_substrates` and friends; on a normal
        exit the write is committed, then ``w.after`` applies it to the arena, before
        the next write starts. The in-memory store has nothing to commit.

        ``nowait`` (a caller on the event loop, only where
        :attr:`writes_without_waiting`): :class:`WouldBlock`, before anything is
        written, rather than wait for this process's lock, another process's write or
        a catch-up with what other processes wrote; and pruning is left due."""
        with self._write_lock:
            w = Write()
            yield w
            if w.after is not None:
                w.after()

    def add_substrates(self, w: Write, rows: Sequence[tuple[SubstrateRow, int]]) -> None:
        """Stores checked rows with their ids, within ``w``."""

    def add_relationships(self, w: Write, rows: Sequence[tuple[RelationshipRow, int]]) -> None:
        """Stores checked rows with their ids, within ``w``."""

    def remove_substrate(self, w: Write, identity: int) -> None:
        """Deletes a substrate (its relationships go with it), within ``w``."""

    def remove_relationship(self, w: Write, rid: int) -> None:
        """Deletes a relationship, within ``w``."""

    def update_substrate(self, w: Write, identity: int, metadata: bytes) -> None:
        """Replaces a substrate's metadata, within ``w``."""

    def check_applied(self, answers: list[Any], kind: str) -> None:
        """Raises StorageError if the arena refused rows it was given to apply."""
        self._refused(answers, f"the arena refuses a {kind} it was given")

    def _refused(self, answers: list[Any], what: str) -> None:
        for answer in answers:
            # A duplicate is an add already applied (the log is replayed from a cursor
            # that may precede rows loaded with their current content).
            if isinstance(answer, errors.BfxError) and not isinstance(
                answer, errors.DuplicateError
            ):
                raise errors.StorageError(
                    f"{self.describe()}: {what} ({answer.message})",
                    {"cause": answer.to_dict()},
                )

    def export_rows(self) -> Iterator[SubstrateRow | RelationshipRow] | None:
        """A consistent stream of every substrate row, then every relationship row,
        or None to read the arena."""
        return None

    # API keys: the in-memory store keeps them in :attr:`keys` alone.

    def list_keys(self) -> list[KeyRecord]:
        """Every key not revoked (expired ones included), oldest first."""
        return sorted(self.keys.values(), key=lambda k: (k.created_us, k.key_id))

    def add_key(self, record: KeyRecord) -> None:
        with self._write_lock:
            self.keys[record.key_id] = record

    def revoke_key(self, key_id: str, when_us: int) -> bool:
        """Revokes a key; False when no such key is usable-or-expired (unknown, or
        revoked already)."""
        with self._write_lock:
            return self.keys.pop(key_id, None) is not None

    # Users: the in-memory store keeps them in :attr:`users` alone.

    def list_users(self) -> list[UserRecord]:
        """Every user, by name."""
        return sorted(self.users.values(), key=lambda u: u.name)

    def add_user(self, record: UserRecord) -> None:
        """Adds a user; DuplicateError when the name is taken."""
        with self._write_lock:
            if record.name in self.users:
                raise _user_exists(record.name)
            self.users[record.name] = record

    def remove_user(self, name: str) -> bool:
        """Removes a user; False when there is none of that name."""
        with self._write_lock:
            return self.users.pop(name, None) is not None

    # Chains, aliases, lenses: the in-memory store keeps them in :attr:`catalog` alone
    # (the caller updates it in ``w.after``); a database store writes their rows too.

    def save_chain_step(
        self, w: Write, chain_id: int, head: int, members: Sequence[VersionEntry], move: HeadMove
    ) -> None:
        """New members of a chain (if any), one history entry and its head, within ``w``."""

    def save_chain(self, w: Write, chain: Chain) -> None:
        """A whole chain (an import), within ``w``."""

    def save_alias(self, w: Write, record: AliasRecord) -> None:
        """Sets an alias (replacing one of that name), within ``w``."""

    def remove_alias(self, w: Write, name: str) -> None:
        """Removes an alias, within ``w``."""

    def save_lens(self, w: Write, record: LensRecord) -> None:
        """Adds a lens, within ``w``."""

    def remove_lens(self, w: Write, name: str) -> None:
        """Removes a lens, within ``w``."""

    def close(self) -> None:
        """Releases connections; the store is unusable afterwards."""


class Reconciled:
    """What :func:`reconcile` did: how many records it changed, and the arena's
    answers to the records it added (errors, if any, are damage)."""

    __slots__ = ("count", "refused")

    def __init__(self) -> None:
        self.count = 0
        self.refused: list[Any] = []


def reconcile(live: Arena, fresh: Arena, page: int = 4_096) -> Reconciled:
    """Changes ``live`` until it holds exactly what ``fresh`` holds: substrates and
    relationships ``fresh`` lacks removed, those it adds added, metadata replaced where
    only that differs. A record under the same id that differs otherwise (deleted and
    created again meanwhile: a new ``created_at``; an edge's constraints) is removed
    and added again (a substrate's relationships are then added back by the last pass)."""
    done = Reconciled()
    for identity in live.ids():
        if identity not in fresh:
            with contextlib.suppress(errors.NotFoundError):
                live.remove(identity)  # its relationships go with it
            done.count += 1
    gone: list[int] = []
    position: int | None = 0
    while position is not None:
        edges, position = live.scan_edges(position, page)
        for edge in edges:
            try:
                if fresh.edge(edge[0]) != edge:
                    gone.append(edge[0])
            except errors.NotFoundError:
                gone.append(edge[0])
    for rid in gone:
        with contextlib.suppress(errors.NotFoundError):
            live.unlink(rid)
    done.count += len(gone)
    position = 0
    while position is not None:
        records, position = fresh.scan(position, page)
        added = []
        for record in records:
            current = live.find(record[0])
            if current is not None and (current[1:4], current[5]) != (record[1:4], record[5]):
                live.remove(record[0])  # created again since: its edges come back below
                current = None
            if current is None:
                added.append(SubstrateRow.from_arena(record).arena_item())
            elif current[4] != record[4]:
                set_metadata(live, record[0], record[4])
                done.count += 1
        if added:
            answers, _ = live.insert_many(added)
            done.refused += answers
            done.count += len(added)
    position = 0
    while position is not None:
        edges, position = fresh.scan_edges(position, page)
        linked = []
        for edge in edges:
            try:
                live.edge(edge[0])
            except errors.NotFoundError:
                linked.append(RelationshipRow.from_arena(edge).arena_item())
        if linked:
            answers, _ = live.link_many(linked)
            done.refused += answers
            done.count += len(linked)
    return done


def _migration(dialect: str, version: int) -> str:
    name = f"{dialect}_{version:04d}.sql"
    return (resources.files("bfx.storage") / "migrations" / name).read_text("utf-8")


def _statements(script: str) -> list[str]:
    """A migration split into statements (they hold no ``;`` inside literals)."""
    lines = [ln for ln in script.splitlines() if not ln.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class WouldBlock(Exception):
    """A write asked not to wait (``write(nowait=True)``) would have had to: nothing
    was written; the caller writes again where it may wait. Never reaches a client."""


class Write:
    """What one write transaction logs, and how it then updates the arena."""

    __slots__ = ("after", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[int, int]] = []
        self.after: Callable[[], Any] | None = None


class SqlStore(CatalogSql, Store):
    """The shared logic of the SQLite and PostgreSQL backends.

    One connection, used under one lock: a write holds it from BEGIN until its rows
    are in the arena, so within a process the arena never lags its own writes.
    Subclasses provide the connection, the dialect's few differing statements, and
    :meth:`_changed` (the cheap check).
    """

    durable = True
    shared = True
    dialect = ""
    #: The placeholder style of the driver: statements here are written with ``?``.
    _param = "?"
    #: SQL expression that renders an id column as hex text the arena parses as u64.
    _hex = "printf('%x', {})"
    _false_bytes = "X''"

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._seq = 0
        self._conn: Any = None
        self._arena: Arena | None = None
        self.store_id = ""
        self.keys = {}
        self.key_secret = b""
        self.users = {}
        self.jwt_secret = b""
        self.catalog = Catalog()
        # The freshness check's own connection (see :meth:`refresh`), under its own
        # small lock, so that a request never waits behind this process's writer.
        self._probe_lock = threading.Lock()
        self._probe: Any = None
        self._probe_version: Any = None
        # The head this process's writer is committing (its own entries above
        # ``_seq`` are not yet in the arena, nor answered): see :meth:`refresh`.
        self._pending_head = 0
        # The change feed's reads, on a connection of their own (never behind a writer).
        self._feed_lock = threading.Lock()
        self._feed: Any = None
        # Entries this process wrote since it last pruned (see :meth:`prune`).
        self._unpruned = 0
        self.retention = DEFAULT_RETENTION

    # ---- dialect hooks ----------------------------------------------------------------

    def _begin_write(self, nowait: bool = False) -> int:
        """Starts a write transaction holding the write lock; returns the head seq.
        ``nowait``: :class:`WouldBlock` if another process holds the lock."""
        raise NotImplementedError

    def _begin_read(self) -> None:
        """Starts a transaction that reads one consistent snapshot."""
        raise NotImplementedError

    def _changed(self) -> bool:
        """Cheap: may another process have committed since the last look?"""
        raise NotImplementedError

    def _after_catch_up(self) -> None:
        """Remember whatever :meth:`_changed` compares against."""

    def _pipelined(self) -> contextlib.AbstractContextManager[Any]:
        """Around a write's log entries, head and commit: PostgreSQL sends them without
        waiting for each answer (pipeline mode), one round trip instead of one each."""
        return contextlib.nullcontext()

    def _usable(self) -> None:
        """Before the write connection is used (caller holds the lock): reopen it if it
        was lost (PostgreSQL), or raise StorageError saying why it cannot be."""
        if self._conn is None:
            raise errors.StorageError(f"{self.describe()}: the store is closed", {})

    # ---- statements -------------------------------------------------------------------

    def _sql(self, text: str) -> str:
        return text if self._param == "?" else text.replace("?", self._param)

    def _exec(self, text: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(text), params)

    def _execmany(self, text: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            cur = self._conn.cursor()
            cur.executemany(self._sql(text), rows)
            cur.close()

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _commit_write(self, entries: int) -> None:
        """Commits a write of ``entries`` log entries (SQLite counts them towards its
        next checkpoint)."""
        self._commit()

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.execute("ROLLBACK")

    # ---- schema -----------------------------------------------------------------------

    def _tables(self) -> set[str]:
        raise NotImplementedError

    def _migrate(self) -> None:
        """Creates or upgrades the schema inside one write transaction (so that
        several workers starting together migrate once); refuses a database that is
        not bfx's or whose schema is newer than this bfx."""
        with self._lock:
            self._begin_migration()
            try:
                version = self._schema_version()
                if version < SCHEMA_VERSION:
                    for v in range(version + 1, SCHEMA_VERSION + 1):
                        for statement in _statements(_migration(self.dialect, v)):
                            self._exec(statement)
                    if version == 0:
                        self._exec(
                            "INSERT INTO bfx_meta (key, value) VALUES ('store_id', ?)",
                            (str(uuid.uuid4()),),
                        )
                        self._exec(
                            "INSERT INTO bfx_meta (key, value) VALUES ('schema_version', ?)",
                            (str(SCHEMA_VERSION),),
                        )
                    else:
                        self._exec(
                            "UPDATE bfx_meta SET value = ? WHERE key = 'schema_version'",
                            (str(SCHEMA_VERSION),),
                        )
                    log.info("storage: schema %d -> %d", version, SCHEMA_VERSION)
                row = self._exec("SELECT value FROM bfx_meta WHERE key = 'store_id'").fetchone()
                self.store_id = row[0] if row else ""
                self.key_secret = self._key_secret()
                self.jwt_secret = self._meta_secret("jwt_secret")
                self._commit()
            except errors.BfxError:
                self._rollback()
                raise
            except Exception as exc:
                self._rollback()
                raise self._storage_error("the schema check or migration failed", exc) from exc

    def _schema_version(self) -> int:
        tables = self._tables()
        if "bfx_meta" not in tables:
            if tables:
                raise errors.StorageError(
                    f"{self.describe()} holds tables that are not bfx's "
                    f"({', '.join(sorted(tables)[:5])}); refusing to use it",
                    {"tables": sorted(tables)},
                )
            return 0
        row = self._exec("SELECT value FROM bfx_meta WHERE key = 'schema_version'").fetchone()
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            raise errors.StorageError(
                f"{self.describe()}: bfx_meta has no readable schema_version", {}
            ) from None
        if version > SCHEMA_VERSION:
            raise errors.StorageError(
                f"{self.describe()} has schema version {version}, newer than this bfx "
                f"understands ({SCHEMA_VERSION}); upgrade bfx",
                {"schema_version": version, "supported": SCHEMA_VERSION},
            )
        return version

    def _begin_migration(self) -> None:
        """Starts the write transaction the schema check and migration run in."""
        raise NotImplementedError

    def _key_secret(self) -> bytes:
        """The store's key for key digests, made on first use (inside the
        migration's transaction, so workers starting together agree on one)."""
        row = self._exec("SELECT value FROM bfx_meta WHERE key = 'key_secret'").fetchone()
        if row is None:
            value = secrets.token_hex(32)
            self._exec("INSERT INTO bfx_meta (key, value) VALUES ('key_secret', ?)", (value,))
            return bytes.fromhex(value)
        try:
            secret = bytes.fromhex(row[0])
            if not 16 <= len(secret) <= 64:  # what keyed BLAKE2b takes
                raise ValueError(len(secret))
            return secret
        except (TypeError, ValueError):
            raise errors.StorageError(
                f"{self.describe()}: bfx_meta has no readable key_secret", {}
            ) from None

    def _meta_secret(self, name: str) -> bytes:
        """32 random bytes kept in ``bfx_meta`` under ``name``, made on first use (in
        the migration's transaction, like the key secret)."""
        row = self._exec("SELECT value FROM bfx_meta WHERE key = ?", (name,)).fetchone()
        if row is None:
            value = secrets.token_hex(32)
            self._exec("INSERT INTO bfx_meta (key, value) VALUES (?, ?)", (name, value))
            return bytes.fromhex(value)
        try:
            secret = bytes.fromhex(row[0])
            if len(secret) < 32:  # RFC 7518: an HS256 key has at least 256 bits
                raise ValueError(len(secret))
            return secret
        except (TypeError, ValueError):
            raise errors.StorageError(
                f"{self.describe()}: bfx_meta has no readable {name}", {}
            ) from None

    # ---- loading and following the log --------------------------------------------------

    def _substrate_select(self) -> str:
        h = self._hex.format("s.id")
        return (
            "SELECT s.expression_type, s.expression_code, s.canonical_code, "
            f"coalesce(s.metadata, {self._false_bytes}), {_TIME.format('s.created_us')}, {h}"
        )

    def _relationship_select(self) -> str:
        return (
            f"SELECT r.rel_type, {self._hex.format('r.source_id')}, "
            f"{self._hex.format('r.target_id')}, r.bidirectional, "
            f"coalesce(r.constraints, {self._false_bytes}), {_TIME.format('r.created_us')}"
        )

    def attach(self, arena: Arena) -> None:
        """Loads every record in one consistent read (see :meth:`_load_into`)."""
        with self._lock:
            self._arena = arena
            self._load_into(arena)

    # ---- start-up from an arena loaded elsewhere (a snapshot, the serving process) ----

    def open_arena(self) -> Arena:
        """The arena ``bfx serve``'s main process loaded, when this is a worker it
        forked (:mod:`bfx.storage.inherit`), else a full load."""
        with self._lock:
            arena = self._adopt()
            if arena is None:
                arena = Arena()
                self.attach(arena)
            return arena

    def _adopt(self) -> Arena | None:
        from bfx.storage import inherit

        found = inherit.take(self.store_id)
        if found is None:
            return None
        if found.last_change != self.change_at(found.seq):
            log.warning(
                "storage: the change log no longer holds where the inherited arena ends "
                "(pruned, or the database was replaced); loading in full"
            )
            return None
        return self.resume(found.arena, found.seq)

    def resume(self, arena: Arena, seq: int) -> Arena:
        """Takes ``arena``, which reflects the log up to ``seq``, and catches it up.
        Caller holds the lock and has checked ``change_at(seq)``."""
        self._arena = arena
        self._seq = seq
        # Keys, users and the catalog are not in the arena: read them all; the catch-up
        # re-reads any the log touched since.
        self._load_keys()
        self._load_users()
        self._load_catalog()
        self._catch_up()
        return arena

    def change_at(self, seq: int) -> tuple[int, int] | None:
        """The change-log entry ``seq`` as ``(op, id)``, None when the log lacks it."""
        row = self._exec("SELECT op, id FROM changes WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else (row[0], row[1])

    def _load_into(self, arena: Arena) -> None:
        self._changed()
        self._begin_read()
        try:
            seq = self._exec("SELECT seq FROM bfx_head").fetchone()[0]
            self._reserve(arena)
            self._load_records(arena)
            self._load_keys()
            self._load_users()
            self._load_catalog()
        finally:
            self._rollback()
        self._seq = seq
        self._after_catch_up()

    def _reserve(self, arena: Arena) -> None:
        """Sizes the arena's indices for the stored records, once: growing the
        relationship index rehashes every relationship."""
        counts = self._exec(
            "SELECT (SELECT count(*) FROM substrates), (SELECT count(*) FROM relationships)"
        ).fetchone()
        arena.reserve(int(counts[0]), int(counts[1]))

    def _load_records(self, arena: Arena) -> None:
        """Every substrate, then every relationship, read in the caller's read
        transaction on a thread of its own while this one loads the chunks it has
        read: the database's reading and the core's loading overlap (both release
        the GIL for their own work). At most ``LOAD_AHEAD`` chunks wait between them.
        A row the arena refuses stops the load with a StorageError naming it."""
        chunks: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=LOAD_AHEAD)
        stop = threading.Event()

        def put(item: tuple[str, Any]) -> None:
            while not stop.is_set():
                try:
                    chunks.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def read() -> None:
            try:
                for kind, query in (
                    ("substrate", self._LOAD_SUBSTRATES),
                    ("relationship", self._LOAD_RELATIONSHIPS),
                ):
                    cur = self._stream(self._conn, query)
                    try:
                        while not stop.is_set():
                            rows = cur.fetchmany(FETCH)
                            if not rows:
                                break
                            put((kind, rows))
                    finally:
                        cur.close()
                put(("end", None))
            except BaseException as exc:  # handed to the loading thread, raised there
                put(("error", exc))

        loaders = {"substrate": arena.load_substrates, "relationship": arena.load_relationships}
        reader = threading.Thread(target=read, name="bfx-full-load", daemon=True)
        reader.start()
        try:
            while True:
                kind, rows = chunks.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise rows
                failed = loaders[kind](rows)
                if failed is not None:
                    index, answer = failed
                    raise errors.StorageError(
                        f"{self.describe()}: a stored {kind} cannot be loaded "
                        f"({answer.message}); the database is damaged or was edited by hand",
                        {"record": repr(rows[index])[:200], "cause": answer.to_dict()},
                    )
        finally:
            stop.set()
            reader.join()

    def refresh(self) -> int:
        """Catches the arena up with what other processes committed, before a
        request reads. It never waits behind this process's own writer (an import
        holding the write lock for a whole chunk): the committed head of the log is
        read on a connection of its own, and only when it is ahead of what the
        arena holds (another process wrote) is the write lock taken to catch up.
        A local write in flight is not yet answered, so a request need not see it
        (nor wait for it: ``_pending_head``); every write answered before the
        request started is committed, so its log entry is at most that head, and
        read-your-writes holds."""
        if self._arena is None:
            return 0
        with self._probe_lock:
            look = self._look()
        if look is None:
            return 0
        version, head = look
        if head > max(self._seq, self._pending_head):
            with self._lock:
                if self._arena is None:
                    return 0
                self._usable()
                try:
                    applied = self._catch_up()
                except errors.BfxError:
                    raise
                except Exception as exc:  # a connection lost mid-way: reopened next time
                    raise self._storage_error("could not read the change log", exc) from exc
        else:
            applied = 0
        # Everything committed before ``version`` was read is in the arena now.
        with self._probe_lock:
            self._probe_version = version
        return applied

    def _look(self) -> tuple[Any, int] | None:
        """``(version, committed head)`` read on the probe connection, or None when
        nothing was committed since the last look that found the arena current
        (SQLite's ``PRAGMA data_version``, no I/O). Caller holds the probe lock."""
        if self._conn is None:
            return None
        try:
            if self._probe is None:
                self._probe = self._reader()
            version = None
            if self.dialect == "sqlite":
                version = self._probe.execute("PRAGMA data_version").fetchone()[0]
                if version == self._probe_version:
                    return None
            return version, self._probed_head(self._probe)
        except Exception as exc:
            # Reconnect on the next request (a dropped PostgreSQL connection).
            self._close_probe_locked()
            raise self._storage_error("could not check the change log", exc) from exc

    def _probed_head(self, probe: Any) -> int:
        """The committed head of the change log, read on the probe connection."""
        return probe.execute("SELECT seq FROM bfx_head").fetchone()[0]  # type: ignore[no-any-return]

    def ping(self) -> None:
        """One query on the probe connection (reconnecting if it was lost), and the
        write connection not known to be broken."""
        with self._probe_lock:
            if self._conn is None:
                raise errors.StorageError(f"{self.describe()}: the store is closed", {})
            try:
                if self._probe is None:
                    self._probe = self._reader()
                self._probe.execute("SELECT 1").fetchone()
            except Exception as exc:
                self._close_probe_locked()
                raise self._storage_error("the database does not answer", exc) from exc
        # A write connection that was lost (psycopg marks it broken) is reopened here,
        # as before the next write: ready again once the database is back. A writer
        # holding the lock has a live connection: the probe does not wait for it.
        conn = self._conn
        lost = conn is not None and (
            getattr(conn, "broken", False) or getattr(conn, "closed", 0) is True
        )
        if lost and self._lock.acquire(timeout=1.0):
            try:
                self._usable()
            finally:
                self._lock.release()

    def _close_probe(self) -> None:
        """Closes the connections of its own that refresh and the change feed read on."""
        with self._probe_lock:
            self._close_probe_locked()
        with self._feed_lock:
            self._close_feed_locked()

    def _close_probe_locked(self) -> None:
        conn, self._probe, self._probe_version = self._probe, None, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _catch_up(self) -> int:
        """Applies every change after the cursor, in order. Caller holds the lock."""
        arena = self._require_arena()
        # Look before reading: a commit after this look is caught by the next one.
        self._changed()
        applied = 0
        while True:
            rows = self._exec(
                "SELECT c.seq, c.op, c.id FROM changes c WHERE c.seq > ? ORDER BY c.seq LIMIT ?",
                (self._seq, FETCH),
            ).fetchall()
            if not rows:
                break
            if rows[0][0] != self._seq + 1:
                # The entries right after the cursor were pruned (the log has no gaps
                # otherwise): following it would silently miss them.
                applied += self._reload(arena, rows[0][0])
                continue
            self._apply_changes(arena, rows)
            applied += len(rows)
            self._seq = rows[-1][0]
        self._after_catch_up()
        return applied

    def _reload(self, arena: Arena, oldest: int) -> int:
        """Makes ``arena`` equal to the database when the log can no longer take it
        there: a full load into a new arena (one consistent read, keys and users
        included, the cursor set to its head), then ``arena`` changed record by record
        to match it. The arena stays the same object (the registry's parts hold it);
        a reader meanwhile sees each record either as it was or as it is. Returns how
        many records changed. Caller holds the lock."""
        log.warning(
            "storage: %s: this process is at change %d but the log now starts at %d "
            "(pruned past --changes-retention); reloading in full",
            self.describe(), self._seq, oldest,
        )  # fmt: skip
        fresh = Arena()
        # On a connection of its own: this one may be inside a write's transaction
        # (a writer catches up first), which a load's read transaction cannot nest in.
        # With the write lock held nobody commits meanwhile, so both see one state.
        conn, main = self._reader(), self._conn
        self._conn = conn
        try:
            self._load_into(fresh)
        finally:
            self._conn = main
            with contextlib.suppress(Exception):
                conn.close()
        changed = reconcile(arena, fresh)
        self._refused(changed.refused, "the arena refuses a record of a full reload")
        return changed.count

    def _apply_changes(self, arena: Arena, changes: list[tuple]) -> None:
        """Applies a slice of the log. Adds are read back with their current rows; an
        add whose row is gone was undone by a later delete in the log, so it is
        skipped, and the arena ends equal to the database whatever happened between."""
        run: list[int] = []
        run_op = 0
        for _seq, op, db_id in changes:
            if op != run_op and run:
                self._apply_run(arena, run_op, run)
                run = []
            run_op = op
            run.append(db_id)
        if run:
            self._apply_run(arena, run_op, run)

    def _apply_run(self, arena: Arena, op: int, ids: list[int]) -> None:
        if op == OP_ADD_SUBSTRATE:
            rows = self._rows_by_id(
                "substrates", self._substrate_select() + " FROM substrates s", ids
            )
            answers, _ = arena.insert_many(rows)
            self._refused(answers, "the change log holds a substrate the arena refuses")
        elif op == OP_ADD_RELATIONSHIP:
            rows = self._rows_by_id(
                "relationships", self._relationship_select() + " FROM relationships r", ids
            )
            answers, _ = arena.link_many(rows)
            self._refused(answers, "the change log holds a relationship the arena refuses")
        elif op == OP_DELETE_SUBSTRATE:
            for db_id in ids:
                with contextlib.suppress(errors.NotFoundError):
                    arena.remove(from_db(db_id))
        elif op == OP_DELETE_RELATIONSHIP:
            for db_id in ids:
                with contextlib.suppress(errors.NotFoundError):
                    arena.unlink(from_db(db_id))
        elif op == OP_UPDATE_SUBSTRATE:
            rows = self._rows_by_id(
                "substrates", self._substrate_select() + " FROM substrates s", ids
            )
            # A row gone was deleted later in the log: that entry removes it.
            for row in rows:
                identity = int(row[5], 16)
                if identity in arena:
                    set_metadata(arena, identity, bytes(row[3]))
        elif op == OP_KEY:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self._exec(f"{_KEY_SELECT} WHERE id IN ({marks})", chunk).fetchall():
                    record = _key_record(row)
                    if record.revoked_us is None:
                        self.keys[record.key_id] = record
                    else:
                        self.keys.pop(record.key_id, None)
        elif op == OP_USER:
            self._reload_users(ids)
        elif op in (OP_CHAIN, OP_ALIAS, OP_LENS):
            self._apply_catalog(op, ids)
        else:
            raise errors.StorageError(f"unknown change-log operation {op}", {"op": op})

    def _rows_by_id(self, table: str, select: str, ids: list[int]) -> list[tuple]:
        alias = "s" if table == "substrates" else "r"
        out: list[tuple] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out += self._exec(f"{select} WHERE {alias}.id IN ({marks})", chunk).fetchall()
        return out

    # ---- writes -----------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self, *, nowait: bool = False) -> Iterator[Write]:
        """A write transaction. The body checks the write against the (caught-up)
        arena, runs its statements and fills ``w.entries`` with ``(op, db_id)``;
        on a normal exit with entries they are numbered and committed, then
        ``w.after`` applies the write to the arena, all under the lock, so no
        other thread of this process sees the database ahead of its arena.
        Otherwise the transaction is rolled back. ``nowait``: see :meth:`Store.write`."""
        if not nowait:
            with self._lock:
                yield from self._locked_write(nowait=False)
            return
        if not self.writes_without_waiting or not self._lock.acquire(blocking=False):
            raise WouldBlock
        try:
            yield from self._locked_write(nowait=True)
        finally:
            self._lock.release()

    def _locked_write(self, *, nowait: bool) -> Iterator[Write]:
        """The body of :meth:`write`, its caller holding the lock."""
        self._usable()
        try:
            head = self._begin_write(nowait=nowait)
        except (errors.BfxError, WouldBlock):
            raise
        except Exception as exc:
            raise self._storage_error("could not start a write", exc) from exc
        w = Write()
        try:
            if head != self._seq:
                if nowait:  # catching up with other processes may take a while
                    raise WouldBlock
                if self._arena is None:
                    # A store opened without an arena (``bfx keys``) follows no
                    # log: its entries are numbered after the committed head.
                    self._seq = head
                else:
                    self._catch_up()
            yield w
            if not w.entries:
                self._rollback()
                return
            # The body's statements may read their answers (a row count); the log's
            # entries, the head and the commit need none: sent together.
            with self._pipelined():
                first = self._seq + 1
                self._execmany(
                    "INSERT INTO changes (seq, op, id) VALUES (?, ?, ?)",
                    [(first + i, op, db_id) for i, (op, db_id) in enumerate(w.entries)],
                )
                self._exec("UPDATE bfx_head SET seq = ?", (self._seq + len(w.entries),))
                # Entries up to here are in the arena (caught up under the lock) or
                # this write's own: a refresh that sees the head move while this
                # commit and its arena update finish need not wait for them.
                self._pending_head = self._seq + len(w.entries)
                self._commit_write(len(w.entries))
        except (errors.BfxError, WouldBlock):
            self._pending_head = self._seq
            self._rollback()
            raise
        except BaseException as exc:
            self._pending_head = self._seq
            self._rollback()
            if isinstance(exc, Exception):
                raise self._storage_error("a write failed; nothing was written", exc) from exc
            raise
        if w.after is not None:
            # Checked against this very state, so the arena cannot refuse it.
            w.after()
        # Advanced only once the arena holds the write: a refresh that finds the
        # head at or below ``_seq`` (without this lock) may rely on it.
        self._seq += len(w.entries)
        self._unpruned += len(w.entries)
        if self.retention and self._unpruned >= min(PRUNE_EVERY, max(1, self.retention // 2)):
            self.prune_due = True
            if not nowait:  # a prune deletes thousands of rows: not on the event loop
                self.prune_if_due()

    def prune_if_due(self) -> None:
        """Prunes if a write found it due (a write without waiting leaves it to its
        caller, to run where it may wait)."""
        with self._lock:
            if not self.prune_due:
                return
            self.prune_due = False
            self._unpruned = 0
            try:
                self.prune()
            except Exception:
                # The write is committed and must be answered as such; the next
                # pruning deletes what this one left.
                log.warning("storage: pruning the change log failed", exc_info=True)

    def prune(self) -> int:
        """Deletes the log entries older than the last :attr:`retention` (0: none), in
        transactions of at most :data:`PRUNE_BATCH` entries (each under the database's
        write lock, briefly), at most :data:`PRUNE_ROUNDS` of them; returns how many.
        A process whose cursor is behind what remains reloads in full (:meth:`_catch_up`)."""
        if not self.retention:
            return 0
        deleted = 0
        with self._lock:
            if self._conn is None:
                raise errors.StorageError("the store is closed", {})
            for _ in range(PRUNE_ROUNDS):
                try:
                    head = self._begin_write()
                    oldest = self._exec("SELECT min(seq) FROM changes").fetchone()[0]
                    cutoff = head - self.retention
                    if oldest is None or oldest > cutoff:
                        self._rollback()
                        break
                    upto = min(cutoff, oldest + PRUNE_BATCH - 1)
                    cur = self._exec("DELETE FROM changes WHERE seq <= ?", (upto,))
                    self._commit()
                except Exception as exc:
                    self._rollback()
                    raise self._storage_error("could not prune the change log", exc) from exc
                deleted += max(cur.rowcount, 0)
        if deleted:
            log.info("storage: pruned %d change-log entries", deleted)
        return deleted

    def changes(self, since: int, limit: int, ops: Collection[int]) -> ChangeSlice:
        """Read on a connection of its own, in one read transaction (one snapshot), so
        the head returned covers exactly the entries seen and a writer never waits."""
        if not ops:
            raise ValueError("no ops to read")
        marks = ",".join("?" * len(ops))
        with self._feed_lock:
            if self._conn is None:
                raise errors.StorageError(f"{self.describe()}: the store is closed", {})
            try:
                if self._feed is None:
                    self._feed = self._reader()
                conn = self._feed
                self._begin_read_on(conn)
                try:
                    head = conn.execute("SELECT seq FROM bfx_head").fetchone()[0]
                    oldest = conn.execute("SELECT min(seq) FROM changes").fetchone()[0]
                    rows = conn.execute(
                        self._sql(
                            f"SELECT seq, op, id FROM changes WHERE seq > ? AND op IN ({marks}) "
                            "ORDER BY seq LIMIT ?"
                        ),
                        (since, *ops, limit),
                    ).fetchall()
                finally:
                    conn.execute("ROLLBACK")
            except Exception as exc:
                self._close_feed_locked()
                raise self._storage_error("could not read the change log", exc) from exc
        floor = head if oldest is None else min(head, oldest - 1)
        return ChangeSlice([ChangeRow(r[0], r[1], from_db(r[2])) for r in rows], head, floor)

    def _close_feed_locked(self) -> None:
        conn, self._feed = self._feed, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _storage_error(self, what: str, exc: Exception) -> errors.StorageError:
        return errors.StorageError(
            f"{self.describe()}: {what}: {exc}", {"cause": type(exc).__name__}
        )

    def add_substrates(self, w: Write, rows: Sequence[tuple[SubstrateRow, int]]) -> None:
        self._execmany(
            "INSERT INTO substrates (id, expression_type, expression_code, canonical_code, "
            "metadata, created_us) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (to_db(i), r.expression_type, r.expression_code, r.canonical_code,
                 r.metadata or None, r.created_us)
                for r, i in rows
            ],
        )  # fmt: skip
        w.entries += [(OP_ADD_SUBSTRATE, to_db(i)) for _, i in rows]

    def add_relationships(self, w: Write, rows: Sequence[tuple[RelationshipRow, int]]) -> None:
        self._execmany(
            "INSERT INTO relationships (id, rel_type, source_id, target_id, bidirectional, "
            "constraints, created_us) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (to_db(i), r.rel_type, to_db(r.source), to_db(r.target), bool(r.bidirectional),
                 r.constraints or None, r.created_us)
                for r, i in rows
            ],
        )  # fmt: skip
        w.entries += [(OP_ADD_RELATIONSHIP, to_db(i)) for _, i in rows]

    def remove_substrate(self, w: Write, identity: int) -> None:
        self._exec("DELETE FROM substrates WHERE id = ?", (to_db(identity),))
        w.entries.append((OP_DELETE_SUBSTRATE, to_db(identity)))

    def remove_relationship(self, w: Write, rid: int) -> None:
        self._exec("DELETE FROM relationships WHERE id = ?", (to_db(rid),))
        w.entries.append((OP_DELETE_RELATIONSHIP, to_db(rid)))

    def update_substrate(self, w: Write, identity: int, metadata: bytes) -> None:
        self._exec(
            "UPDATE substrates SET metadata = ? WHERE id = ?", (metadata or None, to_db(identity))
        )
        w.entries.append((OP_UPDATE_SUBSTRATE, to_db(identity)))

    # ---- API keys ---------------------------------------------------------------------

    def _load_keys(self) -> None:
        """Every key not revoked, into :attr:`keys` (within the load's read)."""
        rows = self._exec(f"{_KEY_SELECT} WHERE revoked_us IS NULL").fetchall()
        self.keys = {r.key_id: r for r in map(_key_record, rows)}

    def list_keys(self) -> list[KeyRecord]:
        """From the database, so that it answers without an arena too (``bfx keys``)."""
        with self._lock:
            if self._conn is None:
                raise errors.StorageError("the store is closed", {})
            rows = self._exec(
                f"{_KEY_SELECT} WHERE revoked_us IS NULL ORDER BY created_us, id"
            ).fetchall()
        return [_key_record(r) for r in rows]

    def add_key(self, record: KeyRecord) -> None:
        with self.write() as w:
            self._exec(
                "INSERT INTO api_keys (id, name, scopes, digest, created_us, expires_us) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_key_db_id(record.key_id), record.name, " ".join(record.scopes),
                 record.digest.hex(), record.created_us, record.expires_us),
            )  # fmt: skip
            w.entries.append((OP_KEY, _key_db_id(record.key_id)))
            w.after = lambda: self.keys.__setitem__(record.key_id, record)

    def revoke_key(self, key_id: str, when_us: int) -> bool:
        db_id = _key_db_id(key_id)
        done = False
        with self.write() as w:
            cur = self._exec(
                "UPDATE api_keys SET revoked_us = ? WHERE id = ? AND revoked_us IS NULL",
                (when_us, db_id),
            )
            if cur.rowcount == 1:
                w.entries.append((OP_KEY, db_id))
                w.after = lambda: self.keys.pop(key_id, None)
                done = True
        return done

    # ---- users --------------------------------------------------------------------------

    def _load_users(self) -> None:
        """Every user, into :attr:`users` (within the load's read)."""
        self.users = {u.name: u for u in map(_user_record, self._exec(_USER_SELECT).fetchall())}

    def _reload_users(self, ids: list[int]) -> None:
        """Re-reads the users the log touched: a row found is added (or replaces one of
        its name), a row gone is a removal."""
        wanted = {format(from_db(i), "016x") for i in ids}
        found: list[UserRecord] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._exec(f"{_USER_SELECT} WHERE id IN ({marks})", chunk).fetchall()
            found += map(_user_record, rows)
        users = {n: u for n, u in self.users.items() if u.user_id not in wanted}
        users.update((u.name, u) for u in found)
        self.users = users  # replaced whole: a reader never sees it half-made

    def list_users(self) -> list[UserRecord]:
        """From the database, so that it answers without an arena too (``bfx users``)."""
        with self._lock:
            if self._conn is None:
                raise errors.StorageError("the store is closed", {})
            rows = self._exec(f"{_USER_SELECT} ORDER BY name").fetchall()
        return [_user_record(r) for r in rows]

    def add_user(self, record: UserRecord) -> None:
        db_id = to_db(int(record.user_id, 16))
        with self.write() as w:
            taken = self._exec("SELECT 1 FROM users WHERE name = ?", (record.name,)).fetchone()
            if taken is not None:
                raise _user_exists(record.name)
            self._exec(
                "INSERT INTO users (id, name, scopes, password_hash, created_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (db_id, record.name, " ".join(record.scopes), record.password_hash,
                 record.created_us),
            )  # fmt: skip
            w.entries.append((OP_USER, db_id))
            w.after = lambda: self.users.__setitem__(record.name, record)

    def remove_user(self, name: str) -> bool:
        done = False
        with self.write() as w:
            row = self._exec("SELECT id FROM users WHERE name = ?", (name,)).fetchone()
            if row is not None:
                self._exec("DELETE FROM users WHERE id = ?", (row[0],))
                w.entries.append((OP_USER, row[0]))
                w.after = lambda: self.users.pop(name, None)
                done = True
        return done

    def _require_arena(self) -> Arena:
        if self._arena is None:
            raise errors.StorageError("the store is closed or was never attached", {})
        return self._arena

    # ---- export -----------------------------------------------------------------------

    def _reader(self) -> Any:
        """A second connection for long reads, so exports never hold the write path."""
        raise NotImplementedError

    def export_rows(self) -> Iterator[SubstrateRow | RelationshipRow]:
        return self._export(self._export_conn())

    def _export_conn(self) -> Any:
        """A connection for one export, given back with :meth:`_export_done`."""
        return self._reader()

    def _export_done(self, conn: Any) -> None:
        conn.close()

    def _export(self, conn: Any) -> Iterator[SubstrateRow | RelationshipRow]:
        try:
            self._begin_read_on(conn)
            sub = (
                "SELECT id, expression_type, expression_code, canonical_code, "
                f"coalesce(metadata, {self._false_bytes}), {_TIME.format('created_us')} "
                "FROM substrates ORDER BY id"
            )
            rel = (
                "SELECT id, rel_type, source_id, target_id, bidirectional, "
                f"coalesce(constraints, {self._false_bytes}), {_TIME.format('created_us')} "
                "FROM relationships ORDER BY id"
            )
            for kind, query in (("substrate", sub), ("relationship", rel)):
                cur = self._stream(conn, query)
                while True:
                    rows = cur.fetchmany(4096)
                    if not rows:
                        break
                    if kind == "substrate":
                        for row in rows:
                            yield SubstrateRow(from_db(row[0]), *row[1:])
                    else:
                        for row in rows:
                            yield RelationshipRow(
                                from_db(row[0]), row[1], from_db(row[2]), from_db(row[3]),
                                bool(row[4]), row[5], row[6],
                            )  # fmt: skip
                cur.close()
        finally:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            self._export_done(conn)

    def _begin_read_on(self, conn: Any) -> None:
        raise NotImplementedError

    def _stream(self, conn: Any, query: str) -> Any:
        """A cursor over a large result, read with ``fetchmany``."""
        return conn.execute(query)

    @property
    def seq(self) -> int:  # type: ignore[override]
        """The last change this process has applied."""
        return self._seq

    @property
    def backend(self) -> str:  # type: ignore[override]
        return self.dialect
