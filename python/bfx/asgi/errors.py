"""Errors of the HTTP layer, and the one place that turns any exception into a response.

The domain errors (:mod:`bfx.errors`) carry their own code and status; this module adds
the few that only exist over HTTP (route, method, media type, body size, JSON syntax, an
id in the URL) and :func:`error_body`, which every error answer goes through.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec

from bfx import errors

__all__ = [
    "BodyTooLargeError",
    "MalformedJsonError",
    "MethodNotAllowedError",
    "PathIdError",
    "RouteNotFoundError",
    "UnsupportedMediaTypeError",
    "error_body",
    "field_error",
]

log = logging.getLogger("bfx.asgi")


class RouteNotFoundError(errors.NotFoundError):
    """No route has this path (404 ``not_found``, like an unknown id)."""


class MethodNotAllowedError(errors.BfxError):
    """The path exists but not for this method; the response carries ``Allow``."""

    code = "method_not_allowed"
    status = 405

    def __init__(self, method: str, allow: tuple[str, ...]) -> None:
        super().__init__(
            f"method {method} is not allowed here", {"method": method, "allow": list(allow)}
        )
        self.allow = allow


class MalformedJsonError(errors.BfxError):
    code = "malformed_json"
    status = 400


class PathIdError(errors.InvalidIdError):
    """An id in the URL (path or query string) is not 1-16 hex digits: 400, not 422."""

    status = 400


class UnsupportedMediaTypeError(errors.BfxError):
    code = "unsupported_media_type"
    status = 415


class BodyTooLargeError(errors.BfxError):
    code = "body_too_large"
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes", {"limit": limit})


class InternalError(errors.BfxError):
    """What a client sees of a bug: no traceback, no internals."""


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


def error_body(exc: BaseException) -> tuple[int, errors.BfxError]:
    """Map any exception to ``(status, error)``; the one mapping the API uses.

    Domain errors keep their status; msgspec's decode errors become 400 (syntax) or 422
    (shape); anything else is a bug, logged with its traceback and answered 500.
    """
    if isinstance(exc, errors.BfxError):
        return exc.status, exc
    if isinstance(exc, msgspec.ValidationError):
        err = field_error(exc)
        return err.status, err
    if isinstance(exc, msgspec.DecodeError):
        return 400, MalformedJsonError(f"request body is not valid JSON: {exc}")
    log.error("unhandled error", exc_info=exc)
    return 500, InternalError("internal error")
