"""The scans behind search and query: every substrate record of the arena, filtered,
ordered by creation time and paged by a key cursor.

They read the arena's records as they are: the creation time is compared in stored
microseconds, and metadata is decoded only for a record whose type already matched and
only when a filter reads it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

import msgspec

from bfx import errors, paging
from bfx.domain.checks import check_page
from bfx.models import to_micros

__all__ = ["query", "search"]

Record = tuple[Any, ...]
_decode = msgspec.json.decode
_MISSING = object()


def _metadata(record: Record) -> dict[str, Any]:
    raw = record[4]
    return _decode(raw) if raw else {}  # type: ignore[no-any-return]


def search(
    records: Iterable[Record],
    name: str | None = None,
    expression_type: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> paging.Page[Record]:
    """Records whose ``metadata["name"]`` contains ``name`` (ignoring case) and whose
    type is ``expression_type`` (each optional), oldest first (``created_at``, ties by
    id): a page of at most ``limit`` after ``cursor``, with ``count`` (all matches) and
    ``next_cursor``."""
    check_page(limit)
    needle = name.casefold() if name else None

    def matches() -> Iterator[Record]:
        for r in records:
            if expression_type is not None and r[1] != expression_type:
                continue
            if needle is not None:
                candidate = _metadata(r).get("name")
                if not isinstance(candidate, str) or needle not in candidate.casefold():
                    continue
            yield r

    return _keyset_page(matches(), "created_at", limit, cursor)


def query(
    records: Iterable[Record],
    filters: Mapping[str, Any] | None = None,
    sort: str = "created_at",
    limit: int = 100,
    cursor: str | None = None,
) -> paging.Page[Record]:
    """Filters: ``expression_type``, ``metadata.<key>`` (equality), ``created_after`` /
    ``created_before`` (strict; datetime or RFC 3339); sort ``created_at`` or
    ``-created_at`` (ties by id, in the same direction). A page of at most ``limit``
    after ``cursor``, with ``count`` (all matches) and ``next_cursor``."""
    check_page(limit)
    if sort not in ("created_at", "-created_at"):
        raise errors.ValidationError("sort must be created_at or -created_at", {"field": "sort"})
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

    def matches() -> Iterator[Record]:
        for r in records:
            if expression_type is not None and r[1] != expression_type:
                continue
            created = r[5]
            if after is not None and not created > after:
                continue
            if before is not None and not created < before:
                continue
            if meta:
                metadata = _metadata(r)
                if any(metadata.get(k, _MISSING) != v for k, v in meta):
                    continue
            yield r

    return _keyset_page(matches(), sort, limit, cursor)


def _created_key(r: Record) -> tuple[int, int]:
    return (r[5], r[0])


def _keyset_page(
    matches: Iterable[Record], sort: str, limit: int, cursor: str | None
) -> paging.Page[Record]:
    """A page of ``matches`` in ``sort`` order (``created_at`` / ``-created_at``, ties by
    id in the same direction) after the cursor's ``(created_at, id)`` key; the cursor's
    kind is the sort, so a cursor of the other order is refused."""
    after = None if cursor is None else paging.decode_cursor(cursor, sort, 2)
    page, count, last = paging.select_page(
        matches, _created_key, limit, after, descending=sort.startswith("-")
    )
    nxt = None if last is None else paging.encode_cursor(sort, *last)
    return paging.Page(page, count, nxt)


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
