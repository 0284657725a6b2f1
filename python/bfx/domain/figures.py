"""Whole-graph figures for the metrics: depth, density, the most connected substrates and
the size distribution of expressions.

Each figure is a pass over every substrate or relationship (O(V + E) in Python: about a
second per million on the development machine, benches/python/graph_figures.py), so
:class:`FiguresCache` keeps the last answer and recomputes it only when the registry
has changed (its change counter and counts) and the answer is older than ten times what
computing it took (so the figures cost at most a tenth of one thread however often they
are asked; a small registry's are always fresh); while one thread recomputes, others
answer the cached figures at once rather than wait.
"""

from __future__ import annotations

import heapq
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable
from itertools import accumulate
from typing import Any

__all__ = ["COST_FACTOR", "SIZE_BINS", "TOP_CONNECTED", "Figures", "FiguresCache", "compute"]

#: How many substrates ``most_connected_substrates`` lists.
TOP_CONNECTED = 5
#: Upper bounds (characters of ``expression_code``) of the size distribution's bins;
#: the last bin is everything longer.
SIZE_BINS = (16, 64, 256, 1024)
_PAGE = 4096


class Figures:
    __slots__ = ("computed_at", "cost", "density", "depth", "key", "sizes", "top")

    def __init__(
        self,
        key: tuple[int, ...],
        depth: int,
        density: float,
        top: list[tuple[int, int]],
        sizes: dict[str, int],
    ) -> None:
        self.key = key
        self.depth = depth
        self.density = density
        self.top = top
        self.sizes = sizes
        self.computed_at = time.monotonic()
        #: Seconds the computation took.
        self.cost = 0.0


def _bin_names() -> list[str]:
    names, low = [], 0
    for high in SIZE_BINS:
        names.append(f"{low}-{high}")
        low = high + 1
    names.append(f">{SIZE_BINS[-1]}")
    return names


_NAMES = _bin_names()


def compute(arena: Any, key: tuple[int, ...] = ()) -> Figures:
    """The figures of ``arena`` now.

    - depth: the most hops from a root (a substrate no relationship points at) along
      relationships, source to target, each substrate at its shortest distance from a
      root (a breadth-first pass from every root at once); a substrate only on cycles
      that no root reaches is not counted. 0 without relationships.
    - density: relationships / (substrates x (substrates - 1)), directed.
    - the most connected: by degree (relationship ends at the substrate, as in
      ``/relationships/stats``), most first, ties by id.
    """
    n = len(arena)
    lengths: Counter[int] = Counter()
    position: int | None = 0
    while position is not None:
        records, position = arena.scan(position, _PAGE)
        lengths.update([len(rec[2]) for rec in records])
    sizes = dict.fromkeys(_NAMES, 0)
    for length, count in lengths.items():
        sizes[_NAMES[bisect_left(SIZE_BINS, length)]] += count
    # Ids become indices and the graph a CSR array of ints: millions of ints are not
    # tracked by the cyclic garbage collector, where millions of lists or tuples made
    # its full passes hold the GIL for seconds. Each step is a page or a Python loop, so
    # the event loop beside it gets the GIL every switch interval.
    ids = arena.ids()
    index = {sid: i for i, sid in enumerate(ids)}
    sources: list[int] = []
    targets: list[int] = []
    degree: Counter[int] = Counter()
    position = 0
    while position is not None:
        batch, position = arena.scan_edges(position, _PAGE)
        src = [index[e[2]] for e in batch]
        dst = [index[e[3]] for e in batch]
        degree.update(src)
        degree.update(dst)
        sources += src
        targets += dst
    edges = len(sources)
    depth = 0
    if edges:
        start = [0] * (n + 1)
        pointed = [False] * n
        for i in sources:
            start[i + 1] += 1
        for i in targets:
            pointed[i] = True
        start = list(accumulate(start))
        fill = start[:]
        adj = [0] * edges
        for i, j in zip(sources, targets, strict=True):
            adj[fill[i]] = j
            fill[i] += 1
        seen = [False] * n
        frontier = [i for i in range(n) if start[i + 1] > start[i] and not pointed[i]]
        for i in frontier:
            seen[i] = True
        while frontier:
            nxt = []
            for i in frontier:
                for k in range(start[i], start[i + 1]):
                    j = adj[k]
                    if not seen[j]:
                        seen[j] = True
                        nxt.append(j)
            if nxt:
                depth += 1
            frontier = nxt
    best = heapq.nsmallest(TOP_CONNECTED, degree.items(), key=lambda kv: (-kv[1], ids[kv[0]]))
    top = [(ids[i], d) for i, d in best]
    density = edges / (n * (n - 1)) if n > 1 else 0.0
    return Figures(key, depth, round(density, 9), top, sizes)


#: The figures are recomputed no sooner than this many times their cost after the last.
COST_FACTOR = 10.0


class FiguresCache:
    """The last :class:`Figures`, recomputed when ``key()`` changed and they are older
    than :data:`COST_FACTOR` times what they took."""

    def __init__(self, arena: Callable[[], Any], key: Callable[[], tuple[int, ...]]) -> None:
        self._arena = arena
        self._key = key
        self._last: Figures | None = None
        self._lock = threading.Lock()
        #: How many times the figures were computed (tests and the docs' costs).
        self.computed = 0

    def get(self) -> Figures | None:
        """The figures: fresh, or the cached ones; None only while the very first
        computation runs in another thread."""
        last = self._last
        key = self._key()
        if last is not None and (
            last.key == key or time.monotonic() - last.computed_at < COST_FACTOR * last.cost
        ):
            return last
        if not self._lock.acquire(blocking=last is None):
            return last  # another thread is at it: answer what we have
        try:
            if self._last is not None and self._last.key == key:
                return self._last
            started = time.perf_counter()
            figures = compute(self._arena(), key)
            figures.cost = time.perf_counter() - started
            self._last = figures
            self.computed += 1
            return self._last
        finally:
            self._lock.release()
