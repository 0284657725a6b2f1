"""Per-substrate invocation counts: statistics of this process, kept beside the arena.

A successful invoke adds one to its substrate's count here instead of in the arena's
record: the arena's write lock is not taken per invoke, and its records (pages that
worker processes may come to share) are not written per request. The add is one call
into the core (``bfx._core.add_count``), atomic under the GIL, so threads adding at
once lose nothing without a lock; every other operation is one dict operation, atomic
too. The counts answer a record's ``invocations`` field and ``/metrics``
``most_invoked_substrates``; they are per process and never stored (``docs/http.md``).

A deleted substrate's count is dropped (:meth:`InvocationCounts.discard`), so a
substrate created again starts from zero.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from functools import partial

from bfx._core import add_count

__all__ = ["InvocationCounts"]


class InvocationCounts:
    """Thread-safe counts of successful invocations by substrate id."""

    __slots__ = ("_counts", "add")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        #: ``add(identity, n=1) -> int``: adds ``n`` invocations of ``identity``, returns
        #: its new count (the core's function bound to the dict: no Python frame on
        #: every invoke).
        self.add: Callable[..., int] = partial(add_count, self._counts)

    @property
    def counts(self) -> dict[int, int]:
        """The live counts (read-only for callers: every write goes through :attr:`add`)."""
        return self._counts

    def get(self, identity: int) -> int:
        """The count of ``identity`` (0 if never invoked)."""
        return self._counts.get(identity, 0)

    def top(self, k: int = 5) -> list[tuple[int, int]]:
        """The ``k`` most invoked ``(id, count)``, most first (ties: smaller id first)."""
        if k <= 0:
            return []
        items = list(self._counts.items())  # one C call: a consistent copy
        return heapq.nsmallest(k, items, key=lambda item: (-item[1], item[0]))

    def discard(self, identity: int) -> None:
        """Drops the count of ``identity`` (its substrate was deleted)."""
        self._counts.pop(identity, None)

    def discard_many(self, identities: Iterable[int]) -> None:
        pop = self._counts.pop
        for identity in identities:
            pop(identity, None)

    def clear(self) -> None:
        self._counts.clear()

    def __len__(self) -> int:
        return len(self._counts)
