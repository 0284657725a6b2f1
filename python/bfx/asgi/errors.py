"""Errors of the HTTP layer, and the one place that turns any exception into a response.

The domain errors (:mod:`bfx.errors`) carry their own code and status; this module adds
the few that only exist over HTTP (route, method, body size) and :func:`error_body`, which every error answer goes through.
"""

from __future__ import annotations

import logging

import msgspec

from bfx import errors
from bfx.api.decoding import MalformedJsonError, field_error

__all__ = [
    "BodyTooLargeError",
    "MalformedJsonError",
    "MethodNotAllowedError",
    "RouteNotFoundError",
    "UpgradeRequiredError",
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


class BodyTooLargeError(errors.BfxError):
    code = "body_too_large"
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes", {"limit": limit})


class UpgradeRequiredError(errors.BfxError):
    """A WebSocket route asked as plain HTTP (426); the answer names the protocol."""

    code = "upgrade_required"
    status = 426


class InternalError(errors.BfxError):
    """What a client sees of a bug: no traceback, no internals."""


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
