"""Metadata updates: JSON merge patch (RFC 7396) over a substrate's stored metadata.

A patch is an object: each member replaces the target's member of that name, ``null``
removes it, and an object merges into the target's object member recursively (into
``{}`` when the member is absent or not an object). Arrays and scalars replace whole.
The result is checked like metadata at creation (an object, at most 64 KiB encoded).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from bfx import errors
from bfx.domain.checks import json_object_bytes

__all__ = ["MAX_PATCH_DEPTH", "apply_patch", "merge_patch"]

#: Nesting of a patch's objects (HTTP bodies stop at 32 levels already); deeper is a 422.
MAX_PATCH_DEPTH = 32


def merge_patch(target: Any, patch: Any, depth: int = 0) -> Any:
    """RFC 7396 ``MergePatch(target, patch)``; the inputs are left as they were."""
    if not isinstance(patch, Mapping):
        return patch
    if depth >= MAX_PATCH_DEPTH:
        raise errors.ValidationError(
            f"the metadata patch is nested deeper than {MAX_PATCH_DEPTH} objects",
            {"field": "metadata", "reason": "too_deep", "limit": MAX_PATCH_DEPTH},
        )
    result = dict(target) if isinstance(target, Mapping) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value, depth + 1)
    return result


def apply_patch(stored: bytes, patch: Any) -> bytes:
    """The stored metadata after ``patch``, as the bytes to store (empty for ``{}``)."""
    if not isinstance(patch, Mapping):
        raise errors.ValidationError("metadata must be a JSON object", {"field": "metadata"})
    current = msgspec.json.decode(stored) if stored else {}
    return json_object_bytes(merge_patch(current, patch), "metadata")
