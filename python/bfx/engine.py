"""The engine: the one owner of the store and the arena, and of the write path.

A write, holding the store's write lock (``Store.write``: the database's lock, the
arena caught up with the change log first):

1. is **checked** against the arena once: ``Arena.check_insert_many`` /
   ``check_link_many`` convert the rows into the core's own values, compute each id
   (hashing it once) and say what would happen to each item (id, duplicate,
   collision, missing endpoint, id mismatch), keeping the converted rows that
   passed in a ``Prepared`` handle;
2. its rows and their change-log entries are **committed** (a database store);
3. the handle is **applied** to the arena (``Arena.apply``): the ids already
   computed, nothing converted or hashed again, still under the lock.

So a write visits the arena once and hashes each id once (before: a dry run, then
the same rows converted, hashed and checked again). The in-memory store has no
commit between the check and the apply: its writes are one ``insert_many`` /
``link_many`` call. Why check-then-apply rather than apply-then-roll-back:
``docs/storage.md`` (The write path).

The engine answers in rows (:mod:`bfx.rows`); the domain (:mod:`bfx.domain`) adds
validation, batching and the sandbox, and its two faces (:class:`bfx.registry.Registry`,
the local services) turn rows into models or API records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bfx import errors, tracing
from bfx._core import Arena
from bfx.rows import RelationshipRow, SubstrateRow
from bfx.storage import Store
from bfx.storage.metadata import set_metadata
from bfx.tracing import STORE_WRITE, span

__all__ = ["Engine"]

_SCAN_PAGE = 4096

Answer = int | errors.BfxError


def _traced(traced: Any, store: Store, op: str, rows: int) -> None:
    """A store-write span's attributes (only when tracing: ``traced`` is the span)."""
    traced.set_attribute("bfx.store.op", op)
    traced.set_attribute("bfx.store.rows", rows)
    traced.set_attribute("db.system", getattr(store, "dialect", "memory"))


def _failed(answers: list[Any]) -> bool:
    return any(isinstance(a, errors.BfxError) for a in answers)


class Engine:
    """Owns a store and the arena it fills; every write goes through here."""

    def __init__(self, store: Store) -> None:
        self.store = store
        try:
            self.arena: Arena = store.open_arena()
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def refresh(self) -> int:
        """Applies what other processes committed since the last look."""
        return self.store.refresh()

    # ---- writes -------------------------------------------------------------------------

    def insert_substrates(
        self,
        rows: Sequence[SubstrateRow],
        *,
        atomic: bool = False,
        dry_run: bool = False,
        until_failure: bool = False,
    ) -> list[Answer]:
        """Answers in input order: the id, or the error for that row. ``atomic``
        writes nothing unless every row can be written; ``dry_run`` writes nothing;
        ``until_failure`` (imports) writes the rows before the first one that fails
        other than as a duplicate, and nothing from there on."""
        arena = self.arena
        return self._insert(
            rows,
            arena.insert_many,
            arena.check_insert_many,
            self.store.add_substrates,
            "substrate",
            atomic=atomic,
            dry_run=dry_run,
            until_failure=until_failure,
        )

    def insert_substrate(self, row: SubstrateRow) -> int:
        """One row (a single create): its id, or its error raised."""
        if self.store.durable:
            answer = self.insert_substrates([row])[0]
        elif tracing.tracer is None:  # the in-memory store: one arena call, no commit
            answer = self.arena.insert_many([row.arena_item()], atomic=False, dry_run=False)[0][0]
        else:
            with span(STORE_WRITE) as traced:
                _traced(traced, self.store, "insert_substrates", 1)
                answer = self.arena.insert_many([row.arena_item()], atomic=False, dry_run=False)
                answer = answer[0][0]
        if isinstance(answer, errors.BfxError):
            raise answer
        return answer  # type: ignore[no-any-return]

    def insert_relationships(
        self,
        rows: Sequence[RelationshipRow],
        *,
        atomic: bool = False,
        dry_run: bool = False,
        until_failure: bool = False,
    ) -> list[Answer]:
        """Like :meth:`insert_substrates`, for relationships."""
        arena = self.arena
        return self._insert(
            rows,
            arena.link_many,
            arena.check_link_many,
            self.store.add_relationships,
            "relationship",
            atomic=atomic,
            dry_run=dry_run,
            until_failure=until_failure,
        )

    def _insert(
        self,
        rows: Sequence[Any],
        write_in_memory: Any,
        check: Any,
        add: Any,
        kind: str,
        *,
        atomic: bool,
        dry_run: bool,
        until_failure: bool,
    ) -> list[Answer]:
        """The write path of both record kinds: check, commit, apply once."""
        with span(STORE_WRITE) as traced:
            if traced is not None:
                _traced(traced, self.store, f"insert_{kind}s", len(rows))
            items = [r.arena_item() for r in rows]
            if not self.store.durable and not until_failure:
                return write_in_memory(items, atomic=atomic, dry_run=dry_run)[0]  # type: ignore[no-any-return]
            with self.store.write() as w:
                answers, prepared = check(items)
                upto = self._upto(answers, atomic, dry_run, until_failure)
                if upto:
                    add(
                        w,
                        [
                            (r, a)
                            for r, a in zip(rows[:upto], answers, strict=False)
                            if type(a) is int
                        ],
                    )
                    w.after = lambda: self._apply(prepared, upto, kind)
            return answers  # type: ignore[no-any-return]

    @staticmethod
    def _upto(answers: list[Answer], atomic: bool, dry_run: bool, until_failure: bool) -> int:
        """How many leading rows the write covers (0: nothing is written)."""
        if dry_run or (atomic and _failed(answers)):
            return 0
        if until_failure:
            for position, answer in enumerate(answers):
                if isinstance(answer, errors.BfxError) and not isinstance(
                    answer, errors.DuplicateError
                ):
                    return position
        return len(answers)

    def _apply(self, prepared: Any, upto: int, kind: str) -> None:
        # Checked against this very state under the lock, so the arena cannot refuse
        # it; the store reports it as damage if it ever does.
        self.store.check_applied(self.arena.apply(prepared, upto), kind)

    def delete_substrate(self, identity: int) -> int:
        """Deletes a substrate and its relationships; returns how many went with it."""
        arena = self.arena
        with span(STORE_WRITE) as traced:
            if traced is not None:
                _traced(traced, self.store, "delete_substrate", 1)
            if not self.store.durable:
                return arena.remove(identity)
            removed: list[int] = []
            with self.store.write() as w:
                arena.get(identity)  # NotFoundError, and nothing written
                self.store.remove_substrate(w, identity)
                w.after = lambda: removed.append(arena.remove(identity))
            return removed[0]

    def update_metadata(self, identity: int, change: Callable[[bytes], bytes]) -> SubstrateRow:
        """Replaces a substrate's metadata with ``change(current)``, both the stored
        bytes. ``change`` runs holding the write lock, on the arena caught up with the
        change log, so two concurrent updates (other threads, workers or nodes) apply
        one after the other and neither is lost. Unchanged metadata writes nothing."""
        arena = self.arena
        with span(STORE_WRITE) as traced, self.store.write() as w:
            if traced is not None:
                _traced(traced, self.store, "update_metadata", 1)
            record = arena.get(identity)  # NotFoundError, and nothing written
            metadata = change(record[4])
            if metadata != record[4]:
                self.store.update_substrate(w, identity, metadata)
                w.after = lambda: set_metadata(arena, identity, metadata)
        return SubstrateRow(identity, record[1], record[2], record[3], metadata, record[5])

    def delete_relationship(self, rid: int) -> None:
        arena = self.arena
        with span(STORE_WRITE) as traced:
            if traced is not None:
                _traced(traced, self.store, "delete_relationship", 1)
            if not self.store.durable:
                arena.unlink(rid)
                return
            with self.store.write() as w:
                arena.edge(rid)
                self.store.remove_relationship(w, rid)
                w.after = lambda: arena.unlink(rid)

    # ---- reads --------------------------------------------------------------------------

    def substrate(self, identity: int | str) -> SubstrateRow:
        return SubstrateRow.from_arena(self.arena.get(identity))

    def relationship(self, rid: int | str) -> RelationshipRow:
        return RelationshipRow.from_arena(self.arena.edge(rid))

    def export_rows(self) -> Iterator[SubstrateRow | RelationshipRow]:
        """Every substrate, then every relationship: a database store's in one
        consistent snapshot on a connection of its own, else the arena's, a page
        at a time."""
        rows = self.store.export_rows()
        if rows is not None:
            yield from rows
            return
        arena = self.arena
        position: int | None = 0
        while position is not None:
            records, position = arena.scan(position, _SCAN_PAGE)
            for record in records:
                yield SubstrateRow.from_arena(record)
        position = 0
        while position is not None:
            records, position = arena.scan_edges(position, _SCAN_PAGE)
            for record in records:
                yield RelationshipRow.from_arena(record)
