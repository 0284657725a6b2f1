"""Substrates: create (one or a batch), read, delete, page, the compiled cache, and
invocation (one or a batch, within a budget), over the engine.

Answers are stored rows (:class:`~bfx.rows.SubstrateRow`, the id filled in), the
arena's records for reads (the hot path: each face builds its own type from the tuple
directly), and :class:`~bfx.models.Invocation` values.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from time import perf_counter
from typing import Any

from bfx import errors, operators, tracing
from bfx._core import EXPRESSION_TYPES, format_id, now_us, parse_id
from bfx._core import substrate_id as content_id
from bfx.budget import ITEM_OVERHEAD, BatchBudget, json_size
from bfx.domain.checks import check_page, json_object_bytes, merge, raise_if_any_failed
from bfx.domain.metadata import apply_patch
from bfx.domain.pipelines import (
    DEFAULT_MAX_DEPTH,
    Plan,
    build_plan,
    parse_spec,
    spec_from,
    step_ids,
)
from bfx.domain.results import MISS, ResultCache, canonical_parameters
from bfx.engine import Engine
from bfx.invocations import InvocationCounts
from bfx.models import Invocation
from bfx.rows import SubstrateRow
from bfx.sandbox import Compiled, Limits, compile_substrate
from bfx.tracing import EVALUATE, span

__all__ = ["RESULT_MIN_MS", "RESULT_RECHECK_FIRST", "CompiledCache", "Substrates"]

_SCAN_PAGE = 4096
#: Pipelines an ``in_use`` refusal lists (``count`` gives them all).
_IN_USE_LISTED = 100
#: What the compiled cache holds: a sandboxed expression, or a pipeline's plan.
Runnable = Compiled | Plan
#: See ``Substrates.result_min_ms`` (BENCHMARKS.md "Result cache": a hit costs ~2 µs).
RESULT_MIN_MS = 0.02
#: Calls of a costly substrate before one is evaluated and timed again instead of looked
#: up (then twice as many, up to :data:`RESULT_RECHECK_MAX`). Noise only ever slows a
#: call down, and under load it slowed two cheap calls in a row often enough to mark a
#: trivial lambda costly within seconds of ``wrk``; its calls then paid ~2 µs of lookup
#: for ~0.7 µs of evaluation, for good. A re-check that runs fast ends that.
RESULT_RECHECK_FIRST = 64
RESULT_RECHECK_MAX = 65_536


class _Rechecks:
    """When a costly substrate is next evaluated and timed instead of looked up."""

    __slots__ = ("every", "left")

    def __init__(self) -> None:
        #: Calls between re-checks, and calls left before the next one.
        self.every = self.left = RESULT_RECHECK_FIRST


class CompiledCache:
    """A bounded LRU of compiled expressions keyed by substrate id.

    Compiled callables are Python objects, so they live here and never in the
    arena; a miss recompiles from the stored canonical code.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("cache_size must be at least 1")
        self._maxsize = maxsize
        self._items: OrderedDict[int, Runnable] = OrderedDict()
        self._lock = threading.Lock()
        #: Lookups that found a compiled expression, and those that did not (the
        #: metrics' ``compiled_cache``).
        self.hits = 0
        self.misses = 0

    def get(self, key: int) -> Runnable | None:
        # No lock: every invoke looks here, and the lookup and the move are each one C
        # call on the dict, atomic under the GIL. A put evicting the key between the
        # two makes the move miss it: the lookup's answer still stands. The counts are
        # single ``+=`` of ints, which 3.11 never interrupts for another thread.
        items = self._items
        item = items.get(key)
        if item is None:
            self.misses += 1
            return None
        try:  # noqa: SIM105  (contextlib.suppress: a context manager per invoke)
            items.move_to_end(key)
        except KeyError:
            pass
        self.hits += 1
        return item

    def put(self, key: int, value: Runnable) -> None:
        lock = self._lock
        lock.acquire()
        try:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)
        finally:
            lock.release()

    def discard(self, key: int) -> None:
        with self._lock:
            self._items.pop(key, None)

    def __len__(self) -> int:
        return len(self._items)


class Substrates:
    """The substrates of one engine, with their compiled cache and invocation counts."""

    def __init__(
        self,
        engine: Engine,
        limits: Limits,
        cache_size: int,
        result_cache_size: int = 0,
        pipeline_max_depth: int = DEFAULT_MAX_DEPTH,
    ) -> None:
        self.engine = engine
        self.arena = engine.arena
        # A step of a pipeline is not deleted (409 in_use).
        engine.delete_guards.append(self._not_in_use)
        self.limits = limits
        #: How deeply pipelines may nest (``bfx.domain.pipelines``).
        self.pipeline_max_depth = pipeline_max_depth
        self.cache = CompiledCache(cache_size)
        #: Results by (id, canonical parameters), bounded in bytes; None: off
        #: (``bfx.domain.results``).
        self.results = ResultCache(result_cache_size) if result_cache_size > 0 else None
        #: Results are cached only for substrates whose evaluation has taken at least
        #: this long (after their first call): below it a lookup (key, lock, dict)
        #: costs about what it saves.
        self.result_min_ms = RESULT_MIN_MS
        #: Substrates found that slow, with their re-checks: only their calls look
        #: results up.
        self._costly: dict[int, _Rechecks] = {}
        #: Slow evaluations in a row, per substrate not yet found costly.
        self._slow: dict[int, int] = {}
        #: Successful invocations per substrate, of this process (``bfx.invocations``).
        self.invocations = InvocationCounts()
        #: Read on every GET: the counts' dict itself (a lookup is atomic; writes lock).
        self.counts = self.invocations.counts

    # ---- writes -------------------------------------------------------------------------

    def prepare(
        self, expression_type: Any, expression_code: Any, metadata: Any
    ) -> tuple[Runnable, bytes]:
        """The sandbox's verdict (a pipeline: its plan, its steps checked) and the stored
        metadata, or the error refusing them."""
        if not isinstance(expression_type, str) or expression_type not in EXPRESSION_TYPES:
            raise errors.ValidationError(
                f"expression_type must be one of {', '.join(EXPRESSION_TYPES)}",
                {"field": "expression_type", "allowed": list(EXPRESSION_TYPES)},
            )
        if not isinstance(expression_code, str):
            raise errors.ValidationError(
                "expression_code must be a string", {"field": "expression_code"}
            )
        if expression_type == "pipeline":
            spec = parse_spec(expression_code, self.limits)
            identity = content_id("pipeline", spec.canonical)
            compiled: Runnable = build_plan(
                identity, spec, self.limits, self._resolve, max_depth=self.pipeline_max_depth
            )
        else:
            compiled = compile_substrate(expression_type, expression_code, self.limits)
        return compiled, json_object_bytes(metadata, "metadata")

    def _resolve(self, identity: int, max_depth: int, path: tuple[int, ...]) -> Runnable:
        """A step's compiled expression or plan (``build_plan``'s ``resolve``)."""
        if identity not in self.arena:
            self._require(identity)
        cached = self.cache.get(identity)
        if cached is not None:
            return cached
        row = self.engine.substrate(identity)
        return self._compile_row(identity, row, path)

    def _compile_row(self, identity: int, row: SubstrateRow, path: tuple[int, ...]) -> Runnable:
        compiled: Runnable
        if row.expression_type == "pipeline":
            spec = parse_spec(row.canonical_code, self.limits)
            compiled = build_plan(
                identity,
                spec,
                self.limits,
                self._resolve,
                max_depth=self.pipeline_max_depth,
                path=path,
            )
        else:
            compiled = compile_substrate(row.expression_type, row.canonical_code, self.limits)
        self.cache.put(identity, compiled)
        return compiled

    def create(
        self, expression_type: str, expression_code: str, metadata: Mapping[str, Any] | None
    ) -> SubstrateRow:
        """Validates, canonicalises and stores an expression; the stored row.

        Raises SandboxError/ValidationError for rejected code, DuplicateError
        (``details["substrate_id"]`` names the existing one) or CollisionError.
        """
        compiled, row = self._new_row(expression_type, expression_code, metadata)
        return self._stored(compiled, row, self.engine.insert_substrate(row, _steps(compiled)))

    async def create_async(
        self, expression_type: str, expression_code: str, metadata: Mapping[str, Any] | None
    ) -> SubstrateRow:
        """:meth:`create` for a coroutine on the event loop: checked and compiled
        here, committed with the other creates of the loop (``Engine.write_substrate``).
        A pipeline reads its steps first: what other processes wrote is applied before
        (a create takes no freshness step of its own, ``bfx.asgi.middleware.freshness``)."""
        if expression_type == "pipeline":
            await self.engine.catch_up()
        compiled, row = self._new_row(expression_type, expression_code, metadata)
        return self._stored(compiled, row, await self.engine.write_substrate(row, _steps(compiled)))

    def _new_row(
        self, expression_type: str, expression_code: str, metadata: Mapping[str, Any] | None
    ) -> tuple[Runnable, SubstrateRow]:
        compiled, meta = self.prepare(expression_type, expression_code, metadata)
        row = SubstrateRow(
            None, expression_type, expression_code, compiled.canonical, meta, now_us()
        )
        return compiled, row

    def _stored(self, compiled: Runnable, row: SubstrateRow, identity: int) -> SubstrateRow:
        """The row as stored under ``identity``, its compiled form cached."""
        self.cache.put(identity, compiled)
        return SubstrateRow(
            identity,
            row.expression_type,
            row.expression_code,
            row.canonical_code,
            row.metadata,
            row.created_us,
        )

    def compose(
        self,
        steps: Sequence[Any],
        aggregate: str | None = None,
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> SubstrateRow:
        """Creates the pipeline of ``steps`` (each ``{"substrate_id", "as"?,
        "parameters"?}`` or a bare id): a substrate of type ``pipeline`` whose code is
        the canonical JSON. ``name`` is stored as ``metadata["name"]`` (a different
        ``metadata["name"]`` beside it is a 422)."""
        doc: dict[str, Any] = {
            "steps": [
                {k: v for k, v in step.items() if v is not None}
                if isinstance(step, Mapping)
                else step
                for step in steps
            ]
        }
        if aggregate is not None:
            doc["aggregate"] = aggregate
        spec = spec_from(doc, self.limits)
        if name is not None:
            if metadata is not None and metadata.get("name", name) != name:
                raise errors.ValidationError(
                    "name and metadata.name differ: give one", {"field": "name"}
                )
            metadata = {**(metadata or {}), "name": name}
        return self.create("pipeline", spec.canonical, metadata)

    def create_many(
        self, items: Sequence[Mapping[str, Any]], atomic: bool = False
    ) -> list[SubstrateRow | errors.BfxError]:
        """Creates in input order; each answer is the stored row or the error for that
        item. A repeat inside the batch fails as a duplicate of the earlier one. With
        ``atomic``, any failure raises BatchError and writes nothing."""
        prepared: list[tuple[Mapping[str, Any], Runnable, bytes] | errors.BfxError] = []
        for item in items:
            try:
                if not isinstance(item, Mapping):
                    raise errors.ValidationError("each item must be an object", {})
                compiled, meta = self.prepare(
                    item.get("expression_type"), item.get("expression_code"), item.get("metadata")
                )
                prepared.append((item, compiled, meta))
            except errors.BfxError as exc:
                prepared.append(exc)
        created = now_us()

        def row(p: tuple[Mapping[str, Any], Runnable, bytes], identity: int | None) -> SubstrateRow:
            item, compiled, meta = p
            return SubstrateRow(
                identity,
                item["expression_type"],
                item["expression_code"],
                compiled.canonical,
                meta,
                created,
            )

        valid = [p for p in prepared if not isinstance(p, errors.BfxError)]
        rows = [row(p, None) for p in valid]
        steps = [_steps(p[1]) for p in valid]
        dry_run = atomic and len(rows) != len(prepared)
        answers = self.engine.insert_substrates(
            rows, atomic=atomic, dry_run=dry_run, steps=steps if any(steps) else None
        )
        results = merge(prepared, answers, row)
        if atomic:
            raise_if_any_failed(results)
        # Only what was written is cached (an atomic failure wrote nothing).
        for p, r in zip(prepared, results, strict=True):
            if isinstance(r, SubstrateRow):
                self.cache.put(r.identity, p[1])  # type: ignore[arg-type,index]
        return results

    def update(self, substrate_id: int | str, metadata: Any) -> SubstrateRow:
        """Applies a JSON merge patch (RFC 7396) to a substrate's metadata; the row as
        stored now. The id stays (metadata is not part of it)."""
        identity = parse_id(substrate_id)
        if not isinstance(metadata, Mapping):
            raise errors.ValidationError("metadata must be a JSON object", {"field": "metadata"})
        return self.engine.update_metadata(identity, lambda stored: apply_patch(stored, metadata))

    def delete(self, substrate_id: int | str) -> int:
        """Deletes a substrate and its relationships; returns how many relationships
        went with it."""
        identity = parse_id(substrate_id)
        removed = self.engine.delete_substrate(identity)
        self._forget(identity)
        return removed

    def users(self, identity: int) -> list[int]:
        """The pipelines that have ``identity`` as a step, by id: read from the arena's
        ``COMPOSITION`` edges into it (every worker has them after its refresh), each
        confirmed against the pipeline's own steps (a hand-made ``COMPOSITION`` edge
        uses nothing)."""
        arena = self.arena
        found: set[int] = set()
        for edge in arena.incoming(identity, "COMPOSITION")[1]:
            source = edge[2]
            if edge[3] != identity or source == identity or source in found:
                continue
            record = arena.find(source)
            if record is not None and record[1] == "pipeline" and identity in step_ids(record[3]):
                found.add(source)
        return sorted(found)

    def _not_in_use(self, identity: int) -> None:
        """The delete guard: 409 ``in_use`` while a pipeline has the substrate as a step."""
        users = self.users(identity)
        if users:
            raise errors.InUseError(
                f"{format_id(identity)} is a step of {len(users)} pipeline"
                f"{'s' if len(users) > 1 else ''}: delete "
                f"{'them' if len(users) > 1 else 'it'} first",
                {
                    "substrate_id": format_id(identity),
                    "pipelines": [format_id(u) for u in users[:_IN_USE_LISTED]],
                    "count": len(users),
                },
            )

    def _forget(self, identity: int) -> None:
        """Drops what this process keeps about a deleted substrate."""
        self.cache.discard(identity)
        self.invocations.discard(identity)
        if self.results is not None:
            self.results.discard(identity)
            self._costly.pop(identity, None)
            self._slow.pop(identity, None)

    def _require(self, identity: int) -> None:
        """NotFoundError unless the arena holds ``identity``. Checked before any cache is
        read: a substrate deleted by another worker leaves the arena when the change log
        is applied (the request's freshness step), while this process's caches still
        hold it; they are dropped here, never served."""
        if identity not in self.arena:
            self._forget(identity)
            self.arena.get(identity)  # raises NotFoundError (the arena's own message)

    # ---- reads --------------------------------------------------------------------------

    def page(
        self, limit: int = 100, cursor: int | str | None = None
    ) -> tuple[list[tuple[Any, ...]], int | None]:
        """A page of the arena's records ordered by id, and the cursor of the next page.

        The cursor is the last id of the page; a page holds the ids above it, so paging
        stays correct while records are created and deleted."""
        check_page(limit)
        return self.arena.page(cursor, limit)  # type: ignore[no-any-return]

    def scan(self) -> Iterator[tuple[Any, ...]]:
        """Every record of the arena, in storage order, fetched a page at a time."""
        position: int | None = 0
        while position is not None:
            records, position = self.arena.scan(position, _SCAN_PAGE)
            yield from records

    # ---- invocation ---------------------------------------------------------------------

    def compiled(self, substrate_id: int | str) -> Runnable:
        """The compiled expression of a substrate (from the cache, or compiled again
        from its stored canonical code); a pipeline's :class:`~bfx.domain.pipelines.Plan`."""
        identity = parse_id(substrate_id)
        self._require(identity)
        compiled = self.cache.get(identity)
        if compiled is None:
            compiled = self._compile_row(identity, self.engine.substrate(identity), ())
        return compiled

    def invoke(
        self, substrate_id: int | str, parameters: Mapping[str, Any] | None = None
    ) -> Invocation:
        # An int is checked by the arena's own lookup (400 invalid_id out of range).
        identity = substrate_id if type(substrate_id) is int else parse_id(substrate_id)
        if identity not in self.arena:
            self._require(identity)
        results = self.results
        key = None
        recheck = False
        # Nearly always empty: then no lookup at all.
        costly = self._costly.get(identity) if self._costly else None
        if costly is not None:
            costly.left -= 1
            if costly.left > 0:
                start = perf_counter()
                key = canonical_parameters(parameters)
                if key is not None:
                    result = results.get(identity, key)  # type: ignore[union-attr]
                    if result is not MISS:
                        elapsed = (perf_counter() - start) * 1000.0
                        self.invocations.add(identity)
                        return Invocation(identity, result, elapsed)
            else:
                recheck = True  # evaluated and timed: is it still costly?
        # The cache first, without compiled()'s frame: it answers all but the first call.
        compiled = self.cache.get(identity) or self.compiled(identity)
        start = perf_counter()
        if tracing.tracer is None:  # the hot path: no span, not even a no-op one
            result = compiled.invoke(parameters)
        else:
            result = _evaluate_traced(compiled, parameters, identity)
        elapsed = (perf_counter() - start) * 1000.0
        if results is not None:
            if recheck:
                self._rechecked(identity, elapsed)
            elif elapsed >= self.result_min_ms:
                self._slow_call(identity, parameters, key, result)
            elif identity in self._slow:
                del self._slow[identity]
        self.invocations.add(identity)
        return Invocation(identity, result, elapsed)

    def _slow_call(self, identity: int, parameters: Any, key: bytes | None, result: Any) -> None:
        """Keeps a slow call's result once its substrate is found costly: after two
        slow evaluations in a row, neither of them its first call in this process (that
        one builds the compiled function, milliseconds that say nothing of a call), so
        one call slowed by the scheduler does not make a cheap substrate look up."""
        if identity not in self._costly:
            if identity not in self.counts:
                return
            seen = self._slow.get(identity, 0) + 1
            if seen < 2:
                self._slow[identity] = seen
                return
            self._slow.pop(identity, None)
            self._costly[identity] = _Rechecks()
        if key is None:
            key = canonical_parameters(parameters)
        if key is not None:
            self.results.put(identity, key, result)  # type: ignore[union-attr]

    def _rechecked(self, identity: int, elapsed: float) -> None:
        """A costly substrate timed again: still slow, the next re-check is twice as
        far; fast, noise had made it look costly, and it is looked up no more."""
        costly = self._costly.get(identity)
        if costly is None:  # deleted meanwhile
            return
        if elapsed >= self.result_min_ms:
            costly.every = costly.left = min(costly.every * 2, RESULT_RECHECK_MAX)
        else:
            del self._costly[identity]
            self.results.discard(identity)  # type: ignore[union-attr]

    def value(
        self, substrate_id: int | str, parameters: Mapping[str, Any] | None = None
    ) -> int | float:
        """The substrate's value for the operators: its result, which must be a number."""
        result = self.invoke(substrate_id, parameters).result
        operators.require_number(result, "value of the substrate")
        return result  # type: ignore[no-any-return]

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
            with span(EVALUATE) as traced:  # one span per substrate of the batch
                if traced is not None:
                    traced.set_attribute("bfx.substrate.id", format_id(identity))
                    traced.set_attribute("bfx.invocations", len(indices))
                if budget is None:
                    succeeded = _invoke_group(identity, compiled, items, indices, results)
                else:
                    succeeded = _invoke_group_within(
                        identity, compiled, items, indices, results, budget
                    )
            if succeeded:
                self.invocations.add(identity, succeeded)
        return results  # type: ignore[return-value]

    def top_invoked(self, k: int = 5) -> list[tuple[int, int]]:
        """The ``k`` most invoked substrates of this process, ``(id, count)``, most first."""
        while True:
            top = self.invocations.top(k)
            # Deleted meanwhile, or by another process (seen at a refresh): drop.
            gone = [identity for identity, _ in top if identity not in self.arena]
            if not gone:
                return top
            self.invocations.discard_many(gone)


def _steps(compiled: Runnable) -> tuple[int, ...] | None:
    """The ids a new substrate composes (a pipeline's steps), for its edges."""
    return compiled.steps if isinstance(compiled, Plan) else None


def _evaluate_traced(compiled: Compiled, parameters: Any, identity: int) -> Any:
    with span(EVALUATE) as traced:
        traced.set_attribute("bfx.substrate.id", format_id(identity))
        return compiled.invoke(parameters)


def _invoke_group(
    identity: int,
    compiled: Runnable,
    items: list[Any],
    indices: list[int],
    results: list[Any],
) -> int:
    """One substrate's items in one fast-path call; returns how many succeeded."""
    start = perf_counter()
    answers = compiled.invoke_many([items[i][1] for i in indices], return_exceptions=True)
    elapsed = (perf_counter() - start) * 1000.0 / len(indices)
    succeeded = 0
    for index, answer in zip(indices, answers, strict=True):
        if isinstance(answer, errors.BfxError):
            results[index] = answer
        else:
            results[index] = Invocation(identity, answer, elapsed)
            succeeded += 1
    return succeeded


def _invoke_group_within(
    identity: int,
    compiled: Runnable,
    items: list[Any],
    indices: list[int],
    results: list[Any],
    budget: BatchBudget,
) -> int:
    """Like :func:`_invoke_group`, a step at a time, checking the budget between
    steps. Steps are long while items are cheap (the fast path stays fast) and one
    item long once an item costs over a millisecond, so the deadline is overrun by
    at most one item's own time budget."""
    perf = perf_counter
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
