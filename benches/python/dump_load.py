"""CPU and wall time of ``Arena.load_file`` for one synthetic arena, with whichever bfx
is on ``PYTHONPATH`` (so an older bfx's dump format can be timed side by side).

    python benches/python/dump_load.py --substrates 1000000 --file /tmp/arena.dump

Builds ``--substrates`` substrates with three relationships each (``bfx capacity``'s
shape), writes them with ``Arena.dump_file``, then loads the file twice and prints the
wall time and this process's CPU time (``getrusage``: user, all threads, and system)
of each load, with the load average. The file is removed at the end. Figures only.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from array import array

from bfx._core import REL_TYPES, Arena
from bfx.capacity import Shape

CHUNK = 100_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", type=int, default=1_000_000)
    p.add_argument("--file", required=True, help="where the dump is written (removed after)")
    args = p.parse_args(argv)
    n = args.substrates
    shape = Shape(n)
    arena = Arena()
    ids = array("Q", [0]) * n
    for start in range(0, n, CHUNK):
        end = min(n, start + CHUNK)
        got, _ = arena.insert_many(shape.substrate_rows(start, end))
        ids[start:end] = array("Q", got)
        arena.link_many(
            [
                (REL_TYPES[q], ids[i], ids[t], both, b"", None)
                for i, t, q, both in shape.relationship_items(start, end, end)
            ]
        )
    arena.dump_file(args.file)
    del arena
    try:
        with open(args.file, "rb") as f:
            version = int.from_bytes(f.read(12)[8:], "little")
        size = os.path.getsize(args.file)
        for _ in range(2):
            before = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            loaded = Arena.load_file(args.file, 0)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_SELF)
            print(
                f"dump v{version}, {len(loaded):,} substrates + {loaded.relationship_count:,} "
                f"relationships, {size / 2**20:,.0f} MiB: wall {wall:.2f} s, CPU user "
                f"{after.ru_utime - before.ru_utime:.2f} s + sys "
                f"{after.ru_stime - before.ru_stime:.2f} s; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            del loaded
    finally:
        os.unlink(args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
