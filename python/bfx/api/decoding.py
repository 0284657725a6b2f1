"""Decoding wire JSON into the API's types: the errors that say where it went wrong.

Shared by the server and by import/export (``bfx.transfer``), which read the same types
from files.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from bfx import errors

__all__ = ["MalformedJsonError", "field_error"]


class MalformedJsonError(errors.BfxError):
    code = "malformed_json"
    status = 400


_AT = re.compile(r" - at `\$([^`]*)`$")
_NAMED = re.compile(r"field `([^`]*)`")


def field_error(
    exc: msgspec.ValidationError, location: str = "body", prefix: str = ""
) -> errors.ValidationError:
    """A msgspec validation failure as a 422 whose ``details.field`` names the input.

    msgspec says ``Expected `int`, got `str` - at `$.items[0].value```; missing and unknown
    fields are named in the text instead (``Object missing required field `x```), so both
    are folded into one dotted path: ``items[0].value``.
    """
    text = str(exc)
    path = ""
    match = _AT.search(text)
    if match:
        path = match.group(1)
        text = text[: match.start()]
    named = _NAMED.search(text)
    if named:
        path = f"{path}.{named.group(1)}"
    field = prefix + path.lstrip(".")
    if prefix and path.startswith("["):
        field = prefix.rstrip(".") + path
    details: dict[str, Any] = {"location": location}
    if field:
        details["field"] = field
        text = f"{field}: {text}"
    return errors.ValidationError(text, details)
