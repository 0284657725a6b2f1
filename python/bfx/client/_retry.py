"""When a client sends a request again, and how long it waits first (docs/clients.md)."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bfx import errors
from bfx.api.operations import Operation

__all__ = ["Retry"]

#: Answers that refuse a request before any work is done: sending it again is harmless.
_REFUSED = frozenset({429, 503})


@dataclass(frozen=True, slots=True)
class Retry:
    """The retry policy of a client.

    A request is sent at most ``attempts`` times. It is sent again after

    * a connection that could not be made (the service never saw the request);
    * a 429 or 503 answer (refused before any work), after its ``Retry-After``;
    * a connection that broke after the request went out (the outcome is unknown), only
      for an operation whose table entry is ``idempotent``.

    The n-th wait is ``backoff * 2**(n-1)`` seconds, at most ``max_backoff``, of which a
    random half is dropped (jitter, so that clients refused together do not come back
    together); a ``Retry-After`` is waited in full plus that jitter. A ``Retry-After``
    longer than ``max_retry_after`` is not waited for: the error is raised at once.
    """

    attempts: int = 4
    backoff: float = 0.2
    max_backoff: float = 10.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"Retry.attempts is at least 1 (no retry), not {self.attempts!r}")
        for name in ("backoff", "max_backoff", "max_retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"Retry.{name} is not negative")

    def delay(self, op: Operation, error: errors.BfxError, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: raise ``error``."""
        if attempt >= self.attempts:
            return None
        if isinstance(error, errors.ConnectionFailedError):
            if getattr(error, "sent", True) and not op.idempotent:
                return None
            asked = None
        elif error.status in _REFUSED:
            asked = getattr(error, "retry_after", None)
            if asked is not None and asked > self.max_retry_after:
                return None
        else:
            return None
        base = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        jitter = random.uniform(0, base / 2)  # spreading, not secrecy
        return (asked + jitter) if asked is not None else base / 2 + jitter


#: No retries at all.
NO_RETRY = Retry(attempts=1)
