"""Middleware: any exception below becomes the documented error answer
``{"error", "message", "details"}`` (the mapping is :func:`bfx.asgi.errors.error_body`),
with the headers some errors call for. A departed client is not an error: it passes on."""

from __future__ import annotations

from bfx.api.types import ErrorBody
from bfx.asgi.base import Response, encode
from bfx.asgi.errors import (
    BodyTooLargeError,
    MethodNotAllowedError,
    UpgradeRequiredError,
    error_body,
)
from bfx.asgi.middleware.body_deadline import BodyTimeoutError
from bfx.asgi.pipeline import Around, Call
from bfx.budget import Cancelled
from bfx.errors import OverloadedError, RateLimitedError

__all__ = ["error_answer", "errors"]


class errors(Around):
    def fail(self, call: Call, exc: BaseException) -> Response | None:
        if isinstance(exc, Cancelled) or not isinstance(exc, Exception):
            return None  # a departed client, or the task itself cancelled: not an answer
        return error_answer(exc)


def error_answer(exc: BaseException) -> Response:
    status, err = error_body(exc)
    headers = None
    if isinstance(err, MethodNotAllowedError):
        headers = [(b"allow", ", ".join(err.allow).encode())]
    elif isinstance(err, (OverloadedError, RateLimitedError)):  # failed logins' 429 too
        headers = [(b"retry-after", str(err.retry_after).encode())]
    elif isinstance(err, UpgradeRequiredError):
        headers = [(b"upgrade", b"websocket")]
    elif isinstance(err, (BodyTimeoutError, BodyTooLargeError)):
        # The rest of the body is still coming: this connection cannot carry another
        # request.
        headers = [(b"connection", b"close")]
    body = ErrorBody(error=err.code, message=err.message, details=err.details)
    return Response(status, encode(body), headers=headers, value=err)
