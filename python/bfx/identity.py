"""Stable 64-bit identities (computed in the Rust core).

* substrate id = XXH3-64 (seed 0) of ``expression_type + "\\0" + canonical_code``
  (UTF-8);
* relationship id = XXH3-64 of ``source`` and ``target`` as unsigned 64-bit
  little-endian integers followed by the upper-case type name (ASCII).

Ids are shown as ``0x`` + 16 upper-case hex digits; :func:`parse_id` accepts
an int in ``[0, 2**64)`` or 1-16 hex digits in any case, with or without
``0x``. Test vectors: ``tests/identity_vectors.json``.
"""

from typing import Any

from bfx import errors
from bfx._core import (
    EXPRESSION_TYPES,
    REL_TYPES,
    format_id,
    normalize_rel_type,
    parse_id,
    relationship_id,
    substrate_id,
)

__all__ = [
    "EXPRESSION_TYPES",
    "REL_TYPES",
    "field_id",
    "format_id",
    "normalize_rel_type",
    "parse_id",
    "relationship_id",
    "substrate_id",
]


def field_id(value: Any, field: str) -> int:
    """An id given in a body field; a malformed one is a 422 ``invalid_id`` naming the
    field (an id in a URL is a 400 instead: :class:`~bfx.errors.UrlIdError`)."""
    try:
        return parse_id(value)
    except errors.InvalidIdError as exc:
        raise errors.InvalidIdError(
            f"{field}: {exc.message}",
            {**exc.details, "field": field, "location": "body", "value": value},
        ) from None
