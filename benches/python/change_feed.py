"""What the change feed and its retention cost, in process (no server):

    python benches/python/change_feed.py                       # 200k records
    python benches/python/change_feed.py --records 50000 --backend memory

Prints, for one store:

* ``feed read``: one page of 100 (and of 1,000) changes from the middle of a log of
  ``--records`` entries (``ChangeFeed.read``: one indexed read on the feed connection),
  median and p99 over 200 reads;
* ``prune``: deleting the log down to 1,000 entries, in batches of 10,000;
* ``full reload``: a follower behind the pruned log catching up (load in full, then
  reconcile its arena) against a plain full load of the same store;
* ``memory creates``: single creates on the in-memory store with its change log on,
  and with the logging replaced by a no-op (the cost of the log on the fastest path).

Figures only; the machine is shared and noisy: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

from bfx import Registry
from bfx.storage.memory import MemoryStore


def _fill(reg: Registry, n: int) -> None:
    step = 1_000
    for start in range(0, n, step):
        reg.create_many(
            [
                {"expression_type": "constant", "expression_code": str(i)}
                for i in range(start, min(n, start + step))
            ]
        )


def _timed(fn, rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return statistics.median(times) * 1e3, times[int(len(times) * 0.99) - 1] * 1e3


def _durable(backend: str, n: int) -> None:
    root = tempfile.mkdtemp(prefix="bfx-feed-bench-")
    try:
        locator = os.path.join(root, "d") if backend == "sqlite" else backend
        with Registry(storage=locator) as writer, Registry(storage=locator) as follower:
            writer.store.set_retention(0)
            t = time.perf_counter()
            _fill(writer, n)
            print(f"{backend}: {n:,} creates in batches of 1,000: {time.perf_counter() - t:.1f} s")
            for limit in (100, 1_000):
                med, p99 = _timed(lambda limit=limit: writer.changes.read(n // 2, limit), 200)
                print(f"  feed read, page of {limit:>5,}: median {med:.2f} ms, p99 {p99:.2f} ms")
            writer.store.set_retention(1_000)
            t = time.perf_counter()
            deleted = writer.store.prune()
            took = time.perf_counter() - t
            print(f"  prune {deleted:,} entries (batches of 10,000): {took * 1e3:.0f} ms")
            writer.create("constant", "-1")
            t = time.perf_counter()
            follower.refresh()
            reload = time.perf_counter() - t
            assert len(follower) == len(writer)
        with Registry(storage=locator) as fresh:
            t = time.perf_counter()
            fresh.store.attach(type(fresh.arena)())
            load = time.perf_counter() - t
        print(f"  follower's full reload: {reload:.2f} s (a plain full load: {load:.2f} s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


class _Unlogged(MemoryStore):
    def log(self, op: int, identity: int) -> None:
        pass


def _memory(n: int, rounds: int = 5) -> None:
    """Rounds of both kinds interleaved (a shared machine drifts): medians."""
    rates: dict[str, list[float]] = {"change log on": [], "logging a no-op": []}
    for _ in range(rounds):
        for label, make in (("change log on", MemoryStore), ("logging a no-op", _Unlogged)):
            with Registry(storage=make()) as reg:
                t = time.perf_counter()
                for i in range(n):
                    reg.create("constant", str(i))
                rates[label].append(n / (time.perf_counter() - t))
    for label, found in rates.items():
        print(f"memory creates ({label}): median {statistics.median(found):,.0f}/s "
              f"of {rounds} rounds of {n:,}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--backend", default="sqlite", help="sqlite, memory or a postgresql:// URL")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    if args.backend != "memory":
        _durable(args.backend, args.records)
    _memory(min(args.records, 20_000))


if __name__ == "__main__":
    main()
