"""The bfx exception hierarchy.

Every error raised by bfx is a :class:`BfxError`. Each class carries a stable
``code`` (the ``error`` field of an HTTP error body) and the HTTP ``status`` the
v1 API answers with. The Rust core raises these same classes: its one error enum
is mapped onto them in ``rust/src/py/errors.rs``, by class name.

Codes are part of the public contract: never rename one, only add.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "AliasTargetDeletedError",
    "BatchError",
    "BfxError",
    "ChangesPrunedError",
    "CollisionError",
    "ConflictError",
    "ConnectionFailedError",
    "DuplicateError",
    "ForbiddenError",
    "HttpError",
    "InUseError",
    "InvalidIdError",
    "InvalidRelationshipTypeError",
    "InvocationError",
    "LimitExceededError",
    "NoPathError",
    "NotFoundError",
    "NotReadyError",
    "OverloadedError",
    "RateLimitUnavailableError",
    "RateLimitedError",
    "RequestTimeoutError",
    "ResultTooLargeError",
    "SandboxError",
    "StorageError",
    "TooManyItemsError",
    "UnauthorizedError",
    "UnsupportedMediaTypeError",
    "UrlIdError",
    "ValidationError",
]


class BfxError(Exception):
    """Base of every bfx error: a stable ``code``, an HTTP ``status``, ``details``."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details) if details else {}

    def to_dict(self) -> dict[str, Any]:
        """The documented error body: ``{"error", "message", "details"}``."""
        return {"error": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class ValidationError(BfxError):
    """The input is well-formed but not acceptable (HTTP 422)."""

    code = "validation_error"
    status = 422


class InvalidIdError(ValidationError):
    """An id is not 1-16 hex digits (optionally ``0x``) or not within u64.

    422 when it came in a body; the HTTP layer answers 400 for a path id.
    """

    code = "invalid_id"


class UrlIdError(InvalidIdError):
    """An id in the URL (path or query string) is not 1-16 hex digits: a 400 rather than
    the 422 of an id in a body, since the URL itself is malformed."""

    status = 400


class InvalidRelationshipTypeError(ValidationError):
    """A relationship type that is not one of the 17 named types."""

    code = "invalid_relationship_type"


class SandboxError(ValidationError):
    """Expression code rejected at creation by the sandbox (never executed)."""

    code = "sandbox_rejected"


class InvocationError(ValidationError):
    """Invoking a substrate failed: a runtime error, a guard, the time budget,
    a bad parameter payload, or a result that cannot be returned."""

    code = "invocation_error"


class LimitExceededError(ValidationError):
    """A request asks for more than a configured bound allows."""

    code = "limit_exceeded"


class NotFoundError(BfxError):
    """An unknown substrate, relationship or route (HTTP 404)."""

    code = "not_found"
    status = 404


class NoPathError(NotFoundError):
    """No path between two substrates."""

    code = "no_path"


class ConflictError(BfxError):
    """The write conflicts with what is stored (HTTP 409)."""

    code = "conflict"
    status = 409


class DuplicateError(ConflictError):
    """The same substrate or typed edge exists already; ``details`` names its id."""

    code = "duplicate"


class InUseError(ConflictError):
    """The record is used by another and cannot go: a step of a pipeline
    (``details.pipelines`` names them: delete the pipelines first), a member of a
    version chain."""

    code = "in_use"


class CollisionError(ConflictError):
    """Two different canonical forms hash to the same 64-bit id: never merged."""

    code = "collision"


class AliasTargetDeletedError(NotFoundError):
    """An alias names a substrate that was deleted since (docs/domain.md, Aliases)."""

    code = "alias_target_deleted"


class StorageError(BfxError):
    """The storage backend failed or is unusable (HTTP 503)."""

    code = "storage_error"
    status = 503


class UnsupportedMediaTypeError(BfxError):
    """A body in a media type the operation does not read (HTTP 415)."""

    code = "unsupported_media_type"
    status = 415


class TooManyItemsError(BfxError):
    """A batch holds more items than the service admits (HTTP 413): nothing was done."""

    code = "too_many_items"
    status = 413


class ResultTooLargeError(ValidationError):
    """The answer would exceed the service's answer-size bound; computing stopped there."""

    code = "result_too_large"


class OverloadedError(BfxError):
    """Every slot for heavy work is taken (HTTP 503): retry after ``retry_after`` seconds."""

    code = "overloaded"
    status = 503

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, retry_after: int = 1
    ) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class ChangesPrunedError(BfxError):
    """The change feed was asked for changes after a sequence number older than the
    retained log (``--changes-retention``): they were pruned. ``details``: ``since``,
    ``oldest_since`` (the oldest cursor still answered), ``head``."""

    code = "changes_pruned"
    status = 410


class NotReadyError(BfxError):
    """The service cannot serve yet or now: its store does not answer (HTTP 503; the
    readiness probe, docs/observability.md)."""

    code = "not_ready"
    status = 503


class UnauthorizedError(BfxError):
    """No credential, or one that is malformed, unknown, expired or revoked (HTTP 401,
    answered with ``WWW-Authenticate: Bearer``). The message never says which."""

    code = "unauthorized"
    status = 401


class ForbiddenError(BfxError):
    """A valid credential without the operation's scope (HTTP 403);
    ``details.required_scope`` names it."""

    code = "forbidden"
    status = 403


class BatchError(ValidationError):
    """An atomic batch in which some item failed: nothing was written.

    ``details["failures"]`` lists the failing items as
    ``{"index", "status", "error": {"error", "message", "details"}}``.
    """

    code = "batch_failed"


class RateLimitedError(BfxError):
    """The caller has spent its rate limit (HTTP 429): retry after ``retry_after`` seconds.

    ``details`` holds ``limit``, ``remaining``, ``cost`` and ``retry_after``."""

    code = "rate_limited"
    status = 429

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, retry_after: int = 1
    ) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class RateLimitUnavailableError(OverloadedError):
    """The rate-limit storage (Redis) did not answer in time (HTTP 503, ``Retry-After``):
    the request is refused rather than let through unlimited (docs/security.md)."""

    code = "rate_limit_unavailable"


# --- raised by the clients (bfx.client) only --------------------------------------------


class HttpError(BfxError):
    """An error answer whose code has no class here (405 ``method_not_allowed``, 413
    ``body_too_large``, a proxy's 502 page...); ``code`` and ``status`` are the ones
    received."""

    code = "http_error"
    status = 500


class ConnectionFailedError(BfxError):
    """The client could not reach the service, or the connection broke before an answer
    (refused, reset, DNS...). ``status`` is 503, what a gateway would answer."""

    code = "connection_failed"
    status = 503


class RequestTimeoutError(ConnectionFailedError):
    """No answer within the client's timeout (connect, write or read). ``status`` is 504,
    what a gateway would answer."""

    code = "request_timeout"
    status = 504
