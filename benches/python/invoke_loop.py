"""In-process invoke throughput: ``Registry.invoke`` in a tight loop.

Isolates what one successful invoke costs outside HTTP: the compiled-cache
lookup, the sandboxed call and the per-substrate invocation count. With
``--background N`` the arena holds N more substrates and another thread lists
their first page over and over (``GET /substrates``: one pass over the arena
under its read lock, GIL released), and PageRank over them (3 relationships
each) now and then: what an invoke meets when it needs the arena's write lock,
as it did while the count lived in the arena's records. Run it before and
after a change to the invoke path, on the same machine.

Run: python benches/python/invoke_loop.py [--calls 100000] [--repeat 5] [--background 0]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from bfx import _core
from bfx.registry import Registry


def _background_graph(reg: Registry, n: int) -> None:
    arena = reg.arena
    ids, _ = arena.insert_many(
        [("constant", f"{i}.5", f"{i}.5", b"", None, None) for i in range(n)]
    )
    arena.link_many(
        [("dependency", ids[i], ids[(i * 7 + k + 1) % n], False, b"", None)
         for i in range(n) for k in range(3)]
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--substrates", type=int, default=1_000, help="ids invoked round-robin")
    parser.add_argument(
        "--background", type=int, default=0, help="substrates of a graph PageRank runs over"
    )
    args = parser.parse_args()

    reg = Registry()
    ids = [reg.create("lambda", f"lambda x: x + {i}").identity for i in range(args.substrates)]
    params = {"x": 2}
    calls = [ids[i % len(ids)] for i in range(args.calls)]
    for identity in ids:  # warm the compiled cache
        reg.invoke(identity, params)

    stop = threading.Event()
    ranks = 0
    if args.background:
        _background_graph(reg, args.background)

        def read() -> None:
            nonlocal ranks
            while not stop.is_set():
                reg.arena.page(None, 100)
                ranks += 1
                if ranks % 50 == 0:
                    _core.graph_pagerank(reg.arena, limit=1)

        reader = threading.Thread(target=read)
        reader.start()

    rates = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        for identity in calls:
            reg.invoke(identity, params)
        rates.append(args.calls / (time.perf_counter() - start))
    stop.set()
    if args.background:
        reader.join()  # not at interpreter exit, in the middle of a call
    best, median = max(rates), statistics.median(rates)
    background = f", pages over {args.background:,} more in a thread" if args.background else ""
    print(
        f"Registry.invoke x {args.calls:,} over {len(ids):,} substrates{background}, "
        f"{args.repeat} runs: median {median:,.0f}/s ({1e6 / median:.2f} us/call), "
        f"best {best:,.0f}/s" + (f"; {ranks:,} background pages" if args.background else "")
    )


if __name__ == "__main__":
    main()
