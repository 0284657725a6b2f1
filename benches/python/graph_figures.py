"""The metrics' whole-graph figures on a large registry: what one computation costs and
how much it delays an event loop running beside it (as a worker's would: the figures
are computed in a thread, with the worker's 1 ms switch interval). Run::

    python benches/python/graph_figures.py                      # 1M substrates, 2M links
    python benches/python/graph_figures.py --nodes 100000 --edges 200000

Prints the build time, the computation's seconds, and the lateness of a 1 ms timer on
the loop (median, p99, max) while the computation runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from bfx.domain.figures import compute
from bfx.switching import BUSY

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from pagerank_bounds import build


async def _lateness(stop: asyncio.Event) -> list[float]:
    late = []
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.001)
        late.append(time.perf_counter() - t - 0.001)
    return late


async def _run(arena: object) -> tuple[float, list[float]]:
    stop = asyncio.Event()
    ticker = asyncio.ensure_future(_lateness(stop))
    t = time.perf_counter()
    figures = await asyncio.to_thread(compute, arena)
    took = time.perf_counter() - t
    stop.set()
    late = await ticker
    print(
        f"depth {figures.depth}, density {figures.density:.3g}, top {figures.top[:2]}, "
        f"sizes {figures.sizes}"
    )
    return took, late


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    t = time.perf_counter()
    arena = build(a.nodes, a.edges, a.seed)
    print(
        f"built {a.nodes} substrates / {a.edges} relationships in {time.perf_counter() - t:.1f} s"
    )
    sys.setswitchinterval(BUSY)  # a thread at work beside the loop (bfx.switching)
    took, late = asyncio.run(_run(arena))
    late_ms = sorted(x * 1000 for x in late)
    p99 = late_ms[min(len(late_ms) - 1, int(len(late_ms) * 0.99))]
    print(f"figures computed in {took:.2f} s (in a thread)")
    print(
        f"a 1 ms timer on the loop meanwhile: {len(late_ms)} ticks, late by median "
        f"{statistics.median(late_ms):.2f} ms, p99 {p99:.2f} ms, max {late_ms[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
