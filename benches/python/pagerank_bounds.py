"""PageRank at its worst accepted knobs: how long one call can run.

Builds a random graph in a bare arena (``--nodes``, ``--edges``; defaults 50,000 and
250,000, sources skewed towards low ids as in ``graph_compare.py``) and times
``Registry.pagerank``-equivalent calls of the core at the given knobs, printing one line
each: knobs, iterations, converged, seconds, seconds per iteration. Run::

    python benches/python/pagerank_bounds.py
    python benches/python/pagerank_bounds.py --nodes 1000000 --edges 5000000

The per-iteration cost scales with nodes + links, so the 50k figure times
(1M + 5.5M) / (50k + 275k) estimates one iteration at 1M.
"""

from __future__ import annotations

import argparse
import random
import time

from bfx import _core
from bfx.graph import MAX_PAGERANK_ITER, MIN_PAGERANK_TOL, PAGERANK_WORK, pagerank_iterations

TYPES = ["DEPENDENCY", "COMPOSITION", "SIBLING"]


def build(n: int, e: int, seed: int) -> _core.Arena:
    rng = random.Random(seed)
    arena = _core.Arena(n, e)
    ids, _ = arena.insert_many([("constant", str(i), str(i), b"", 0, None) for i in range(n)])
    items = []
    seen = set()
    while len(items) < e:
        s, d, t = int(n * rng.random() ** 2), rng.randrange(n), rng.randrange(len(TYPES))
        if (s, d, t) in seen:
            continue
        seen.add((s, d, t))
        items.append((TYPES[t], ids[s], ids[d], rng.random() < 0.1, b"", 0))
    results, _ = arena.link_many(items)
    assert not any(isinstance(x, Exception) for x in results)
    return arena


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=50_000)
    p.add_argument("--edges", type=int, default=250_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    t = time.perf_counter()
    arena = build(a.nodes, a.edges, a.seed)
    print(f"built {a.nodes} nodes / {a.edges} relationships in {time.perf_counter() - t:.1f} s")
    budget = pagerank_iterations(len(arena), arena.relationship_count, MAX_PAGERANK_ITER)
    print(f"work budget {PAGERANK_WORK:.1e}: at most {budget} iterations on this graph")
    cases = [
        ("default", 0.85, 1e-6, 100),
        ("formerly accepted: tol 1e-300, max_iter 10000", 0.85, 1e-300, 10_000),
        ("formerly accepted: damping 1, tol 1e-300, max_iter 10000", 1.0, 1e-300, 10_000),
        (
            "worst accepted now (damping 1, tol and max_iter at their bounds)",
            1.0,
            MIN_PAGERANK_TOL,
            budget,
        ),
    ]
    for name, damping, tol, iters in cases:
        t = time.perf_counter()
        _count, _page, done, converged = _core.graph_pagerank(
            arena, damping, tol, iters, 0, 100, None
        )
        dt = time.perf_counter() - t
        print(
            f"{name}: damping={damping} tol={tol:g} max_iter={iters} -> {done} iterations, "
            f"converged={converged}, {dt:.3f} s ({dt / max(done, 1) * 1000:.3f} ms/iteration)"
        )


if __name__ == "__main__":
    main()
