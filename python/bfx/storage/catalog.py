"""Version chains, aliases and lenses: small stored tables every process keeps in memory.

Like API keys and users, they are read on requests (an alias on every invoke through
it), so each process holds them all in a :class:`Catalog` and a database store follows
the change log to keep it current (schema 4, ``migrations/*_0004.sql``):

- op 8 (:data:`OP_CHAIN`), id = the chain's id: re-read that chain's members, head and
  history (no head row: the chain is gone);
- op 9 (:data:`OP_ALIAS`), id = :func:`name_id` of the alias: re-read it (gone: removed);
- op 10 (:data:`OP_LENS`), id = :func:`name_id` of the lens: likewise.

A catalog's maps are replaced item by item under the store's write lock; a reader on
another thread sees an item before or after a change, never half of one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

__all__ = [
    "OP_ALIAS",
    "OP_CHAIN",
    "OP_LENS",
    "AliasRecord",
    "Catalog",
    "CatalogSql",
    "Chain",
    "HeadMove",
    "LensRecord",
    "VersionEntry",
    "name_id",
]

#: A chain's head moved, or a member was added (id: the chain id).
OP_CHAIN = 8
#: An alias was set or removed (id: :func:`name_id` of its name).
OP_ALIAS = 9
#: A lens was added or removed (id: :func:`name_id` of its name).
OP_LENS = 10

_MASK = (1 << 64) - 1


def name_id(name: str) -> int:
    """The stored id of an alias or lens: BLAKE2b-64 of the UTF-8 name, as the signed
    integer both databases keep (names are unique; the id names a row in the log)."""
    value = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    return value - (1 << 64) if value >= 1 << 63 else value


class VersionEntry(msgspec.Struct, frozen=True, gc=False):
    """One member of a chain: ``version`` counts from 1 (the substrate the chain began at)."""

    substrate: int
    version: int
    change_description: str | None
    created_us: int


class HeadMove(msgspec.Struct, frozen=True, gc=False):
    """One entry of a chain's history: where the head went, and why
    (``created``: the chain began, ``version``: a new version, ``rollback``)."""

    entry: int
    head: int
    action: str
    created_us: int


class Chain(msgspec.Struct, frozen=True):
    chain_id: int
    head: int
    #: Oldest first (by version).
    members: tuple[VersionEntry, ...]
    #: Oldest first.
    history: tuple[HeadMove, ...]

    def member(self, identity: int) -> VersionEntry | None:
        for entry in self.members:
            if entry.substrate == identity:
                return entry
        return None


class AliasRecord(msgspec.Struct, frozen=True, gc=False):
    name: str
    #: The substrate it was pointed at; invocations follow that substrate's chain head.
    substrate: int
    created_us: int


class LensRecord(msgspec.Struct, frozen=True, gc=False):
    name: str
    expression_code: str
    #: Parameter defaults, as stored JSON object bytes.
    parameters: bytes
    description: str | None
    created_us: int
    builtin: bool = False


class Catalog:
    """What one process knows of the chains, aliases and lenses of its store."""

    def __init__(self) -> None:
        self.chains: dict[int, Chain] = {}
        #: Member substrate -> its chain's id.
        self.chain_of: dict[int, int] = {}
        self.aliases: dict[str, AliasRecord] = {}
        #: Stored lenses only (the built-ins live in ``bfx.domain.lenses``).
        self.lenses: dict[str, LensRecord] = {}

    def chain_for(self, identity: int) -> Chain | None:
        chain_id = self.chain_of.get(identity)
        return None if chain_id is None else self.chains.get(chain_id)

    def set_chain(self, chain_id: int, chain: Chain | None) -> None:
        old = self.chains.get(chain_id)
        if chain is not None:
            for entry in chain.members:
                self.chain_of[entry.substrate] = chain_id
            self.chains[chain_id] = chain
        else:
            self.chains.pop(chain_id, None)
        if old is not None:
            kept = set() if chain is None else {e.substrate for e in chain.members}
            for entry in old.members:
                if entry.substrate not in kept:
                    self.chain_of.pop(entry.substrate, None)

    def set_alias(self, name: str, record: AliasRecord | None) -> None:
        if record is None:
            self.aliases.pop(name, None)
        else:
            self.aliases[name] = record

    def set_lens(self, name: str, record: LensRecord | None) -> None:
        if record is None:
            self.lenses.pop(name, None)
        else:
            self.lenses[name] = record


def _to_db(identity: int) -> int:
    return identity - (1 << 64) if identity >= 1 << 63 else identity


class CatalogSql:
    """The catalog's SQL, mixed into :class:`bfx.storage.base.SqlStore` (its ``_exec``,
    ``_execmany`` and ``_TIME`` casts). Each write method runs inside ``Store.write``
    and logs its entry; the caller updates the catalog in ``w.after``."""

    catalog: Catalog
    _exec: Callable[..., Any]
    _execmany: Callable[..., Any]

    # ---- reading ------------------------------------------------------------------------

    def _load_catalog(self) -> None:
        """Everything, into a new :attr:`catalog` (within the load's read)."""
        catalog = Catalog()
        heads = self._exec("SELECT chain_id FROM version_heads").fetchall()
        for (chain_id,) in heads:
            catalog.set_chain(chain_id & _MASK, self._read_chain(chain_id))
        for record in self._read_aliases(None):
            catalog.set_alias(record.name, record)
        for record in self._read_lenses(None):
            catalog.set_lens(record.name, record)
        self.catalog = catalog

    def _read_chain(self, db_chain: int) -> Chain | None:
        head = self._exec(
            "SELECT head_id FROM version_heads WHERE chain_id = ?", (db_chain,)
        ).fetchone()
        if head is None:
            return None
        members = self._exec(
            "SELECT substrate_id, version, change_description, CAST(created_us AS BIGINT) "
            "FROM version_members WHERE chain_id = ? ORDER BY version",
            (db_chain,),
        ).fetchall()
        history = self._exec(
            "SELECT entry, head_id, action, CAST(created_us AS BIGINT) "
            "FROM version_history WHERE chain_id = ? ORDER BY entry",
            (db_chain,),
        ).fetchall()
        return Chain(
            db_chain & _MASK,
            head[0] & _MASK,
            tuple(VersionEntry(r[0] & _MASK, r[1], r[2], r[3]) for r in members),
            tuple(HeadMove(r[0], r[1] & _MASK, r[2], r[3]) for r in history),
        )

    def _read_aliases(self, ids: Sequence[int] | None) -> list[AliasRecord]:
        select = "SELECT name, substrate_id, CAST(created_us AS BIGINT) FROM aliases"
        rows = self._rows(select, ids)
        return [AliasRecord(r[0], r[1] & _MASK, r[2]) for r in rows]

    def _read_lenses(self, ids: Sequence[int] | None) -> list[LensRecord]:
        select = (
            "SELECT name, expression_code, parameters, description, "
            "CAST(created_us AS BIGINT) FROM lenses"
        )
        rows = self._rows(select, ids)
        return [LensRecord(r[0], r[1], r[2].encode(), r[3], r[4]) for r in rows]

    def _rows(self, select: str, ids: Sequence[int] | None) -> list[Any]:
        if ids is None:
            return self._exec(select).fetchall()  # type: ignore[no-any-return]
        out: list[Any] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            out += self._exec(f"{select} WHERE id IN ({marks})", chunk).fetchall()
        return out

    def _apply_catalog(self, op: int, ids: list[int]) -> None:
        """A run of catalog entries of the log: re-read what they name."""
        catalog = self.catalog
        if op == OP_CHAIN:
            for db_chain in dict.fromkeys(ids):
                catalog.set_chain(db_chain & _MASK, self._read_chain(db_chain))
        elif op == OP_ALIAS:
            wanted = set(ids)
            found = {r.name: r for r in self._read_aliases(sorted(wanted))}
            for name in [n for n in catalog.aliases if name_id(n) in wanted]:
                if name not in found:
                    catalog.set_alias(name, None)
            for name, record in found.items():
                catalog.set_alias(name, record)
        else:
            wanted = set(ids)
            found_lenses = {r.name: r for r in self._read_lenses(sorted(wanted))}
            for name in [n for n in catalog.lenses if name_id(n) in wanted]:
                if name not in found_lenses:
                    catalog.set_lens(name, None)
            for name, lens in found_lenses.items():
                catalog.set_lens(name, lens)

    # ---- writing ------------------------------------------------------------------------

    def save_chain_step(
        self, w: Any, chain_id: int, head: int, members: Sequence[VersionEntry], move: HeadMove
    ) -> None:
        """New members (if any), one history entry and the head, within ``w``."""
        db_chain = _to_db(chain_id)
        self._execmany(
            "INSERT INTO version_members (substrate_id, chain_id, version, change_description, "
            "created_us) VALUES (?, ?, ?, ?, ?)",
            [
                (_to_db(m.substrate), db_chain, m.version, m.change_description, m.created_us)
                for m in members
            ],
        )
        self._exec(
            "INSERT INTO version_history (chain_id, entry, head_id, action, created_us) "
            "VALUES (?, ?, ?, ?, ?)",
            (db_chain, move.entry, _to_db(move.head), move.action, move.created_us),
        )
        self._exec(
            "INSERT INTO version_heads (chain_id, head_id) VALUES (?, ?) "
            "ON CONFLICT (chain_id) DO UPDATE SET head_id = excluded.head_id",
            (db_chain, _to_db(head)),
        )
        w.entries.append((OP_CHAIN, db_chain))

    def save_chain(self, w: Any, chain: Chain) -> None:
        """A whole chain (an import into a store without it), within ``w``."""
        db_chain = _to_db(chain.chain_id)
        self._execmany(
            "INSERT INTO version_members (substrate_id, chain_id, version, change_description, "
            "created_us) VALUES (?, ?, ?, ?, ?)",
            [
                (_to_db(m.substrate), db_chain, m.version, m.change_description, m.created_us)
                for m in chain.members
            ],
        )
        self._execmany(
            "INSERT INTO version_history (chain_id, entry, head_id, action, created_us) "
            "VALUES (?, ?, ?, ?, ?)",
            [(db_chain, h.entry, _to_db(h.head), h.action, h.created_us) for h in chain.history],
        )
        self._exec(
            "INSERT INTO version_heads (chain_id, head_id) VALUES (?, ?)",
            (db_chain, _to_db(chain.head)),
        )
        w.entries.append((OP_CHAIN, db_chain))

    def save_alias(self, w: Any, record: AliasRecord) -> None:
        db_id = name_id(record.name)
        self._exec("DELETE FROM aliases WHERE id = ?", (db_id,))
        self._exec(
            "INSERT INTO aliases (id, name, substrate_id, created_us) VALUES (?, ?, ?, ?)",
            (db_id, record.name, _to_db(record.substrate), record.created_us),
        )
        w.entries.append((OP_ALIAS, db_id))

    def remove_alias(self, w: Any, name: str) -> None:
        db_id = name_id(name)
        self._exec("DELETE FROM aliases WHERE id = ?", (db_id,))
        w.entries.append((OP_ALIAS, db_id))

    def save_lens(self, w: Any, record: LensRecord) -> None:
        db_id = name_id(record.name)
        self._exec(
            "INSERT INTO lenses (id, name, expression_code, parameters, description, created_us) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (db_id, record.name, record.expression_code, record.parameters.decode(),
             record.description, record.created_us),
        )  # fmt: skip
        w.entries.append((OP_LENS, db_id))

    def remove_lens(self, w: Any, name: str) -> None:
        db_id = name_id(name)
        self._exec("DELETE FROM lenses WHERE id = ?", (db_id,))
        w.entries.append((OP_LENS, db_id))
