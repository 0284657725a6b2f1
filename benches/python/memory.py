"""Resident memory per substrate and per relationship, and batch insert time.

Builds 1,000,000 substrates and 3,000,000 relationships in one arena and
reports the growth of the process's resident set (RSS) per record, beyond
the code and metadata bytes themselves. Inputs are generated and inserted in
chunks so the Python-side input lists do not count.

Run: python benches/python/memory.py [--substrates N] [--per-substrate K]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import platform
import tempfile
import time
from array import array

import psutil
from server_memory import peak_rss  # this folder, run as a script

from bfx._core import Arena

CHUNK = 20_000


try:
    _libc = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: RSS then includes freed-but-cached heap pages
    _libc = None


def rss() -> int:
    """Resident bytes after returning freed heap pages to the OS, so that
    memory the allocator merely caches (old hash-table buckets after a
    resize, freed input rows) is not counted as the arena's."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)
    return psutil.Process().memory_info().rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--substrates", type=int, default=1_000_000)
    parser.add_argument("--per-substrate", type=int, default=3, help="relationships per substrate")
    args = parser.parse_args()
    n, k = args.substrates, args.per_substrate

    print(
        f"machine: {platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB; python {platform.python_version()}"
    )
    base = rss()
    arena = Arena()
    payload = 0
    # Ids are kept in a packed array (8 bytes each, exactly accounted for).
    ids = array("Q")
    insert_seconds = 0.0
    for start in range(0, n, CHUNK):
        rows = []
        for i in range(start, min(n, start + CHUNK)):
            code = f"lambda **kw: kw.get('x', 0) * {i}"
            meta = b'{"name":"s%d"}' % i
            payload += len(code) + len(meta)
            rows.append(("lambda", code, code, meta, None, None))
        t0 = time.perf_counter()
        got, _ = arena.insert_many(rows)
        insert_seconds += time.perf_counter() - t0
        ids.extend(got)
        del rows
    ids_bytes = ids.buffer_info()[1] * ids.itemsize
    after_nodes = rss()
    per_substrate = (after_nodes - base - ids_bytes - payload) / n
    print(
        f"substrates: {n:,}  batch insert (in {CHUNK:,}-row calls): {insert_seconds:.3f} s "
        f"= {n / insert_seconds:,.0f}/s"
    )
    print(
        f"  RSS growth {(after_nodes - base) / 2**20:.1f} MiB; code+metadata bytes "
        f"{payload / 2**20:.1f} MiB; overhead per substrate: {per_substrate:.1f} bytes"
    )

    m = n * k
    link_seconds = 0.0
    types = ("SIBLING", "DEPENDENCY", "ADJACENCY", "LINEAGE", "COMPOSITION")
    for start in range(0, m, CHUNK):
        rows = []
        for j in range(start, min(m, start + CHUNK)):
            i, r = divmod(j, k)
            rows.append(
                (
                    types[r % len(types)],
                    ids[i],
                    ids[(i * 7919 + r * 104729 + 1) % n],
                    r == 0,
                    b"",
                    None,
                )
            )
        t0 = time.perf_counter()
        arena.link_many(rows)
        link_seconds += time.perf_counter() - t0
        del rows
    after_edges = rss()
    edges = arena.relationship_count
    print(
        f"relationships: {edges:,}  batch link: {link_seconds:.3f} s = {edges / link_seconds:,.0f}/s"
    )
    print(
        f"  RSS growth {(after_edges - after_nodes) / 2**20:.1f} MiB; overhead per relationship "
        f"(both adjacency directions included): {(after_edges - after_nodes) / edges:.1f} bytes"
    )
    mem = arena.memory()
    print("arena accounting (capacity bytes / record):")
    print(
        f"  substrate records {mem['substrate_records'] / n:.1f} + index "
        f"{mem['substrate_index'] / n:.1f} + payload slab {mem['substrate_bytes'] / n:.1f}"
    )
    print(
        f"  relationship records {mem['relationship_records'] / edges:.1f} + index "
        f"{mem['relationship_index'] / edges:.1f}"
    )
    t0 = time.perf_counter()
    blob = arena.dump()
    t1 = time.perf_counter()
    again = Arena.from_dump(blob)
    t2 = time.perf_counter()
    assert len(again) == n
    assert again.relationship_count == edges
    print(
        f"dump {len(blob) / 2**20:.0f} MiB in {t1 - t0:.2f} s; load (ids re-verified) in {t2 - t1:.2f} s"
    )
    del again, blob
    streamed_round_trip(arena, after_edges - base)


def reset_peak_rss() -> bool:
    """Restarts VmHWM from the current RSS (Linux: ``5`` into clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def streamed_round_trip(arena: Arena, arena_bytes: int) -> None:
    """The snapshot path a server takes: dump to a file and load it back,
    streamed. The peak growth while loading is the new arena plus a buffer; a
    load that held the dump in memory would add the dump's size on top."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "arena.dump")
        before = rss()
        can_measure = reset_peak_rss()
        t0 = time.perf_counter()
        arena.dump_file(path)
        t1 = time.perf_counter()
        dump_peak = peak_rss(os.getpid())
        size = os.path.getsize(path)
        before_load = rss()
        can_measure = reset_peak_rss() and can_measure
        again = Arena.load_file(path)
        t2 = time.perf_counter()
        load_peak = peak_rss(os.getpid())
        assert len(again) == len(arena)
        print(
            f"streamed: dump_file {size / 2**20:.0f} MiB in {t1 - t0:.2f} s; "
            f"load_file in {t2 - t1:.2f} s"
        )
        if can_measure and dump_peak and load_peak:
            print(
                f"  peak RSS growth: dump_file {(dump_peak - before) / 2**20:.1f} MiB; "
                f"load_file {(load_peak - before_load) / 2**20:.1f} MiB for an arena of "
                f"{arena_bytes / 2**20:.1f} MiB and a dump of {size / 2**20:.1f} MiB"
            )
        else:
            print("  peak RSS growth: not measured (needs Linux /proc/self/clear_refs)")


if __name__ == "__main__":
    main()
