"""How every list pages: the one page cap, the offset bound, and the cursor tokens.

Every list (the Registry's and the HTTP API's) takes ``limit`` (1..``MAX_PAGE``, default
``DEFAULT_PAGE``) and a ``cursor``, and answers the page, ``count`` (the total number of
matches, not the page length) and ``next_cursor`` (None on the last page).

A cursor is opaque to clients: pass back the ``next_cursor`` of the previous page. What
it holds depends on the list's order (see ``docs/http.md``, "Paging"):

* key cursors (``GET /substrates``: the last id; search and query: the last record's
  ``(created_at, id)``) name the last record of the page, and the next page is the
  matches strictly after it in the list's order. Such a walk visits every record that
  exists throughout the walk exactly once, whatever is created or deleted meanwhile.
* position cursors (relationship lists, components, PageRank) hold the offset of the
  next page. A walk over a list that does not change visits each match once; a list
  that changes in between may shift under it, as with any offset paging.

Tokens are URL-safe base64 of a small JSON array ``[kind, ...]``, so they can be put in
a query string as they are; a token of another kind (a search cursor given to a query
sorted the other way) or a malformed one is a ValidationError naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
import heapq
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import msgspec

from bfx import errors

__all__ = [
    "DEFAULT_PAGE",
    "MAX_OFFSET",
    "MAX_PAGE",
    "Page",
    "check_limit",
    "check_offset",
    "decode_cursor",
    "encode_cursor",
    "next_offset_cursor",
    "offset_of",
    "select_page",
]

#: The page cap of every list, in process and over HTTP (one fact, one place).
MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: The largest ``offset``: the arena numbers relationship and substrate slots with 32
#: bits, so no list can hold more matches and every offset in range can be answered
#: (past the total: an empty page). Beyond it: a ValidationError naming the field.
MAX_OFFSET = 2**32 - 1
#: Keys inside cursors are 64-bit (ids) or microseconds since 1970 in years 1..9999.
_MAX_KEY = 2**64 - 1
_MIN_KEY = -(2**63)
_MAX_TOKEN = 200

T = TypeVar("T")


class Page(list[T], Generic[T]):
    """A page of a list: the items (it is a list), ``count`` (total matches) and
    ``next_cursor`` (the token of the next page, None on the last)."""

    def __init__(self, items: Iterable[T], count: int, next_cursor: str | None) -> None:
        super().__init__(items)
        self.count = count
        self.next_cursor = next_cursor

    def __repr__(self) -> str:
        return f"Page({list(self)!r}, count={self.count}, next_cursor={self.next_cursor!r})"


def check_limit(limit: Any, field: str = "limit") -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise errors.ValidationError(
            f"{field} must be an integer from 1 to {MAX_PAGE}",
            {"field": field, "minimum": 1, "maximum": MAX_PAGE},
        )
    return limit


def check_offset(offset: Any, field: str = "offset") -> int:
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset <= MAX_OFFSET:
        raise errors.ValidationError(
            f"{field} must be an integer from 0 to {MAX_OFFSET}",
            {"field": field, "minimum": 0, "maximum": MAX_OFFSET},
        )
    return offset


def encode_cursor(kind: str, *keys: int) -> str:
    raw = msgspec.json.encode([kind, *keys])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _bad_cursor() -> errors.ValidationError:
    return errors.ValidationError(
        "cursor must be a next_cursor returned by the same list", {"field": "cursor"}
    )


def decode_cursor(token: Any, kind: str, keys: int) -> tuple[int, ...]:
    """The ``keys`` integers of a token of this ``kind``; anything else is a
    ValidationError naming ``cursor``."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN or not token.isascii():
        raise _bad_cursor()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        value = msgspec.json.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise _bad_cursor() from None
    if (
        not isinstance(value, list)
        or len(value) != keys + 1
        or value[0] != kind
        or not all(
            isinstance(k, int) and not isinstance(k, bool) and _MIN_KEY <= k <= _MAX_KEY
            for k in value[1:]
        )
    ):
        raise _bad_cursor()
    return tuple(value[1:])


def offset_of(cursor: str | None, offset: int | None = None) -> int:
    """The offset a position-paged list starts at: the cursor's, else ``offset`` (its
    bounded alias), else 0. Both, disagreeing, is a ValidationError naming ``cursor``."""
    if cursor is None:
        return 0 if offset is None else check_offset(offset)
    (start,) = decode_cursor(cursor, "o", 1)
    if not 0 <= start <= MAX_OFFSET:
        raise _bad_cursor()
    if offset not in (None, 0, start):
        raise errors.ValidationError(
            "give cursor or offset, not both", {"field": "cursor", "conflicts_with": "offset"}
        )
    return start


def next_offset_cursor(offset: int, returned: int, total: int) -> str | None:
    """The cursor of the page after ``offset..offset + returned`` of ``total`` matches."""
    end = offset + returned
    return encode_cursor("o", end) if returned and end < total else None


def select_page(
    items: Iterable[T],
    key: Callable[[T], tuple[int, ...]],
    limit: int,
    after: tuple[int, ...] | None = None,
    descending: bool = False,
) -> tuple[list[T], int, tuple[int, ...] | None]:
    """Keyset paging over an unordered stream: ``(page, count, next_key)``.

    ``count`` is the number of items; ``page`` the first ``limit`` of those whose key
    comes after ``after`` in the order (ascending, or descending), sorted; ``next_key``
    the key of its last item when more follow it, else None. Memory holds one page
    (a heap of ``limit`` items), time is O(n log limit). Keys must be unique."""
    count = 0
    remaining = 0
    heap: list[tuple[tuple[int, ...], int, T]] = []
    sign = -1 if descending else 1
    for n, item in enumerate(items):
        count += 1
        k = key(item)
        if after is not None and (k <= after if not descending else k >= after):
            continue
        remaining += 1
        # A max-heap (by order) of the best ``limit`` so far: negate for ascending.
        entry_key = tuple(-sign * x for x in k)
        if len(heap) < limit:
            heapq.heappush(heap, (entry_key, n, item))
        elif entry_key > heap[0][0]:
            heapq.heapreplace(heap, (entry_key, n, item))
    page = [item for _, _, item in sorted(heap, reverse=True)]
    next_key = key(page[-1]) if page and remaining > len(page) else None
    return page, count, next_key
