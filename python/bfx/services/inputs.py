"""Reading the inputs a request Struct carries as text: ids, type lists, media types.

Ids in a body are 422s naming the field (like any invalid body field); ids in a query
are part of the URL, so a malformed one is a 400 as in a path.
"""

from __future__ import annotations

from bfx import errors
from bfx.identity import parse_id

__all__ = [
    "one_type",
    "query_id",
    "type_list",
]


def query_id(text: str | None, field: str) -> int | None:
    """An id from the query string (None when absent); malformed: :class:`~bfx.errors.UrlIdError`."""
    if text is None:
        return None
    try:
        return parse_id(text)
    except errors.InvalidIdError as exc:
        raise errors.UrlIdError(
            exc.message, {**exc.details, "field": field, "value": text}
        ) from None


def type_list(text: str | None) -> list[str] | None:
    """Comma-separated relationship types; None (all types) when absent or blank."""
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    return names or None


def one_type(a: str | None, b: str | None, names: tuple[str, str]) -> str | None:
    """A query field and its alias: either, or both when they agree (any case)."""
    if a is not None and b is not None and a.upper() != b.upper():
        raise errors.ValidationError(
            f"{names[0]} and {names[1]} disagree; give one",
            {"field": names[0], "location": "query"},
        )
    return a if a is not None else b
