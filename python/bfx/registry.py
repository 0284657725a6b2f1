"""The Registry: the in-process API of bfx.

It ties the Rust arena (records, identities, relationships, indices), the
expression sandbox (validation, canonical form, guarded evaluation), the
operators and a store (``bfx.storage``: in memory, SQLite or PostgreSQL)
together. Reads are answered from the arena; writes go through the store, which
commits them before the arena shows them. Thread-safe: the arena has its own
lock, the store its own, and the compiled cache a small one of its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import msgspec

from bfx import errors, operators, paging
from bfx._core import (
    EXPRESSION_TYPES,
    Arena,
    format_id,
    normalize_rel_type,
    now_us,
    parse_id,
    relationship_id,
)
from bfx.budget import ITEM_OVERHEAD, BatchBudget, json_size
from bfx.engine import Engine
from bfx.graph import GraphMixin
from bfx.identity import field_id
from bfx.invocations import InvocationCounts
from bfx.models import (
    MAX_MICROS,
    MIN_MICROS,
    Invocation,
    Relationship,
    Substrate,
    format_time,
    from_micros,
    to_micros,
)
from bfx.rows import RelationshipRow, SubstrateRow
from bfx.sandbox import DEFAULT_LIMITS, Compiled, Limits, compile_substrate
from bfx.storage import Store, open_store

__all__ = ["Registry", "export_record"]

_encode = msgspec.json.encode
_SCAN_PAGE = 4096
#: Records an import checks and writes together.
_IMPORT_CHUNK = 2048
MAX_METADATA_BYTES = 64 * 1024
#: The page cap of every list (``bfx.paging``): one fact, one place.
MAX_PAGE = paging.MAX_PAGE


def _json_object_bytes(value: Any, field: str) -> bytes:
    """A JSON object (or None) as compact bytes; empty means ``{}``."""
    if value is None:
        return b""
    if not isinstance(value, Mapping):
        raise errors.ValidationError(f"{field} must be a JSON object", {"field": field})
    if not value:
        return b""
    try:
        raw = _encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise errors.ValidationError(
            f"{field} is not JSON-serialisable: {exc}", {"field": field}
        ) from None
    if len(raw) > MAX_METADATA_BYTES:
        raise errors.LimitExceededError(
            f"{field} is {len(raw)} bytes encoded; the limit is {MAX_METADATA_BYTES}",
            {"field": field, "limit": MAX_METADATA_BYTES},
        )
    return raw


def _check_page(limit: int, offset: int = 0) -> None:
    """``limit`` within 1..MAX_PAGE and ``offset`` within 0..paging.MAX_OFFSET, else a
    ValidationError naming the field (never an overflow in the core)."""
    paging.check_limit(limit)
    paging.check_offset(offset)


def _merge(prepared: list[Any], answers: list[Any], make: Any) -> list[Any]:
    """Each batch item's answer, in input order: the error that kept it from the
    arena, else the arena's error for it, else ``make(prepared_item, id)``."""
    arena_answers = iter(answers)
    results: list[Any] = []
    for p in prepared:
        if isinstance(p, errors.BfxError):
            results.append(p)
            continue
        answer = next(arena_answers)
        results.append(answer if isinstance(answer, errors.BfxError) else make(p, answer))
    return results


def _raise_if_any_failed(results: list[Any]) -> None:
    """An atomic batch with a failing item: BatchError listing every failure."""
    failures = [
        {"index": i, "status": r.status, "error": r.to_dict()}
        for i, r in enumerate(results)
        if isinstance(r, errors.BfxError)
    ]
    if failures:
        raise errors.BatchError(
            f"{len(failures)} of {len(results)} items failed; nothing was written",
            {"failures": failures},
        )


class _CompiledCache:
    """A bounded LRU of compiled expressions keyed by substrate id.

    Compiled callables are Python objects, so they live here and never in the
    arena; a miss recompiles from the stored canonical code.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("cache_size must be at least 1")
        self._maxsize = maxsize
        self._items: OrderedDict[int, Compiled] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: int) -> Compiled | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key: int, value: Compiled) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)

    def discard(self, key: int) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class Registry(GraphMixin):
    """Substrates, relationships and operators, in process.

    Where records live: ``data_dir`` (an embedded SQLite database in that
    directory) or ``storage`` (a locator for :func:`bfx.storage.open_store`:
    ``"memory"``, a directory, ``"postgresql://..."``, or a Store); neither means
    in memory. A durable registry loads everything at construction and sees its
    own writes at once, other processes' after :meth:`refresh`.

    ``cache_size`` bounds how many compiled expressions are kept (LRU);
    ``limits`` are the sandbox's bounds (see ``docs/sandbox.md``).
    """

    def __init__(
        self,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        storage: str | os.PathLike[str] | Store | None = None,
        cache_size: int = 100_000,
        limits: Limits | None = None,
    ) -> None:
        if data_dir is not None and storage is not None:
            raise ValueError("give data_dir or storage, not both")
        self._limits = limits or DEFAULT_LIMITS
        self._cache = _CompiledCache(cache_size)
        #: Owns the store, the arena and the write path (``bfx.engine``).
        self._engine = Engine(open_store(data_dir if data_dir is not None else storage))
        self._store = self._engine.store
        self._arena = self._engine.arena
        #: Successful invocations per substrate, of this process (``bfx.invocations``).
        self._invocations = InvocationCounts()
        # Read on every GET: the counts' dict itself (a lookup is atomic; writes lock).
        self._counts = self._invocations.counts

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
        return self._invocations

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

    def _prepare(self, expression_type: Any, expression_code: Any, metadata: Any) -> tuple:
        if not isinstance(expression_type, str) or expression_type not in EXPRESSION_TYPES:
            raise errors.ValidationError(
                f"expression_type must be one of {', '.join(EXPRESSION_TYPES)}",
                {"field": "expression_type", "allowed": list(EXPRESSION_TYPES)},
            )
        if not isinstance(expression_code, str):
            raise errors.ValidationError(
                "expression_code must be a string", {"field": "expression_code"}
            )
        compiled = compile_substrate(expression_type, expression_code, self._limits)
        meta = _json_object_bytes(metadata, "metadata")
        return compiled, meta

    def create(
        self, expression_type: str, expression_code: str, metadata: Mapping[str, Any] | None = None
    ) -> Substrate:
        """Validates, canonicalises and stores an expression; returns its record.

        Raises SandboxError/ValidationError for rejected code, DuplicateError
        (``details["substrate_id"]`` names the existing one) or CollisionError.
        """
        compiled, meta = self._prepare(expression_type, expression_code, metadata)
        created = now_us()
        row = SubstrateRow(
            None, expression_type, expression_code, compiled.canonical, meta, created
        )
        identity = _one(self._engine.insert_substrates([row]))
        self._cache.put(identity, compiled)
        return Substrate(
            identity,
            expression_type,
            expression_code,
            compiled.canonical,
            dict(metadata) if metadata else {},
            from_micros(created),
            0,
        )

    def create_many(
        self, items: Sequence[Mapping[str, Any]], atomic: bool = False
    ) -> list[Substrate | errors.BfxError]:
        """Creates in input order; each answer is a Substrate or the error for
        that item. A repeat inside the batch fails as a duplicate of the earlier
        one. With ``atomic``, any failure raises BatchError and writes nothing.
        """
        prepared: list[tuple | errors.BfxError] = []
        for item in items:
            try:
                if not isinstance(item, Mapping):
                    raise errors.ValidationError("each item must be an object", {})
                compiled, meta = self._prepare(
                    item.get("expression_type"), item.get("expression_code"), item.get("metadata")
                )
                prepared.append((item, compiled, meta))
            except errors.BfxError as exc:
                prepared.append(exc)
        created = now_us()
        rows = [
            SubstrateRow(
                None,
                p[0]["expression_type"],
                p[0]["expression_code"],
                p[1].canonical,
                p[2],
                created,
            )
            for p in prepared
            if not isinstance(p, errors.BfxError)
        ]
        any_invalid = len(rows) != len(prepared)
        dry_run = atomic and any_invalid
        answers = self._engine.insert_substrates(rows, atomic=atomic, dry_run=dry_run)
        results = _merge(
            prepared,
            answers,
            lambda p, identity: Substrate(
                identity,
                p[0]["expression_type"],
                p[0]["expression_code"],
                p[1].canonical,
                dict(p[0].get("metadata") or {}),
                from_micros(created),
                0,
            ),
        )
        if atomic:
            _raise_if_any_failed(results)
        # Only what was written is cached (an atomic failure wrote nothing).
        for p, r in zip(prepared, results, strict=True):
            if isinstance(r, Substrate):
                self._cache.put(r.identity, p[1])
        return results

    def get(self, substrate_id: int | str) -> Substrate:
        record = self._arena.get(substrate_id)  # the hot read: no helper frame
        return Substrate.from_record(record, self._counts.get(record[0], 0))

    def get_many(self, substrate_ids: Iterable[int | str]) -> list[Substrate | None]:
        return [
            None if r is None else self._substrate(r) for r in self._arena.get_many(substrate_ids)
        ]

    def delete(self, substrate_id: int | str) -> int:
        """Deletes a substrate and its relationships; returns how many
        relationships went with it."""
        identity = parse_id(substrate_id)
        removed = self._engine.delete_substrate(identity)
        self._cache.discard(identity)
        self._invocations.discard(identity)
        return removed

    def list(
        self, limit: int = 100, cursor: int | str | None = None
    ) -> tuple[list[Substrate], int | None]:
        """A page of substrates ordered by id, and the cursor of the next page.

        The cursor is the last id of the page; a page holds the ids above it,
        so paging stays correct while records are created and deleted.
        """
        _check_page(limit)
        records, next_cursor = self._arena.page(cursor, limit)
        return [self._substrate(r) for r in records], next_cursor

    def iter_substrates(self) -> Iterator[Substrate]:
        """Every substrate, in storage order, fetched a page at a time."""
        position: int | None = 0
        while position is not None:
            records, position = self._arena.scan(position, _SCAN_PAGE)
            for r in records:
                yield self._substrate(r)

    def iter_relationships(self) -> Iterator[Relationship]:
        position: int | None = 0
        while position is not None:
            records, position = self._arena.scan_edges(position, _SCAN_PAGE)
            for r in records:
                yield Relationship.from_record(r)

    # ------------------------------------------------------------ invocation

    def compiled(self, substrate_id: int | str) -> Compiled:
        """The compiled expression of a substrate (from the cache, or compiled
        again from its stored canonical code)."""
        identity = parse_id(substrate_id)
        compiled = self._cache.get(identity)
        if compiled is None:
            row = self._engine.substrate(identity)
            compiled = compile_substrate(row.expression_type, row.canonical_code, self._limits)
            self._cache.put(identity, compiled)
        return compiled

    def invoke(
        self, substrate_id: int | str, parameters: Mapping[str, Any] | None = None
    ) -> Invocation:
        identity = parse_id(substrate_id)
        compiled = self.compiled(identity)
        start = time.perf_counter()
        result = compiled.invoke(parameters)
        elapsed = (time.perf_counter() - start) * 1000.0
        self._invocations.add(identity)
        return Invocation(identity, result, elapsed)

    def invoke_many(
        self,
        invocations: Iterable[tuple[int | str, Mapping[str, Any] | None]],
        *,
        budget: BatchBudget | None = None,
    ) -> list[Invocation | errors.BfxError]:
        """Invokes in input order; each answer is an Invocation or the error for
        that item. Items for the same substrate run through the sandbox's batch
        fast path together; ``elapsed_ms`` is then the group's mean.

        With a ``budget`` (:mod:`bfx.budget`) the batch shares one deadline (items
        not started in time answer ``reason: batch_time_budget``), its answer size is
        charged as results arrive (:class:`~bfx.errors.ResultTooLargeError` stops it),
        and a cancelled budget stops it between steps (:class:`~bfx.budget.Cancelled`).
        """
        items = list(invocations)
        results: list[Invocation | errors.BfxError | None] = [None] * len(items)
        groups: dict[int, list[int]] = {}
        for index, (substrate_id, _parameters) in enumerate(items):
            try:
                groups.setdefault(parse_id(substrate_id), []).append(index)
            except errors.BfxError as exc:
                results[index] = exc
        for identity, indices in groups.items():
            if budget is not None:
                budget.check()
                if budget.expired():
                    for index in indices:
                        results[index] = budget.out_of_time()
                    continue
            try:
                compiled = self.compiled(identity)
            except errors.BfxError as exc:
                for index in indices:
                    results[index] = exc
                continue
            if budget is None:
                succeeded = self._invoke_group(identity, compiled, items, indices, results)
            else:
                succeeded = self._invoke_group_within(
                    identity, compiled, items, indices, results, budget
                )
            if succeeded:
                self._invocations.add(identity, succeeded)
        return results  # type: ignore[return-value]

    @staticmethod
    def _invoke_group(
        identity: int,
        compiled: Compiled,
        items: list[Any],
        indices: list[int],
        results: list[Any],
    ) -> int:
        """One substrate's items in one fast-path call; returns how many succeeded."""
        start = time.perf_counter()
        answers = compiled.invoke_many([items[i][1] for i in indices], return_exceptions=True)
        elapsed = (time.perf_counter() - start) * 1000.0 / len(indices)
        succeeded = 0
        for index, answer in zip(indices, answers, strict=True):
            if isinstance(answer, errors.BfxError):
                results[index] = answer
            else:
                results[index] = Invocation(identity, answer, elapsed)
                succeeded += 1
        return succeeded

    @staticmethod
    def _invoke_group_within(
        identity: int,
        compiled: Compiled,
        items: list[Any],
        indices: list[int],
        results: list[Any],
        budget: BatchBudget,
    ) -> int:
        """Like :meth:`_invoke_group`, a step at a time, checking the budget between
        steps. Steps are long while items are cheap (the fast path stays fast) and one
        item long once an item costs over a millisecond, so the deadline is overrun by
        at most one item's own time budget."""
        perf = time.perf_counter
        step = 16
        succeeded = 0
        pos = 0
        while pos < len(indices):
            budget.check()
            if budget.expired():
                for index in indices[pos:]:
                    results[index] = budget.out_of_time()
                break
            part = indices[pos : pos + step]
            pos += len(part)
            start = perf()
            answers = compiled.invoke_many([items[i][1] for i in part], return_exceptions=True)
            elapsed = (perf() - start) * 1000.0 / len(part)
            for index, answer in zip(part, answers, strict=True):
                if not isinstance(answer, errors.BfxError):
                    try:
                        size = json_size(answer)
                    except errors.InvocationError as exc:
                        answer = exc
                    else:
                        budget.charge(size + ITEM_OVERHEAD)
                        results[index] = Invocation(identity, answer, elapsed)
                        succeeded += 1
                        continue
                budget.charge(len(answer.message) + ITEM_OVERHEAD)
                results[index] = answer
            step = 1 if elapsed > 1.0 else 256
        return succeeded

    def value(
        self, substrate_id: int | str, parameters: Mapping[str, Any] | None = None
    ) -> int | float:
        """The substrate's value for the operators: its result, which must be a number."""
        result = self.invoke(substrate_id, parameters).result
        operators.require_number(result, "value of the substrate")
        return result

    # ------------------------------------------------------------ operators

    def divide(self, substrate_id: int | str) -> list[dict[str, Any]]:
        self._arena.get(substrate_id)  # 404 for an unknown id
        return operators.divide()

    def multiply(self, values: Sequence[Any]) -> dict[str, Any]:
        unity_value, unity_hex = operators.multiply(values)
        return {
            "unity_value": unity_value,
            "unity_hex": unity_hex,
            "dimensions_collapsed": len(values),
        }

    def add(
        self, substrate_id: int | str, value: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._shift(operators.add, substrate_id, value, parameters)

    def subtract(
        self, substrate_id: int | str, value: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._shift(operators.subtract, substrate_id, value, parameters)

    def _shift(
        self,
        op: Any,
        substrate_id: int | str,
        value: Any,
        parameters: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        operators.require_number(value, "value")
        original = self.value(substrate_id, parameters)
        return {"original_value": original, "value": value, "new_value": op(original, value)}

    def modulus(
        self, substrate_id: int | str, modulus: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        operators.require_number(modulus, "modulus")
        original = self.value(substrate_id, parameters)
        expressed, residue = operators.modulus(original, modulus)
        return {"value": original, "modulus": modulus, "expressed": expressed, "residue": residue}

    def power(
        self, substrate_id: int | str, exponent: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        operators.require_number(exponent, "exponent")
        original = self.value(substrate_id, parameters)
        return {"original_value": original, "result_value": operators.power(original, exponent)}

    def root(
        self, substrate_id: int | str, degree: Any, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        operators.require_number(degree, "degree")
        original = self.value(substrate_id, parameters)
        return {"original_value": original, "result_value": operators.root(original, degree)}

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
        _check_page(limit)
        needle = name.casefold() if name else None

        def matches() -> Iterator[Substrate]:
            for s in self.iter_substrates():
                if expression_type is not None and s.expression_type != expression_type:
                    continue
                if needle is not None:
                    candidate = s.metadata.get("name")
                    if not isinstance(candidate, str) or needle not in candidate.casefold():
                        continue
                yield s

        return _keyset_page(matches(), "created_at", limit, cursor)

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
        _check_page(limit)
        if sort not in ("created_at", "-created_at"):
            raise errors.ValidationError(
                "sort must be created_at or -created_at", {"field": "sort"}
            )
        filters = dict(filters or {})
        expression_type = filters.pop("expression_type", None)
        after = _time_filter(filters.pop("created_after", None), "created_after")
        before = _time_filter(filters.pop("created_before", None), "created_before")
        meta: list[tuple[str, Any]] = []
        for key, value in filters.items():
            if not key.startswith("metadata.") or len(key) == len("metadata."):
                raise errors.ValidationError(
                    f"unknown filter {key!r}; expected expression_type, metadata.<key>, "
                    "created_after or created_before",
                    {"field": f"filters.{key}"},
                )
            meta.append((key[len("metadata.") :], value))
        missing = object()

        def matches() -> Iterator[Substrate]:
            for s in self.iter_substrates():
                if expression_type is not None and s.expression_type != expression_type:
                    continue
                created = to_micros(s.created_at)
                if after is not None and not created > after:
                    continue
                if before is not None and not created < before:
                    continue
                if any(s.metadata.get(k, missing) != v for k, v in meta):
                    continue
                yield s

        return _keyset_page(matches(), sort, limit, cursor)

    # ------------------------------------------------------------ relationships

    def _edge_row(self, item: Mapping[str, Any], created: int) -> RelationshipRow:
        rel_type = item.get("rel_type")
        if not isinstance(rel_type, str):
            raise errors.InvalidRelationshipTypeError(
                "rel_type must be a string", {"field": "rel_type"}
            )
        bidirectional = item.get("bidirectional", False)
        if not isinstance(bidirectional, bool):
            raise errors.ValidationError(
                "bidirectional must be a boolean", {"field": "bidirectional"}
            )
        source = field_id(item.get("source_id"), "source_id")
        target = field_id(item.get("target_id"), "target_id")
        constraints = _json_object_bytes(item.get("constraints"), "constraints")
        return RelationshipRow(
            None, normalize_rel_type(rel_type), source, target, bidirectional, constraints, created
        )

    def relate(
        self,
        rel_type: str,
        source_id: int | str,
        target_id: int | str,
        bidirectional: bool = False,
        constraints: Mapping[str, Any] | None = None,
    ) -> Relationship:
        created = now_us()
        row = self._edge_row(
            {
                "rel_type": rel_type,
                "source_id": source_id,
                "target_id": target_id,
                "bidirectional": bidirectional,
                "constraints": constraints,
            },
            created,
        )
        rid = _one(self._engine.insert_relationships([row]))
        return Relationship(
            rid,
            row.rel_type,
            row.source,
            row.target,
            bidirectional,
            dict(constraints or {}),
            from_micros(created),
        )

    def relate_many(
        self, items: Sequence[Mapping[str, Any]], atomic: bool = False
    ) -> list[Relationship | errors.BfxError]:
        created = now_us()
        prepared: list[tuple | errors.BfxError] = []
        for item in items:
            try:
                if not isinstance(item, Mapping):
                    raise errors.ValidationError("each item must be an object", {})
                prepared.append((item, self._edge_row(item, created)))
            except errors.BfxError as exc:
                prepared.append(exc)
        rows = [p[1] for p in prepared if not isinstance(p, errors.BfxError)]
        dry_run = atomic and len(rows) != len(prepared)
        answers = self._engine.insert_relationships(rows, atomic=atomic, dry_run=dry_run)
        results = _merge(
            prepared,
            answers,
            lambda p, rid: Relationship(
                rid,
                p[1].rel_type,
                p[1].source,
                p[1].target,
                p[1].bidirectional,
                dict(p[0].get("constraints") or {}),
                from_micros(created),
            ),
        )
        if atomic:
            _raise_if_any_failed(results)
        return results

    def get_relationship(self, relationship_id: int | str) -> Relationship:
        return Relationship.from_record(self._arena.edge(relationship_id))

    def delete_relationship(self, relationship_id: int | str) -> None:
        self._engine.delete_relationship(parse_id(relationship_id))

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
        offset = paging.offset_of(cursor, offset)
        _check_page(limit, offset)
        total, records = self._arena.outgoing(substrate_id, rel_type, offset, limit)
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
        offset = paging.offset_of(cursor, offset)
        _check_page(limit, offset)
        total, records = self._arena.incoming(substrate_id, rel_type, offset, limit)
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
        offset = paging.offset_of(cursor, offset)
        _check_page(limit, offset)
        total, records = self._arena.edges(rel_type, source_id, target_id, offset, limit)
        return total, [Relationship.from_record(r) for r in records]

    # ------------------------------------------------------------ export / import

    def export_records(self) -> Iterator[dict[str, Any]]:
        """Every substrate, then every relationship, as JSON-ready dicts with a
        ``kind`` field; lazily. A database store is read in one consistent
        snapshot on a connection of its own; the in-memory one page by page."""
        for row in self._engine.export_rows():
            yield export_record(row)

    def import_records(self, records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Imports exported records, streaming: they are checked and written
        ``_IMPORT_CHUNK`` at a time, so an import of any size holds one chunk.
        Substrates must come before the relationships that use them. Code goes
        through the sandbox again and each id is checked against the content;
        ids that exist are skipped and counted. The first invalid record raises
        (with its ``index``): every record before it is imported, none after."""
        counts = {"imported_substrates": 0, "imported_relationships": 0, "skipped": 0}
        chunk: list[tuple[int, str, SubstrateRow | RelationshipRow, Compiled | None]] = []
        for index, record in enumerate(records):
            try:
                kind, row, compiled = self._import_row(record)
            except errors.BfxError as exc:
                self._import_chunk(chunk, counts)
                exc.details.setdefault("index", index)
                raise
            if chunk and (chunk[-1][1] != kind or len(chunk) >= _IMPORT_CHUNK):
                self._import_chunk(chunk, counts)
                chunk = []
            chunk.append((index, kind, row, compiled))
        self._import_chunk(chunk, counts)
        return counts

    def _import_row(
        self, record: Any
    ) -> tuple[str, SubstrateRow | RelationshipRow, Compiled | None]:
        """One imported record checked like a created one, and more (DESIGN.md §6):
        a time zone-aware ``created_at`` within years 1-9999 in UTC, ids that match
        the content, nesting within ``MAX_IMPORT_DEPTH``. Nothing it lets through
        can make a later read fail."""
        if not isinstance(record, Mapping):
            raise errors.ValidationError("each record must be an object", {})
        kind = record.get("kind", "substrate" if "expression_code" in record else "relationship")
        created = _import_time(record.get("created_at"))
        if kind == "substrate":
            _check_depth(record.get("metadata"), "metadata")
            expected_id = _import_substrate_id(record)
            compiled, meta = self._prepare(
                record.get("expression_type"), record.get("expression_code"), record.get("metadata")
            )
            canonical = record.get("canonical_code")
            if canonical is not None and canonical != compiled.canonical:
                raise errors.ValidationError(
                    "canonical_code does not match the canonical form of expression_code",
                    {"field": "canonical_code", "computed": compiled.canonical[:200]},
                )
            row = SubstrateRow(
                expected_id,
                record["expression_type"],
                record["expression_code"],
                compiled.canonical,
                meta,
                created,
            )
            return kind, row, compiled
        if kind == "relationship":
            _check_depth(record.get("constraints"), "constraints")
            row = self._edge_row(record, created)
            given = record.get("relationship_id")
            if given is not None:
                expected = field_id(given, "relationship_id")
                computed = relationship_id(row.source, row.target, row.rel_type)
                if expected != computed:
                    raise _id_mismatch(expected, computed, "relationship_id")
            return kind, row, None
        raise errors.ValidationError("kind must be substrate or relationship", {"field": "kind"})

    def _import_chunk(
        self,
        chunk: list[tuple[int, str, SubstrateRow | RelationshipRow, Compiled | None]],
        counts: dict[str, int],
    ) -> None:
        """Writes a run of same-kind records: up to the first that fails (other
        than as a duplicate, which is skipped), then raises that failure."""
        if not chunk:
            return
        kind = chunk[0][1]
        insert = (
            self._engine.insert_substrates
            if kind == "substrate"
            else self._engine.insert_relationships
        )
        # One check and one write: the rows before the first failure (duplicates are
        # skipped), nothing from it on.
        answers = insert([c[2] for c in chunk], until_failure=True)  # type: ignore[arg-type]
        failure: errors.BfxError | None = None
        stop = len(answers)
        for position, answer in enumerate(answers):
            if isinstance(answer, errors.BfxError) and not isinstance(
                answer, errors.DuplicateError
            ):
                failure, stop = answer, position
                break
        for (_index, _kind, _row, compiled), answer in zip(chunk[:stop], answers, strict=False):
            if isinstance(answer, errors.DuplicateError):
                counts["skipped"] += 1
            else:
                counts[f"imported_{kind}s"] += 1
                if compiled is not None:
                    self._cache.put(answer, compiled)
        if failure is not None:
            failure.details.setdefault(
                "index", chunk[stop][0] if stop < len(chunk) else chunk[0][0]
            )
            raise failure

    # ------------------------------------------------------------ statistics

    def stats(self) -> dict[str, int]:
        return {
            "total_substrates": len(self._arena),
            "total_relationships": self._arena.relationship_count,
        }

    def top_invoked(self, k: int = 5) -> list[tuple[int, int]]:
        """The ``k`` most invoked substrates of this process, ``(id, count)``, most first."""
        while True:
            top = self._invocations.top(k)
            # Deleted meanwhile, or by another process (seen at a refresh): drop.
            gone = [identity for identity, _ in top if identity not in self._arena]
            if not gone:
                return top
            self._invocations.discard_many(gone)


def export_record(row: SubstrateRow | RelationshipRow) -> dict[str, Any]:
    """A stored row as an export dict with its ``kind``."""
    if isinstance(row, SubstrateRow):
        s = Substrate.from_row(row)
        return {
            "kind": "substrate",
            "substrate_id": s.substrate_id,
            "identity": s.identity,
            "expression_type": s.expression_type,
            "expression_code": s.expression_code,
            "canonical_code": s.canonical_code,
            "metadata": s.metadata,
            "created_at": format_time(s.created_at),
        }
    r = Relationship.from_row(row)
    return {
        "kind": "relationship",
        "relationship_id": r.relationship_id,
        "rel_type": r.rel_type,
        "source_id": r.source_id,
        "target_id": r.target_id,
        "bidirectional": r.bidirectional,
        "constraints": r.constraints,
        "created_at": format_time(r.created_at),
    }


def _one(answers: list[Any]) -> int:
    """The id from a one-item store answer, or its error raised."""
    answer = answers[0]
    if isinstance(answer, errors.BfxError):
        raise answer
    return answer


def _created_key(s: Substrate) -> tuple[int, int]:
    return (to_micros(s.created_at), s.identity)


def _keyset_page(
    matches: Iterable[Substrate], sort: str, limit: int, cursor: str | None
) -> paging.Page[Substrate]:
    """A page of ``matches`` in ``sort`` order (``created_at`` / ``-created_at``, ties by
    id in the same direction) after the cursor's ``(created_at, id)`` key; the cursor's
    kind is the sort, so a cursor of the other order is refused."""
    after = None if cursor is None else paging.decode_cursor(cursor, sort, 2)
    page, count, last = paging.select_page(
        matches, _created_key, limit, after, descending=sort.startswith("-")
    )
    nxt = None if last is None else paging.encode_cursor(sort, *last)
    return paging.Page(page, count, nxt)


#: How deeply an imported record's ``metadata`` or ``constraints`` may nest
#: (DESIGN.md §6: 32 levels, as for any request body).
MAX_IMPORT_DEPTH = 32


def _import_time(value: Any) -> int:
    """An imported ``created_at`` as microseconds: RFC 3339 (or an aware datetime)
    naming its UTC offset, within years 1-9999 once converted to UTC, so that it
    can always be read back. Absent means now."""
    if value is None:
        return now_us()
    field = {"field": "created_at"}
    if isinstance(value, str):
        try:
            value = msgspec.convert(value, datetime)
        except msgspec.ValidationError:
            raise errors.ValidationError(
                "created_at must be an RFC 3339 timestamp", {**field, "value": value[:64]}
            ) from None
    if not isinstance(value, datetime):
        raise errors.ValidationError("created_at must be an RFC 3339 timestamp", field)
    if value.utcoffset() is None:
        raise errors.ValidationError(
            "created_at must name its UTC offset (RFC 3339), e.g. 2026-01-01T00:00:00Z",
            {**field, "value": value.isoformat()},
        )
    us = to_micros(value)
    if not MIN_MICROS <= us <= MAX_MICROS:
        raise errors.ValidationError(
            "created_at must lie within years 1 to 9999 once converted to UTC",
            {**field, "value": value.isoformat()},
        )
    return us


def _import_substrate_id(record: Mapping[str, Any]) -> int | None:
    """The id an imported substrate claims (``substrate_id`` and ``identity`` must
    agree when both are given); the store checks it against the content."""
    given = [
        (field_id(record[f], "substrate_id"), f)
        for f in ("substrate_id", "identity")
        if record.get(f) is not None
    ]
    if len(given) == 2 and given[0][0] != given[1][0]:
        raise errors.ValidationError(
            "substrate_id and identity name different ids",
            {"field": "identity", "given": format_id(given[1][0])},
        )
    return given[0][0] if given else None


def _id_mismatch(given: int, computed: int, field: str) -> errors.ValidationError:
    return errors.ValidationError(
        f"id {format_id(given)} does not match the record's content "
        f"(its id is {format_id(computed)})",
        {"field": field, "given": format_id(given), "computed": format_id(computed)},
    )


def _check_depth(value: Any, field: str, limit: int = MAX_IMPORT_DEPTH) -> None:
    """Refuses a JSON value nested deeper than ``limit`` (iteratively: no
    RecursionError however deep it is)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            children: Iterable[Any] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            raise errors.ValidationError(
                f"{field} is nested deeper than {limit} levels", {"field": field, "limit": limit}
            )
        stack.extend((child, depth + 1) for child in children)


def _time_filter(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return to_micros(value)
    if isinstance(value, str):
        try:
            return to_micros(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            pass
    raise errors.ValidationError(f"{field} must be an RFC 3339 timestamp", {"field": field})


# Re-exported for callers that format ids next to records.
__all__ += ["format_id"]
