"""A full load of a store from SQLite (no snapshot): wall and CPU time.

    python benches/python/full_load.py --substrates 1000000 --data-dir /tmp/fl1m
    python benches/python/full_load.py --data-dir /tmp/fl1m --profile   # cProfile top 15

Unless ``--data-dir`` already holds a ``bfx.db``, writes one: ``--substrates``
substrates of ``bfx capacity``'s typical shape and three relationships each, built
in an arena in this process and inserted with plain SQL in one transaction (minutes
through the API at this scale). Then times ``Store.attach`` (what ``bfx serve`` does
when there is no usable snapshot: every row read and loaded into a fresh arena),
``--repeat`` times, and prints wall time, this process's CPU time over the load
(``resource.getrusage``: user + system, every thread) and the load average. Figures,
not assertions.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sqlite3
import sys
import time
from array import array
from pathlib import Path

from bfx.capacity import Shape

CHUNK = 100_000


def signed(u: int) -> int:
    return u - (1 << 64) if u >= 1 << 63 else u


def build(data_dir: Path, shape: Shape) -> None:
    from bfx._core import REL_TYPES, Arena
    from bfx.storage import open_store

    open_store(str(data_dir)).close()  # the schema
    conn = sqlite3.connect(data_dir / "bfx.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    arena = Arena()
    ids = array("Q", [0]) * shape.substrates
    now = int(time.time() * 1e6)
    for start in range(0, shape.substrates, CHUNK):
        end = min(shape.substrates, start + CHUNK)
        rows = shape.substrate_rows(start, end)
        got, _ = arena.insert_many(rows)
        ids[start:end] = array("Q", got)
        conn.executemany(
            "INSERT INTO substrates VALUES (?, ?, ?, ?, ?, ?)",
            [
                (signed(i), t, c, k, m or None, now)
                for i, (t, c, k, m, _, _) in zip(got, rows, strict=True)
            ],
        )
    for start in range(0, shape.substrates, CHUNK):
        end = min(shape.substrates, start + CHUNK)
        edges = [
            (REL_TYPES[q], ids[i], ids[t], both, b"", now)
            for i, t, q, both in shape.relationship_items(start, end, shape.substrates)
        ]
        got, _ = arena.link_many(edges)
        conn.executemany(
            "INSERT INTO relationships VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (signed(r), e[0], signed(e[1]), signed(e[2]), int(e[3]), None, now)
                for r, e in zip(got, edges, strict=True)
                if isinstance(r, int)
            ],
        )
        print(f"  wrote {end:,} / {shape.substrates:,}", file=sys.stderr, flush=True)
    conn.execute("COMMIT")
    conn.close()


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load_once(data_dir: Path, profile: bool) -> tuple[float, float, int, int]:
    from bfx._core import Arena
    from bfx.storage import open_store

    store = open_store(str(data_dir))
    try:
        arena = Arena()
        prof = cProfile.Profile() if profile else None
        c0, t0 = cpu(), time.perf_counter()
        if prof:
            prof.enable()
        store.attach(arena)
        if prof:
            prof.disable()
        wall, used = time.perf_counter() - t0, cpu() - c0
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        n, r = len(arena), arena.relationship_count
        store._arena = None  # closing must not write a snapshot: the next run loads in full
    finally:
        store.close()
    return wall, used, n, r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", type=int, default=1_000_000)
    p.add_argument("--data-dir", type=Path, required=True)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args(argv)
    if not (args.data_dir / "bfx.db").exists():
        shape = Shape(args.substrates)
        shape.check()
        t0 = time.perf_counter()
        build(args.data_dir, shape)
        print(f"built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    for _ in range(args.repeat):
        wall, used, n, r = load_once(args.data_dir, args.profile)
        load = os.getloadavg()
        print(
            f"full load of {n:,} substrates + {r:,} relationships: wall {wall:.2f} s, "
            f"CPU {used:.2f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
            f"{os.cpu_count()} CPUs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
