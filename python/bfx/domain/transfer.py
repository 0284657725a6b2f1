"""Export and import: every stored row as an export record, and the streaming import
that checks each record like a created one, and more (DESIGN.md §6)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import msgspec

from bfx import errors
from bfx._core import format_id, now_us, relationship_id
from bfx.domain.pipelines import Plan, step_ids
from bfx.domain.relationships import edge_row
from bfx.domain.substrates import Runnable, Substrates
from bfx.identity import field_id
from bfx.models import (
    MAX_MICROS,
    MIN_MICROS,
    Relationship,
    Substrate,
    format_time,
    from_micros,
    to_micros,
)
from bfx.rows import RelationshipRow, SubstrateRow
from bfx.storage.catalog import AliasRecord, Chain, HeadMove, LensRecord, VersionEntry

if TYPE_CHECKING:
    from bfx.domain.aliases import Aliases
    from bfx.domain.lenses import Lenses
    from bfx.domain.versions import Versions

__all__ = ["MAX_IMPORT_DEPTH", "Transfer", "export_record"]

#: Records an import checks and writes together.
_IMPORT_CHUNK = 2048
#: How deeply an imported record's ``metadata`` or ``constraints`` may nest
#: (DESIGN.md §6: 32 levels, as for any request body).
MAX_IMPORT_DEPTH = 32

_Chunk = list[tuple[int, str, SubstrateRow | RelationshipRow, Runnable | None]]


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


def _time(us: int) -> str:
    return format_time(from_micros(us))


def chain_record(chain: Chain) -> dict[str, Any]:
    """A version chain as an export dict."""
    return {
        "kind": "chain",
        "chain_id": format_id(chain.chain_id),
        "head": format_id(chain.head),
        "versions": [
            {
                "substrate_id": format_id(m.substrate),
                "version": m.version,
                "change_description": m.change_description,
                "created_at": _time(m.created_us),
            }
            for m in chain.members
        ],
        "history": [
            {
                "entry": h.entry,
                "head": format_id(h.head),
                "action": h.action,
                "created_at": _time(h.created_us),
            }
            for h in chain.history
        ],
    }


def alias_record(alias: AliasRecord) -> dict[str, Any]:
    return {
        "kind": "alias",
        "name": alias.name,
        "substrate_id": format_id(alias.substrate),
        "created_at": _time(alias.created_us),
    }


def lens_record(lens: LensRecord) -> dict[str, Any]:
    return {
        "kind": "lens",
        "name": lens.name,
        "expression_code": lens.expression_code,
        "parameters": msgspec.json.decode(lens.parameters),
        "description": lens.description,
        "created_at": _time(lens.created_us),
    }


class Transfer:
    """Export and import over the engine of ``substrates`` (whose sandbox and compiled
    cache an import uses), with the version chains, aliases and lenses of its store
    when given their domain parts."""

    def __init__(
        self,
        substrates: Substrates,
        versions: Versions | None = None,
        aliases: Aliases | None = None,
        lenses: Lenses | None = None,
    ) -> None:
        self.substrates = substrates
        self.engine = substrates.engine
        self.versions = versions
        self.aliases = aliases
        self.lenses = lenses

    def export_records(self) -> Iterator[dict[str, Any]]:
        """Every substrate (each pipeline after its steps), then every relationship, then every version chain, alias
        and stored lens, as JSON-ready dicts with a ``kind`` field; lazily. A database
        store's rows are read in one consistent snapshot on a connection of its own;
        the in-memory one page by page. The chains, aliases and lenses are the ones
        known when the export starts (so every chain's members, which cannot be
        deleted, are in the rows read after)."""
        chains = [] if self.versions is None else self.versions.all_chains()
        aliases = [] if self.aliases is None else self.aliases.all()
        lenses = [] if self.lenses is None else self.lenses.all()
        for row in _steps_first(self.engine.export_rows()):
            yield export_record(row)
        for chain in chains:
            yield chain_record(chain)
        for alias in aliases:
            yield alias_record(alias)
        for lens in lenses:
            if not lens.builtin:
                yield lens_record(lens)

    def import_records(self, records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
        """Imports exported records, streaming: they are checked and written
        ``_IMPORT_CHUNK`` at a time, so an import of any size holds one chunk.
        Substrates must come before the relationships that use them. Code goes
        through the sandbox again and each id is checked against the content;
        ids that exist are skipped and counted. The first invalid record raises
        (with its ``index``): every record before it is imported, none after."""
        # ``imported_chains``/``aliases``/``lenses`` appear once one is imported.
        counts = {"imported_substrates": 0, "imported_relationships": 0, "skipped": 0}
        chunk: _Chunk = []
        for index, record in enumerate(records):
            if isinstance(record, Mapping) and record.get("expression_type") == "pipeline":
                # A pipeline's steps must be in the arena before it is checked: write
                # what came before it first.
                self._import_chunk(chunk, counts)
                chunk = []
            if isinstance(record, Mapping) and record.get("kind") in ("chain", "alias", "lens"):
                # Named records go one at a time, after what came before them.
                self._import_chunk(chunk, counts)
                chunk = []
                try:
                    self._import_named(record, counts)
                except errors.BfxError as exc:
                    exc.details.setdefault("index", index)
                    raise
                continue
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

    def _import_named(self, record: Mapping[str, Any], counts: dict[str, int]) -> None:
        """A chain, alias or lens record: checked, then stored unless the same one is
        stored already (counted as skipped)."""
        kind = record["kind"]
        if kind == "chain":
            if self.versions is None:
                raise errors.ValidationError("this registry takes no chains", {"field": "kind"})
            done = self.versions.import_chain(_import_chain(record))
        elif kind == "alias":
            if self.aliases is None:
                raise errors.ValidationError("this registry takes no aliases", {"field": "kind"})
            done = self.aliases.import_alias(
                AliasRecord(
                    _text(record.get("name"), "name"),
                    field_id(record.get("substrate_id"), "substrate_id"),
                    _import_time(record.get("created_at")),
                )
            )
        else:
            if self.lenses is None:
                raise errors.ValidationError("this registry takes no lenses", {"field": "kind"})
            parameters = record.get("parameters")
            _check_depth(parameters, "parameters")
            description = record.get("description")
            done = self.lenses.import_lens(
                LensRecord(
                    _text(record.get("name"), "name"),
                    _text(record.get("expression_code"), "expression_code"),
                    msgspec.json.encode({} if parameters is None else parameters),
                    description if isinstance(description, str) or description is None
                    else _text(description, "description"),
                    _import_time(record.get("created_at")),
                )
            )  # fmt: skip
        plural = {"chain": "chains", "alias": "aliases", "lens": "lenses"}[kind]
        key = f"imported_{plural}" if done else "skipped"
        counts[key] = counts.get(key, 0) + 1

    def _import_row(
        self, record: Any
    ) -> tuple[str, SubstrateRow | RelationshipRow, Runnable | None]:
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
            compiled, meta = self.substrates.prepare(
                record.get("expression_type"), record.get("expression_code"), record.get("metadata")
            )
            canonical = record.get("canonical_code")
            if canonical is not None and canonical != compiled.canonical:
                raise errors.ValidationError(
                    "canonical_code does not match the canonical form of expression_code",
                    {"field": "canonical_code", "computed": compiled.canonical[:200]},
                )
            row: SubstrateRow | RelationshipRow = SubstrateRow(
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
            row = edge_row(record, created)
            given = record.get("relationship_id")
            if given is not None:
                expected = field_id(given, "relationship_id")
                computed = relationship_id(row.source, row.target, row.rel_type)
                if expected != computed:
                    raise _id_mismatch(expected, computed, "relationship_id")
            return kind, row, None
        raise errors.ValidationError("kind must be substrate or relationship", {"field": "kind"})

    def _import_chunk(self, chunk: _Chunk, counts: dict[str, int]) -> None:
        """Writes a run of same-kind records: up to the first that fails (other
        than as a duplicate, which is skipped), then raises that failure."""
        if not chunk:
            return
        kind = chunk[0][1]
        insert = (
            self.engine.insert_substrates
            if kind == "substrate"
            else self.engine.insert_relationships
        )
        # One check and one write: the rows before the first failure (duplicates are
        # skipped), nothing from it on. A pipeline is written with its COMPOSITION
        # edges; the exported copies of those edges are then skipped as existing.
        if kind == "substrate":
            steps = [c[3].steps if isinstance(c[3], Plan) else None for c in chunk]
            answers = self.engine.insert_substrates(
                [c[2] for c in chunk],  # type: ignore[misc]
                until_failure=True,
                steps=steps if any(steps) else None,
            )
        else:
            answers = insert([c[2] for c in chunk], until_failure=True)  # type: ignore[arg-type]
        failure: errors.BfxError | None = None
        stop = len(answers)
        for position, answer in enumerate(answers):
            if isinstance(answer, errors.BfxError) and not isinstance(
                answer, errors.DuplicateError
            ):
                failure, stop = answer, position
                break
        cache = self.substrates.cache
        for (_index, _kind, _row, compiled), answer in zip(chunk[:stop], answers, strict=False):
            if isinstance(answer, errors.DuplicateError):
                counts["skipped"] += 1
            else:
                counts[f"imported_{kind}s"] += 1
                if compiled is not None:
                    cache.put(answer, compiled)
        if failure is not None:
            failure.details.setdefault(
                "index", chunk[stop][0] if stop < len(chunk) else chunk[0][0]
            )
            raise failure


def _steps_first(
    rows: Iterable[SubstrateRow | RelationshipRow],
) -> Iterator[SubstrateRow | RelationshipRow]:
    """The export's rows with every pipeline after its steps, so that an import (which
    checks a pipeline's steps exist) can read the export in order: pipelines are held
    back until the other substrates are out, then written steps first (a pipeline
    may be a step of another; storage order need not say which came first)."""
    held: dict[int, SubstrateRow] = {}
    done = False
    for row in rows:
        if isinstance(row, SubstrateRow):
            if row.expression_type == "pipeline":
                held[row.identity] = row  # type: ignore[index]
                continue
        elif not done:
            yield from _dependency_order(held)
            done = True
        yield row
    if not done:
        yield from _dependency_order(held)


def _dependency_order(held: dict[int, SubstrateRow]) -> Iterator[SubstrateRow]:
    """``held``'s pipelines, each after the pipelines among its steps (iteratively:
    nesting is bounded, but an export should not rely on that)."""
    emitted: set[int] = set()
    for root in held:
        stack = [(root, False)]
        while stack:
            identity, expanded = stack.pop()
            if identity in emitted:
                continue
            if expanded:
                emitted.add(identity)
                yield held[identity]
                continue
            stack.append((identity, True))
            for step in step_ids(held[identity].canonical_code):
                if step in held and step not in emitted:
                    stack.append((step, False))


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise errors.ValidationError(f"{field} must be a string", {"field": field})
    return value


def _import_chain(record: Mapping[str, Any]) -> Chain:
    """A chain from its export record, checked for consistency: versions 1..n with
    version 1 the chain's id, the head and every history entry among its members."""
    versions, history = record.get("versions"), record.get("history")
    if not isinstance(versions, list) or not isinstance(history, list):
        raise errors.ValidationError(
            "a chain needs versions and history lists", {"field": "versions"}
        )
    try:
        members = tuple(
            VersionEntry(
                field_id(m["substrate_id"], "versions.substrate_id"),
                m["version"],
                m.get("change_description"),
                _import_time(m["created_at"]),
            )
            for m in versions
        )
        moves = tuple(
            HeadMove(
                h["entry"], field_id(h["head"], "history.head"), h["action"],
                _import_time(h["created_at"]),
            )
            for h in history
        )  # fmt: skip
    except (KeyError, TypeError, AttributeError) as exc:
        raise errors.ValidationError(f"a chain record is malformed ({exc})", {}) from None
    chain = Chain(
        field_id(record.get("chain_id"), "chain_id"),
        field_id(record.get("head"), "head"),
        members,
        moves,
    )
    if (
        len(members) < 2
        or [m.version for m in members] != list(range(1, len(members) + 1))
        or members[0].substrate != chain.chain_id
        or chain.member(chain.head) is None
        or len({m.substrate for m in members}) != len(members)
        or any(m.change_description is not None and not isinstance(m.change_description, str)
               for m in members)
        or [h.entry for h in moves] != list(range(1, len(moves) + 1))
        or any(h.action not in ("created", "version", "rollback") for h in moves)
        or any(chain.member(h.head) is None for h in moves)
    ):  # fmt: skip
        raise errors.ValidationError(
            "a chain record is inconsistent: versions must be 1..n (version 1 the chain's "
            "id), the head and every history entry among its versions, entries 1..n",
            {"chain_id": format_id(chain.chain_id)},
        )
    return chain


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
