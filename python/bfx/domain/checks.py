"""What every part of the domain checks alike: stored JSON objects, page bounds, and the
answers of a batch."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from bfx import errors, paging

__all__ = ["MAX_METADATA_BYTES", "check_page", "json_object_bytes", "merge", "raise_if_any_failed"]

_encode = msgspec.json.encode
#: The largest metadata or constraints object, encoded.
MAX_METADATA_BYTES = 64 * 1024


def json_object_bytes(value: Any, field: str) -> bytes:
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


def check_page(limit: int, offset: int = 0) -> None:
    """``limit`` within 1..MAX_PAGE and ``offset`` within 0..paging.MAX_OFFSET, else a
    ValidationError naming the field (never an overflow in the core)."""
    paging.check_limit(limit)
    paging.check_offset(offset)


def merge(prepared: list[Any], answers: list[Any], make: Callable[[Any, Any], Any]) -> list[Any]:
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


def raise_if_any_failed(results: list[Any]) -> None:
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
