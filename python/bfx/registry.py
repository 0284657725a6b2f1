"""The Registry: the in-process API of bfx.

It composes the domain (:mod:`bfx.domain`: substrates, search, relationships,
transfer; the graph algorithms of :mod:`bfx.graph`; the operators) over one engine
(:mod:`bfx.engine`: a store — in memory, SQLite or PostgreSQL — and the Rust arena),
and answers in models (:mod:`bfx.models`: datetimes, decoded metadata). Reads are
answered from the arena; writes go through the store, which commits them before the
arena shows them. Thread-safe: the arena has its own lock, the store its own, and the
compiled cache a small one of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from msgspec.structs import asdict

from bfx import errors, paging
from bfx._core import Arena, format_id, parse_id
from bfx.budget import BatchBudget
from bfx.domain import promotion
from bfx.domain import search as scans
from bfx.domain.aliases import Aliases
from bfx.domain.changes import ChangeFeed
from bfx.domain.checks import MAX_METADATA_BYTES
from bfx.domain.lenses import Lenses
from bfx.domain.operators import Operators
from bfx.domain.pipelines import DEFAULT_MAX_DEPTH
from bfx.domain.relationships import Relationships
from bfx.domain.substrates import Substrates
from bfx.domain.transfer import Transfer, export_record
from bfx.domain.versions import Versions
from bfx.engine import Engine
from bfx.graph import Graph
from bfx.invocations import InvocationCounts
from bfx.models import Invocation, Relationship, Substrate
from bfx.sandbox import DEFAULT_LIMITS, Compiled, Limits
from bfx.storage import Store, open_store
from bfx.storage.catalog import AliasRecord, Chain, LensRecord

__all__ = ["MAX_METADATA_BYTES", "Registry", "export_record"]

#: The page cap of every list (``bfx.paging``): one fact, one place.
MAX_PAGE = paging.MAX_PAGE


class Registry:
    """Substrates, relationships and operators, in process.

    Where records live: ``data_dir`` (an embedded SQLite database in that
    directory) or ``storage`` (a locator for :func:`bfx.storage.open_store`:
    ``"memory"``, a directory, ``"postgresql://..."``, or a Store); neither means
    in memory. A durable registry loads everything at construction and sees its
    own writes at once, other processes' after :meth:`refresh`.

    ``cache_size`` bounds how many compiled expressions are kept (LRU);
    ``result_cache_size`` the bytes of invocation results kept (LRU by id and
    parameters, ``bfx.domain.results``; 0, the default in process: off);
    ``limits`` are the sandbox's bounds (see ``docs/sandbox.md``);
    ``pipeline_max_depth`` how deeply pipelines may nest (``docs/domain.md``).
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        storage: str | os.PathLike[str] | Store | None = None,
        cache_size: int = 100_000,
        limits: Limits | None = None,
        result_cache_size: int = 0,
        pipeline_max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        if data_dir is not None and storage is not None:
            raise ValueError("give data_dir or storage, not both")
        self._limits = limits or DEFAULT_LIMITS
        #: Owns the store, the arena and the write path (``bfx.engine``).
        self._engine = Engine(open_store(data_dir if data_dir is not None else storage))
        self._store = self._engine.store
        self._arena = self._engine.arena
        #: The domain, by noun (``bfx.domain``); the local services compose the same.
        self.substrates = Substrates(
            self._engine, self._limits, cache_size, result_cache_size, pipeline_max_depth
        )
        self.relationships_domain = Relationships(self._engine)
        self.versions_domain = Versions(self.substrates)
        self.aliases_domain = Aliases(self.substrates, self.versions_domain)
        self.lenses_domain = Lenses(self.substrates)
        self.transfer = Transfer(
            self.substrates, self.versions_domain, self.aliases_domain, self.lenses_domain
        )
        self.operators = Operators(self.substrates)
        self.graph = Graph(self._arena, self._substrate)
        #: The change feed: the store's log after a cursor (``bfx.domain.changes``).
        self.changes = ChangeFeed(self._store)
        # The graph algorithms are the Registry's own methods (signatures and docs kept).
        self.traverse = self.graph.traverse
        self.shortest_path = self.graph.shortest_path
        self.cycles = self.graph.cycles
        self.components = self.graph.components
        self.pagerank = self.graph.pagerank
        self.relationship_stats = self.graph.relationship_stats
        self._cache = self.substrates.cache
        # Read on every GET: the counts' dict itself (a lookup is atomic; writes lock).
        self._counts = self.substrates.counts

    @property
    def arena(self) -> Arena:
        """The underlying Rust arena (for tools and benchmarks)."""
        return self._arena

    @property
    def limits(self) -> Limits:
        return self._limits

    @property
    def invocations(self) -> InvocationCounts:
        """Successful invocations per substrate in this process (not stored)."""
        return self.substrates.invocations

    def _substrate(self, record: tuple) -> Substrate:
        return Substrate.from_record(record, self._counts.get(record[0], 0))

    @property
    def store(self) -> Store:
        """Where the records live (``store.durable``, ``store.describe()``)."""
        return self._store

    @property
    def engine(self) -> Engine:
        """The store, the arena and the write path, in rows (``bfx.engine``)."""
        return self._engine

    def close(self) -> None:
        """Closes the store; the registry must not be used afterwards."""
        self._engine.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> int:
        """Applies what other processes wrote to a shared store since the last
        look; returns how many changes. Cheap when there are none (the HTTP
        service calls it before every request)."""
        return self._engine.store.refresh()  # per request: straight to the store

    def __len__(self) -> int:
        return len(self._arena)

    def __contains__(self, substrate_id: object) -> bool:
        return substrate_id in self._arena

    # ------------------------------------------------------------ substrates

    def create(
        self, expression_type: str, expression_code: str, metadata: Mapping[str, Any] | None = None
    ) -> Substrate:
        """Validates, canonicalises and stores an expression; returns its record.

        Raises SandboxError/ValidationError for rejected code, DuplicateError
        (``details["substrate_id"]`` names the existing one) or CollisionError.
        """
        return Substrate.from_row(
            self.substrates.create(expression_type, expression_code, metadata)
        )

    def compose(
        self,
        steps: Sequence[Mapping[str, Any] | str | int],
        aggregate: str | None = None,
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Substrate:
        """Creates a pipeline (a substrate of type ``pipeline``) of ``steps``, each
        ``{"substrate_id": id, "as": name?, "parameters": {...}?}`` or a bare id, run
        in order; ``aggregate`` ``last`` (default), ``sum``, ``product`` or ``list``;
        ``name`` is stored as ``metadata["name"]``. The same as ``create("pipeline",
        json)``: its code is the canonical JSON (docs/domain.md "Pipelines")."""
        items = [
            {"substrate_id": format_id(parse_id(s))} if isinstance(s, (str, int)) else s
            for s in steps
        ]
        row = self.substrates.compose(items, aggregate, name=name, metadata=metadata)
        return Substrate.from_row(row)

    def pipelines_using(self, substrate_id: int | str) -> list[int]:
        """The pipelines that have the substrate as a step (what keeps it from being
        deleted: :class:`~bfx.errors.InUseError`)."""
        return self.substrates.users(parse_id(substrate_id))

    def create_many(
        self, items: Sequence[Mapping[str, Any]], atomic: bool = False
    ) -> list[Substrate | errors.BfxError]:
        """Creates in input order; each answer is a Substrate or the error for that
        item. A repeat inside the batch fails as a duplicate of the earlier one. With
        ``atomic``, any failure raises BatchError and writes nothing."""
        answers = self.substrates.create_many(items, atomic=atomic)
        return [r if isinstance(r, errors.BfxError) else Substrate.from_row(r) for r in answers]

    def get(self, substrate_id: int | str) -> Substrate:
        record = self._arena.get(substrate_id)  # the hot read: no helper frame
        return Substrate.from_record(record, self._counts.get(record[0], 0))

    def get_many(self, substrate_ids: Iterable[int | str]) -> list[Substrate | None]:
        return [
            None if r is None else self._substrate(r) for r in self._arena.get_many(substrate_ids)
        ]

    def update(self, substrate_id: int | str, metadata: Mapping[str, Any]) -> Substrate:
        """Merges ``metadata`` into the substrate's metadata as a JSON merge patch
        (RFC 7396: ``None`` removes a key, dicts merge); the substrate as stored now.
        Every process sharing the store sees it after its next :meth:`refresh`."""
        row = self.substrates.update(substrate_id, metadata)
        return Substrate.from_row(row, self._counts.get(row.identity, 0))  # type: ignore[arg-type]

    def delete(self, substrate_id: int | str) -> int:
        """Deletes a substrate and its relationships; returns how many
        relationships went with it. InUseError (409) while a pipeline has it as a
        step."""
        return self.substrates.delete(substrate_id)

    def list(
        self, limit: int = 100, cursor: int | str | None = None
    ) -> tuple[list[Substrate], int | None]:
        """A page of substrates ordered by id, and the cursor of the next page.

        The cursor is the last id of the page; a page holds the ids above it,
        so paging stays correct while records are created and deleted.
        """
        records, next_cursor = self.substrates.page(limit, cursor)
        return [self._substrate(r) for r in records], next_cursor

    def iter_substrates(self) -> Iterator[Substrate]:
        """Every substrate, in storage order, fetched a page at a time."""
        for r in self.substrates.scan():
            yield self._substrate(r)

    def iter_relationships(self) -> Iterator[Relationship]:
        for r in self.relationships_domain.scan():
            yield Relationship.from_record(r)

    # ------------------------------------------------------------ invocation

    def compiled(self, substrate_id: int | str) -> Compiled:
        """The compiled expression of a substrate (from the cache, or compiled
        again from its stored canonical code)."""
        return self.substrates.compiled(substrate_id)

    def invoke(
        self, substrate_id: int | str, parameters: Mapping[str, Any] | None = None
    ) -> Invocation:
        return self.substrates.invoke(substrate_id, parameters)

    def invoke_many(
        self,
        invocations: Iterable[tuple[int | str, Mapping[str, Any] | None]],
        *,
        budget: BatchBudget | None = None,
    ) -> list[Invocation | errors.BfxError]:
        """Invokes in input order; each answer is an Invocation or the error for that
        item (:meth:`bfx.domain.substrates.Substrates.invoke_many`: groups, budget)."""
        return self.substrates.invoke_many(invocations, budget=budget)

    def value(
        self, substrate_id: int | str, parameters: Mapping[str, Any] | None = None
    ) -> int | float:
        """The substrate's value for the operators: its result, which must be a number."""
        return self.substrates.value(substrate_id, parameters)

    # ------------------------------------------------------------ operators

    def divide(self, substrate_id: int | str) -> list[dict[str, Any]]:
        return self.operators.divide(substrate_id)

    def multiply(self, values: Sequence[Any]) -> dict[str, Any]:
        return asdict(self.operators.multiply(values))

    def add(
        self, substrate_id: int | str, value: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return asdict(self.operators.add(substrate_id, value, parameters))

    def subtract(
        self, substrate_id: int | str, value: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return asdict(self.operators.subtract(substrate_id, value, parameters))

    def modulus(
        self, substrate_id: int | str, modulus: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return asdict(self.operators.modulus(substrate_id, modulus, parameters))

    def power(
        self, substrate_id: int | str, exponent: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return asdict(self.operators.power(substrate_id, exponent, parameters))

    def root(
        self, substrate_id: int | str, degree: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return asdict(self.operators.root(substrate_id, degree, parameters))

    def promote(
        self,
        substrate_id: int | str,
        delta: int | None = None,
        change_description: str | None = None,
        attribute_value: int | None = None,
    ) -> dict[str, Any]:
        """``identity XOR attribute_value XOR delta`` (``bfx.domain.promotion``):
        ``{identity, delta, attribute_value, new_identity}``; nothing is stored."""
        return asdict(
            promotion.promote(parse_id(substrate_id), delta, change_description, attribute_value)
        )

    def promote_sequence(
        self,
        substrate_id: int | str,
        deltas: Sequence[int],
        attribute_value: int | None = None,
    ) -> list[int]:
        """The identity after each delta, in order (the chain, the start excluded)."""
        steps = promotion.promote_sequence(parse_id(substrate_id), deltas, attribute_value)
        return [step.new_identity for step in steps]

    # ------------------------------------------------------------ search

    def search(
        self,
        name: str | None = None,
        expression_type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> paging.Page[Substrate]:
        """Substrates whose ``metadata["name"]`` contains ``name`` (ignoring
        case) and whose type is ``expression_type`` (each optional), oldest
        first (``created_at``, ties by id): a page of at most ``limit`` after
        ``cursor``, with ``count`` (all matches) and ``next_cursor``."""
        found = scans.search(self.substrates.scan(), name, expression_type, limit, cursor)
        return paging.Page([self._substrate(r) for r in found], found.count, found.next_cursor)

    def query(
        self,
        filters: Mapping[str, Any] | None = None,
        sort: str = "created_at",
        limit: int = 100,
        cursor: str | None = None,
    ) -> paging.Page[Substrate]:
        """Filters: ``expression_type``, ``metadata.<key>`` (equality),
        ``created_after`` / ``created_before`` (strict; datetime or RFC 3339);
        sort ``created_at`` or ``-created_at`` (ties by id, in the same
        direction). A page of at most ``limit`` after ``cursor``, with
        ``count`` (all matches) and ``next_cursor``."""
        found = scans.query(self.substrates.scan(), filters, sort, limit, cursor)
        return paging.Page([self._substrate(r) for r in found], found.count, found.next_cursor)

    # ------------------------------------------------------------ relationships

    def relate(
        self,
        rel_type: str,
        source_id: int | str,
        target_id: int | str,
        bidirectional: bool = False,
        constraints: Mapping[str, Any] | None = None,
    ) -> Relationship:
        row = self.relationships_domain.relate(
            rel_type, source_id, target_id, bidirectional, constraints
        )
        return Relationship.from_row(row)

    def relate_many(
        self, items: Sequence[Mapping[str, Any]], atomic: bool = False
    ) -> list[Relationship | errors.BfxError]:
        answers = self.relationships_domain.relate_many(items, atomic=atomic)
        return [r if isinstance(r, errors.BfxError) else Relationship.from_row(r) for r in answers]

    def get_relationship(self, relationship_id: int | str) -> Relationship:
        return Relationship.from_record(self.relationships_domain.record(relationship_id))

    def delete_relationship(self, relationship_id: int | str) -> None:
        self.relationships_domain.delete(relationship_id)

    def outgoing(
        self,
        substrate_id: int | str,
        rel_type: str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> tuple[int, list[Relationship]]:
        """(total, page): relationships leaving a substrate, bidirectional ones
        from either end, newest first. The page starts at ``cursor`` (a
        ``bfx.paging`` position token) or ``offset`` (0..paging.MAX_OFFSET; past
        the total: an empty page)."""
        total, records = self.relationships_domain.outgoing(
            substrate_id, rel_type, limit, offset, cursor
        )
        return total, [Relationship.from_record(r) for r in records]

    def incoming(
        self,
        substrate_id: int | str,
        rel_type: str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> tuple[int, list[Relationship]]:
        """Like :meth:`outgoing`, for relationships arriving at a substrate."""
        total, records = self.relationships_domain.incoming(
            substrate_id, rel_type, limit, offset, cursor
        )
        return total, [Relationship.from_record(r) for r in records]

    def relationships(
        self,
        rel_type: str | None = None,
        source_id: int | str | None = None,
        target_id: int | str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> tuple[int, list[Relationship]]:
        """(total, page) of relationships by type and stored source/target, in
        storage order (or newest first of a source's/target's list); paged like
        :meth:`outgoing`."""
        total, records = self.relationships_domain.list(
            rel_type, source_id, target_id, limit, offset, cursor
        )
        return total, [Relationship.from_record(r) for r in records]

    # ------------------------------------------------------------ versions, aliases, lenses

    def create_version(
        self,
        substrate_id: int | str,
        expression_code: str,
        change_description: str | None = None,
    ) -> tuple[int, Substrate]:
        """The next version of ``substrate_id``'s chain (same type and metadata, a
        ``LINEAGE`` edge from the chain's latest version), made its head:
        ``(version, record)`` (``bfx.domain.versions``)."""
        entry, row = self.versions_domain.create_version(
            substrate_id, expression_code, change_description
        )
        return entry.version, Substrate.from_row(row)

    def versions(self, substrate_id: int | str) -> Chain:
        """The chain of any member: ``head``, ``members`` (oldest first) and
        ``history`` (every head move); a chain of one for a substrate in none."""
        return self.versions_domain.chain(substrate_id)

    def rollback(self, substrate_id: int | str, version_id: int | str) -> Chain:
        """Moves the chain's head to ``version_id`` (a member: ValidationError
        otherwise), recorded as a history entry; the chain as it is now."""
        return self.versions_domain.rollback(substrate_id, version_id)

    def put_alias(self, name: str, substrate_id: int | str) -> AliasRecord:
        """Points ``name`` at a substrate; uses follow its chain's head."""
        return self.aliases_domain.put(name, substrate_id)

    def get_alias(self, name: str) -> AliasRecord:
        return self.aliases_domain.get(name)

    def delete_alias(self, name: str) -> None:
        self.aliases_domain.delete(name)

    def invoke_alias(self, name: str, parameters: Mapping[str, Any] | None = None) -> Invocation:
        """Invokes what the alias answers with now (AliasTargetDeletedError when its
        substrate was deleted)."""
        return self.aliases_domain.invoke(name, parameters)

    def create_lens(
        self,
        name: str,
        expression_code: str,
        parameters: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> LensRecord:
        """Stores a lens: an expression over ``z`` and ``parameters`` (their defaults),
        checked by the substrates' sandbox."""
        return self.lenses_domain.create(name, expression_code, parameters, description)

    def list_lenses(self) -> list[LensRecord]:
        return self.lenses_domain.all()

    def get_lens(self, name: str) -> LensRecord:
        return self.lenses_domain.get(name)

    def delete_lens(self, name: str) -> None:
        self.lenses_domain.delete(name)

    def apply_lens(
        self,
        substrate_id: int | str,
        lens_name: str,
        parameters: Mapping[str, Any] | None = None,
        dimension: int | None = None,
        substrate_parameters: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``{substrate_id, lens_name, value, result}``: the lens on the substrate's
        result (invoked with ``substrate_parameters``) or on Fibonacci level
        ``dimension``."""
        return asdict(
            self.lenses_domain.apply(
                substrate_id, lens_name, parameters, dimension, substrate_parameters
            )
        )

    # ------------------------------------------------------------ export / import

    def export_records(self) -> Iterator[dict[str, Any]]:
        """Every substrate, then every relationship, as JSON-ready dicts with a
        ``kind`` field; lazily. A database store is read in one consistent
        snapshot on a connection of its own; the in-memory one page by page."""
        return self.transfer.export_records()

    def import_records(self, records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Imports exported records, streaming and checked
        (:meth:`bfx.domain.transfer.Transfer.import_records`): every record before
        the first invalid one is imported, none after; it raises with its ``index``."""
        return self.transfer.import_records(records)

    # ------------------------------------------------------------ statistics

    def stats(self) -> dict[str, int]:
        return {
            "total_substrates": len(self._arena),
            "total_relationships": self._arena.relationship_count,
        }

    def top_invoked(self, k: int = 5) -> list[tuple[int, int]]:
        """The ``k`` most invoked substrates of this process, ``(id, count)``, most first."""
        return self.substrates.top_invoked(k)


# Re-exported for callers that format ids next to records.
__all__ += ["format_id"]
