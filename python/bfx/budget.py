"""What one batch of invocations may spend: time, answer bytes, and its client's patience.

A batch invoke is one request asking for up to thousands of evaluations, each of which may
return up to a megabyte. Without a shared bound a 40 KB request can make a worker build
gigabytes of answer. :class:`BatchBudget` is checked while the batch runs, never after:
the answer's estimated JSON size is charged result by result (:class:`ResultTooLargeError`
the moment it passes ``max_bytes``), the wall-clock budget is shared by every item (items
not started in time are answered with an ``invocation_error``), and a client that went
away stops the work (:class:`Cancelled`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import msgspec

from bfx import errors

__all__ = ["BatchBudget", "Cancelled", "json_size"]

_encode = msgspec.json.encode
#: What an answer item costs besides its result: index, status, id, timing, punctuation.
ITEM_OVERHEAD = 96


class Cancelled(Exception):
    """The client that asked for the work is gone: stop, nobody reads the answer."""


def json_size(value: Any) -> int:
    """The JSON size of a result in bytes: estimated for scalars, exact otherwise.

    Raises :class:`~bfx.errors.InvocationError` for a value that cannot be encoded as
    UTF-8 JSON (a lone surrogate), so such a result fails its own item, not the batch.
    """
    t = type(value)
    if t is int:
        return value.bit_length() // 3 + 2  # decimal digits, rounded up, and a sign
    if t is float:
        return 24
    if t is bool or value is None:
        return 5
    try:
        return len(_encode(value))
    except UnicodeEncodeError as exc:
        raise errors.InvocationError(
            "result holds a string that is not valid Unicode (a lone surrogate)",
            {"reason": "not_utf8", "position": exc.start},
        ) from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise errors.InvocationError(
            f"result cannot be encoded as JSON: {exc}", {"reason": "bad_result_type"}
        ) from None


class BatchBudget:
    """The shared bounds of one batch: a deadline, an answer-size cap, a cancel check."""

    __slots__ = ("cancelled", "deadline", "max_bytes", "time_ms", "used_bytes")

    def __init__(
        self,
        *,
        time_ms: float | None = None,
        max_bytes: int | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> None:
        self.time_ms = time_ms
        self.deadline = None if time_ms is None else time.perf_counter() + time_ms / 1000.0
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.cancelled = cancelled

    def check(self) -> None:
        """Raise :class:`Cancelled` when the client is gone (call between steps)."""
        if self.cancelled is not None and self.cancelled():
            raise Cancelled

    def expired(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def out_of_time(self) -> errors.InvocationError:
        """The answer for an item the batch had no time left to run."""
        return errors.InvocationError(
            f"the batch's time budget of {self.time_ms:g} ms ran out before this item ran",
            {"reason": "batch_time_budget", "limit_ms": self.time_ms},
        )

    def charge(self, nbytes: int) -> None:
        """Count ``nbytes`` more of answer; past the cap the whole batch stops."""
        self.used_bytes += nbytes
        if self.max_bytes is not None and self.used_bytes > self.max_bytes:
            raise errors.ResultTooLargeError(
                f"the answer would exceed {self.max_bytes} bytes; ask for fewer or smaller "
                "results per batch",
                {"limit": self.max_bytes},
            )
