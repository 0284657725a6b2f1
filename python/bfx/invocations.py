"""Per-substrate invocation counts: statistics of this process, kept beside the arena.

A successful invoke adds one to its substrate's count here, under a small lock of its
own, instead of in the arena's record: the arena's write lock is not taken per invoke,
and its records (pages that worker processes may come to share) are not written per
request. The counts answer a record's ``invocations`` field and ``/metrics``
``most_invoked_substrates``; they are per process and never stored (``docs/http.md``).

A deleted substrate's count is dropped (:meth:`InvocationCounts.discard`), so a
substrate created again starts from zero.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable

__all__ = ["InvocationCounts"]


class InvocationCounts:
    """Thread-safe counts of successful invocations by substrate id."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._lock = threading.Lock()

    def add(self, identity: int, n: int = 1) -> int:
        """Adds ``n`` invocations of ``identity``; returns its new count."""
        # acquire/release rather than ``with``: this runs on every invoke, and the
        # context-manager protocol costs more than the rest of the method on 3.11.
        lock = self._lock
        lock.acquire()
        try:
            count = self._counts.get(identity, 0) + n
            self._counts[identity] = count
        finally:
            lock.release()
        return count

    @property
    def counts(self) -> dict[int, int]:
        """The live counts (read-only for callers: every write goes through :meth:`add`)."""
        return self._counts

    def get(self, identity: int) -> int:
        """The count of ``identity`` (0 if never invoked)."""
        # One dict lookup is atomic: no lock needed to read.
        return self._counts.get(identity, 0)

    def top(self, k: int = 5) -> list[tuple[int, int]]:
        """The ``k`` most invoked ``(id, count)``, most first (ties: smaller id first)."""
        if k <= 0:
            return []
        with self._lock:
            items = list(self._counts.items())
        return heapq.nsmallest(k, items, key=lambda item: (-item[1], item[0]))

    def discard(self, identity: int) -> None:
        """Drops the count of ``identity`` (its substrate was deleted)."""
        with self._lock:
            self._counts.pop(identity, None)

    def discard_many(self, identities: Iterable[int]) -> None:
        with self._lock:
            for identity in identities:
                self._counts.pop(identity, None)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def __len__(self) -> int:
        return len(self._counts)
