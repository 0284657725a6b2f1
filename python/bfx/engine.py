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
``link_many`` call, logged (``Store.log``) for the change feed. Why check-then-apply rather than apply-then-roll-back:
``docs/storage.md`` (The write path).

The engine answers in rows (:mod:`bfx.rows`); the domain (:mod:`bfx.domain`) adds
validation, batching and the sandbox, and its two faces (:class:`bfx.registry.Registry`,
the local services) turn rows into models or API records.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from bfx import errors, switching, tracing
from bfx._core import Arena, format_id, relationship_id
from bfx.group_commit import GroupCommit, LoopGroupCommit
from bfx.rows import RelationshipRow, SubstrateRow
from bfx.storage import Store
from bfx.storage.base import (
    OP_ADD_RELATIONSHIP,
    OP_ADD_SUBSTRATE,
    OP_DELETE_RELATIONSHIP,
    OP_DELETE_SUBSTRATE,
    WouldBlock,
    Write,
)
from bfx.storage.metadata import set_metadata
from bfx.switching import while_running
from bfx.tracing import STORE_WRITE, span

T = TypeVar("T")

__all__ = ["Engine"]

_SCAN_PAGE = 4096

Answer = int | errors.BfxError
#: The type of the edges a pipeline gets to each of its steps (``insert_substrates``).
COMPOSITION = "COMPOSITION"


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
        #: Called with a substrate's id inside its delete's write, before anything is
        #: written: raising refuses the delete (a version chain's members,
        #: ``bfx.domain.versions``).
        self.delete_guards: list[Callable[[int], None]] = []
        try:
            self.arena: Arena = store.open_arena()
        except BaseException:
            store.close()
            raise
        # Single writes from concurrent threads share a transaction (group_commit.py).
        self.substrate_writes = GroupCommit(self.insert_substrates)
        self.relationship_writes = GroupCommit(self.insert_relationships)
        # And so do single writes from coroutines (the server): on the loop when the
        # store need not wait, else on one thread of their own, made on the first
        # such write over a durable store.
        self._writer: ThreadPoolExecutor | None = None
        self._loop_writes: tuple[LoopGroupCommit, LoopGroupCommit] | None = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.shutdown(wait=True)
        self.store.close()

    def _write_thread(self) -> ThreadPoolExecutor:
        if self._writer is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix="bfx-write")
        return self._writer

    def _loop_doors(self) -> tuple[LoopGroupCommit, LoopGroupCommit]:
        doors = self._loop_writes
        if doors is None:
            writer = self._write_thread()
            traced: Callable[[], bool] = lambda: tracing.tracer is not None  # noqa: E731
            now = self.store.writes_without_waiting
            doors = self._loop_writes = (
                LoopGroupCommit(
                    self.insert_substrates,
                    writer,
                    traced,
                    functools.partial(self._write_now, self.insert_substrates) if now else None,
                ),
                LoopGroupCommit(
                    self.insert_relationships,
                    writer,
                    traced,
                    functools.partial(self._write_now, self.insert_relationships) if now else None,
                ),
            )
        return doors

    def _write_now(
        self, write_many: Callable[..., list[Answer]], rows: Sequence[Any]
    ) -> list[Answer] | None:
        """``write_many(rows)`` right here on the event loop, or None when it would
        have to wait (another writer, a catch-up) or failed as a whole: nothing was
        written, and the write thread writes the group, waiting where it must."""
        try:
            answers = write_many(rows, nowait=True)
        except (WouldBlock, errors.StorageError):
            return None
        if self.store.prune_due:
            # The write thread is shut once the engine closes: the next start prunes.
            with contextlib.suppress(RuntimeError):
                self._write_thread().submit(self.store.prune_if_due)
        return answers

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
        steps: Sequence[Sequence[int] | None] | None = None,
        nowait: bool = False,
    ) -> list[Answer]:
        """Answers in input order: the id, or the error for that row. ``atomic``
        writes nothing unless every row can be written; ``dry_run`` writes nothing;
        ``until_failure`` (imports) writes the rows before the first one that fails
        other than as a duplicate, and nothing from there on.

        ``steps`` (pipelines) gives, per row, the ids it composes (None: none): such a
        row is written only if every one exists (else a 422 naming the step), and
        with a ``COMPOSITION`` edge to each, in the same write.

        ``nowait`` (the writer on the event loop): ``Store.write(nowait=True)``, so
        :class:`~bfx.storage.base.WouldBlock` rather than wait."""
        if steps is not None and any(steps):
            return self._insert_composed(
                rows, steps, atomic=atomic, dry_run=dry_run, until_failure=until_failure
            )
        arena = self.arena
        return self._insert(
            rows,
            arena.insert_many,
            arena.check_insert_many,
            self.store.add_substrates,
            OP_ADD_SUBSTRATE,
            atomic=atomic,
            dry_run=dry_run,
            until_failure=until_failure,
            nowait=nowait,
        )

    def insert_substrate(self, row: SubstrateRow, steps: Sequence[int] | None = None) -> int:
        """One row (a single create): its id, or its error raised. On a durable store
        it is committed with the single writes of other threads queued meanwhile
        (group commit), and answered once that commit is done. A pipeline (``steps``)
        is written alone with its ``COMPOSITION`` edges."""
        if steps:
            answer = self.insert_substrates([row], steps=[steps])[0]
            if isinstance(answer, errors.BfxError):
                raise answer
            return answer  # type: ignore[no-any-return]
        if self.store.durable:
            return self.substrate_writes.write(row)  # type: ignore[no-any-return]
        # The in-memory store: one arena call, nothing to commit; logged for the feed.
        store = self.store
        with store.log_lock:
            if tracing.tracer is None:
                answer = self.arena.insert_many([row.arena_item()], atomic=False, dry_run=False)
            else:
                with span(STORE_WRITE) as traced:
                    _traced(traced, store, "insert_substrates", 1)
                    answer = self.arena.insert_many([row.arena_item()], atomic=False, dry_run=False)
            answer = answer[0][0]
            if type(answer) is int:
                store.log(OP_ADD_SUBSTRATE, answer)
        if isinstance(answer, errors.BfxError):
            raise answer
        return answer  # type: ignore[no-any-return]

    async def run_write(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs ``fn(*args)``, a write other than a single create (an update, a
        delete, a version, an alias, a lens, a key), for a coroutine on the event loop:
        over a durable store on the write thread, since its commit may wait for another
        process's write lock (SQLite's busy timeout) and the loop must never wait with
        it; in memory at once, there being nothing to wait for. In the caller's context
        (its trace span)."""
        if not self.store.durable:
            return fn(*args)
        loop = asyncio.get_running_loop()
        run = contextvars.copy_context().run
        return await while_running(  # type: ignore[no-any-return]
            lambda: loop.run_in_executor(self._write_thread(), run, fn, *args)
        )

    async def catch_up(self) -> None:
        """Applies what other processes committed (:meth:`refresh`) in a thread, for a
        coroutine about to read the arena without the request's freshness step (a
        pipeline's create reads its steps)."""
        if self.store.durable:
            await switching.to_thread(self.store.refresh)

    async def write_substrate(self, row: SubstrateRow, steps: Sequence[int] | None = None) -> int:
        """:meth:`insert_substrate` for a coroutine on the event loop: on a durable
        store the row joins the group of the creates queued on the loop meanwhile
        (:class:`~bfx.group_commit.LoopGroupCommit`) and is answered once that group
        has committed, the loop serving other requests while it is written; a
        pipeline (``steps``) is written alone on the same thread. In memory there is
        nothing to wait for: it is written at once."""
        if not self.store.durable:
            return self.insert_substrate(row, steps)
        if steps:
            answers = await self.run_write(
                functools.partial(self.insert_substrates, steps=[steps]), [row]
            )
            answer = answers[0]
            if isinstance(answer, errors.BfxError):
                raise answer
            return answer  # type: ignore[no-any-return]
        return await self._loop_doors()[0].submit(row)  # type: ignore[no-any-return]

    async def write_relationship(self, row: RelationshipRow) -> int:
        """Like :meth:`write_substrate`, for one relationship."""
        if not self.store.durable:
            return self.insert_relationship(row)
        return await self._loop_doors()[1].submit(row)  # type: ignore[no-any-return]

    def insert_relationship(self, row: RelationshipRow) -> int:
        """Like :meth:`insert_substrate`, for one relationship."""
        if self.store.durable:
            return self.relationship_writes.write(row)  # type: ignore[no-any-return]
        answer = self.insert_relationships([row])[0]
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
        nowait: bool = False,
    ) -> list[Answer]:
        """Like :meth:`insert_substrates`, for relationships."""
        arena = self.arena
        return self._insert(
            rows,
            arena.link_many,
            arena.check_link_many,
            self.store.add_relationships,
            OP_ADD_RELATIONSHIP,
            atomic=atomic,
            dry_run=dry_run,
            until_failure=until_failure,
            nowait=nowait,
        )

    def _insert(
        self,
        rows: Sequence[Any],
        write_in_memory: Any,
        check: Any,
        add: Any,
        op: int,
        *,
        atomic: bool,
        dry_run: bool,
        until_failure: bool,
        nowait: bool = False,
    ) -> list[Answer]:
        """The write path of both record kinds: check, commit, apply once."""
        kind = "substrate" if op == OP_ADD_SUBSTRATE else "relationship"
        with span(STORE_WRITE) as traced:
            if traced is not None:
                _traced(traced, self.store, f"insert_{kind}s", len(rows))
            items = [r.arena_item() for r in rows]
            if not self.store.durable and not until_failure:
                if dry_run:
                    return write_in_memory(items, atomic=atomic, dry_run=True)[0]  # type: ignore[no-any-return]
                with self.store.log_lock:
                    answers, written = write_in_memory(items, atomic=atomic, dry_run=False)
                    if written:
                        self.store.log_many(op, [a for a in answers if type(a) is int])
                return answers  # type: ignore[no-any-return]
            try:
                with self.store.write(nowait=nowait) as w:
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
            except WouldBlock:
                # Nothing was written: the write thread writes the rows next, in a span
                # of its own. This one ends as handed over, not as a failure.
                if traced is not None:
                    traced.set_attribute("bfx.store.handed_over", True)
            else:
                return answers  # type: ignore[no-any-return]
        raise WouldBlock

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

    def _insert_composed(
        self,
        rows: Sequence[SubstrateRow],
        steps: Sequence[Sequence[int] | None],
        *,
        atomic: bool,
        dry_run: bool,
        until_failure: bool,
    ) -> list[Answer]:
        """The write path of rows some of which compose others (pipelines): under the
        write lock, a row whose steps are not all in the arena fails (a delete may
        have raced its checks); the others are checked as usual; those written are
        committed with their ``COMPOSITION`` edges, then applied: the substrates, then
        the edges (which need both ends in the arena, hence not checked beforehand:
        both ends are known to exist, and a new substrate has no edges yet)."""
        arena = self.arena
        with self.store.write() as w:
            answers: list[Answer | None] = [None] * len(rows)
            keep: list[int] = []
            for index, ids in enumerate(steps):
                missing = next((s for s in ids or () if s not in arena), None)
                if missing is None:
                    keep.append(index)
                else:
                    position = list(ids or ()).index(missing)
                    answers[index] = errors.ValidationError(
                        f"steps[{position}]: no substrate {format_id(missing)}",
                        {
                            "reason": "missing_step",
                            "field": f"steps[{position}].substrate_id",
                            "step": position,
                            "substrate_id": format_id(missing),
                        },
                    )
            checked, prepared = arena.check_insert_many([rows[i].arena_item() for i in keep])
            for index, answer in zip(keep, checked, strict=True):
                answers[index] = answer
            upto = self._upto(answers, atomic, dry_run, until_failure)  # type: ignore[arg-type]
            written = [
                (rows[i], answer)
                for i, answer in zip(keep, checked, strict=True)
                if i < upto and type(answer) is int
            ]
            if written:
                edges: list[tuple[RelationshipRow, int]] = []
                for i, answer in zip(keep, checked, strict=True):
                    if i < upto and type(answer) is int:
                        for step in dict.fromkeys(steps[i] or ()):
                            edge = RelationshipRow(
                                None, COMPOSITION, answer, step, False, b"", rows[i].created_us
                            )
                            edges.append((edge, relationship_id(answer, step, COMPOSITION)))
                self.store.add_substrates(w, written)
                self.store.add_relationships(w, edges)
                applied = sum(1 for i in keep if i < upto)

                def after() -> None:
                    self._apply(prepared, applied, "substrate")
                    linked = arena.link_many([e.arena_item() for e, _ in edges])[0]
                    self.store.check_applied(linked, "relationship")

                w.after = after
        return answers  # type: ignore[return-value]

    def _apply(self, prepared: Any, upto: int, kind: str) -> None:
        # Checked against this very state under the lock, so the arena cannot refuse
        # it; the store reports it as damage if it ever does.
        self.store.check_applied(self.arena.apply(prepared, upto), kind)

    def insert_linked(
        self,
        row: SubstrateRow,
        edge: RelationshipRow,
        source: Callable[[], int],
        also: Callable[[Write, int], Callable[[], None]],
    ) -> int:
        """A new substrate, an edge from ``source()`` to it (``edge``'s source and
        target are ignored) and the caller's own rows, in one write: all or nothing.
        ``source()`` and ``also(w, id)`` run inside the write, the store's catalog
        current; ``also`` returns what to apply after the commit. The substrate's id,
        or its error raised (duplicate, collision; a missing source: NotFoundError)."""
        arena = self.arena
        with self.store.write() as w:
            answers, prepared = arena.check_insert_many([row.arena_item()])
            identity = answers[0]
            if isinstance(identity, errors.BfxError):
                raise identity
            edge = RelationshipRow(
                None, edge.rel_type, source(), 0, edge.bidirectional, edge.constraints,
                edge.created_us,
            )  # fmt: skip
            arena.get(edge.source)
            linked = RelationshipRow(
                None, edge.rel_type, edge.source, identity, edge.bidirectional,
                edge.constraints, edge.created_us,
            )  # fmt: skip
            # The target is new, so the edge cannot exist yet: its id needs no check.
            rid = relationship_id(edge.source, identity, edge.rel_type)
            self.store.add_substrates(w, [(row, identity)])
            self.store.add_relationships(w, [(linked, rid)])
            then = also(w, identity)

            def after() -> None:
                self._apply(prepared, 1, "substrate")
                answers, _ = arena.link_many([linked.arena_item()])
                self.store.check_applied(answers, "relationship")
                then()

            w.after = after
        return identity  # type: ignore[no-any-return]

    def delete_substrate(self, identity: int) -> int:
        """Deletes a substrate and its relationships; returns how many went with it.
        Each of :attr:`delete_guards` runs first, under the write lock on the arena
        caught up with the change log, and may refuse the delete by raising (a step of
        a pipeline, a member of a version chain)."""
        arena = self.arena
        with span(STORE_WRITE) as traced:
            if traced is not None:
                _traced(traced, self.store, "delete_substrate", 1)
            if not self.store.durable:
                store = self.store
                with store.log_lock:  # the in-memory store's write lock
                    arena.get(identity)  # NotFoundError, and nothing done
                    for guard in self.delete_guards:
                        guard(identity)
                    removed_edges = arena.remove(identity)
                    store.log(OP_DELETE_SUBSTRATE, identity)
                return removed_edges  # type: ignore[no-any-return]
            removed: list[int] = []
            with self.store.write() as w:
                arena.get(identity)  # NotFoundError, and nothing written
                for guard in self.delete_guards:
                    guard(identity)
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

    def delete_relationship(self, rid: int, guard: Callable[[Any], None] | None = None) -> None:
        """Deletes a relationship; ``guard(record)`` (the arena's record of it) runs
        under the write lock and may refuse by raising (a pipeline's edge to a step)."""
        arena = self.arena
        with span(STORE_WRITE) as traced:
            if traced is not None:
                _traced(traced, self.store, "delete_relationship", 1)
            if not self.store.durable:
                with self.store.log_lock:  # the in-memory store's write lock
                    if guard is not None:
                        guard(arena.edge(rid))
                    arena.unlink(rid)
                    self.store.log(OP_DELETE_RELATIONSHIP, rid)
                return
            with self.store.write() as w:
                record = arena.edge(rid)
                if guard is not None:
                    guard(record)
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
