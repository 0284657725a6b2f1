"""How soon a restarted server answers: from the arena snapshot, and in full from SQLite.

    python benches/python/restart.py --substrates 10000000            # synthetic store
    python benches/python/restart.py --substrates 10000000 --keep /tmp/r10m   # ... kept
    python benches/python/restart.py --data-dir /tmp/r10m --repeat 3  # reuse it
    python benches/python/restart.py --data-dir /tmp/pssdata --full   # a real store

Each figure is the time from starting ``bfx serve --data-dir`` (one worker, the
arena loaded once in the main process) to its first ``200`` from
``/api/v1/health/ready``, with the main process's peak RSS by then (``VmHWM``), and
``Arena.load_file`` of the same snapshot in this process (the core's share of it:
wall time, and CPU time of all its threads from ``getrusage``).

With ``--data-dir`` naming a data directory that already holds a database (e.g. the
one ``benches/python/worker_pss.py --data-dir`` wrote), its own snapshot is used; with
``--full`` the snapshot is then also removed and the server timed loading in full
from SQLite (it writes a new snapshot, which is put back). Without one, a synthetic
store is made: ``--substrates`` substrates and three relationships each (``bfx
capacity``'s shape) built straight into an arena in this process and written as the
snapshot of an empty database, at the point of its change log the database is at, so
a start takes it as its own (nothing to catch up): the snapshot path at a scale that
would take hours to write through the API. Figures, not assertions; bounded waits.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

from bfx.capacity import Shape

API = "/api/v1"
CHUNK = 100_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss(pid: int) -> int:
    """A live process's peak resident set size in bytes (Linux's ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise SystemExit(f"no VmHWM for process {pid}")


def ready_after(data_dir: Path, log: Path, limit: float = 1800.0) -> tuple[float, int]:
    """Seconds from starting ``bfx serve`` to its first ready answer, and the main
    process's peak RSS by then; the server is then stopped (SIGINT: a clean
    shutdown, which writes a snapshot if it has none)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    with log.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "bfx.cli", "serve", "--port", str(port), "--data-dir",
             str(data_dir), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            while time.perf_counter() - t0 < limit:
                if proc.poll() is not None:
                    raise SystemExit(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
                with contextlib.suppress(OSError):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                    try:
                        conn.request("GET", f"{API}/health/ready")
                        if conn.getresponse().status == 200:
                            return time.perf_counter() - t0, peak_rss(proc.pid)
                    finally:
                        conn.close()
                time.sleep(0.05)
            raise SystemExit(f"not ready in {limit:.0f} s")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=600)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)


def synthetic(data_dir: Path, shape: Shape) -> tuple[int, int, float]:
    """An empty store whose snapshot holds ``shape``; (substrates, relationships, s)."""
    from bfx._core import REL_TYPES, Arena
    from bfx.storage import open_store, snapshot

    t0 = time.perf_counter()
    arena = Arena()
    ids = array("Q", [0]) * shape.substrates
    for start in range(0, shape.substrates, CHUNK):
        end = min(shape.substrates, start + CHUNK)
        got, _ = arena.insert_many(shape.substrate_rows(start, end))
        ids[start:end] = array("Q", got)
        edges = [
            (REL_TYPES[q], ids[i], ids[t], both, b"", None)
            for i, t, q, both in shape.relationship_items(start, end, end)
        ]
        arena.link_many(edges)
        print(f"  built {end:,} / {shape.substrates:,}", file=sys.stderr, flush=True)
    store = open_store(str(data_dir))
    try:
        # (``_change_at`` before the shared arena: the script also measures older bfx.)
        change_at = getattr(store, "change_at", None) or store._change_at
        header = snapshot.Snapshot(store.store_id, store.seq, change_at(store.seq))
    finally:
        store.close()  # loaded nothing, so it writes no snapshot of its own
    snapshot.write(data_dir, arena, header)
    return len(arena), arena.relationship_count, time.perf_counter() - t0


def core_load(data_dir: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``Arena.load_file`` on the snapshot, and the dump
    format version."""
    from bfx._core import Arena
    from bfx.storage import snapshot

    found = snapshot.read_header(data_dir)
    if found is None:
        raise SystemExit(f"no snapshot in {data_dir}")
    _, offset = found
    path = data_dir / snapshot.SNAPSHOT_NAME
    with path.open("rb") as f:
        f.seek(offset + 8)
        version = int.from_bytes(f.read(4), "little")
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    arena = Arena.load_file(path, offset)
    seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    del arena
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return seconds, cpu, version


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", type=int, default=1_000_000)
    p.add_argument("--data-dir", type=Path, default=None, help="a real store to restart")
    p.add_argument("--full", action="store_true", help="also time a full load from SQLite")
    p.add_argument("--keep", type=Path, default=None, help="keep the synthetic store here")
    p.add_argument(
        "--repeat", type=int, default=1, help="time the snapshot load and start this many times"
    )
    args = p.parse_args(argv)
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="bfx-restart-") as tmp:
        tmp_path = Path(tmp)
        if args.data_dir is not None and (args.data_dir / "bfx.db").exists():
            data_dir = args.data_dir
            what = f"the store in {data_dir}"
        else:
            data_dir = args.keep or tmp_path / "data"
            shape = Shape(args.substrates)
            shape.check()
            n, r, built = synthetic(data_dir, shape)
            what = f"a synthetic store: {n:,} substrates + {r:,} relationships (built in {built:.1f} s)"
        size = (data_dir / "arena.snapshot").stat().st_size
        for _ in range(max(1, args.repeat)):
            seconds, cpu, version = core_load(data_dir)
            load = os.getloadavg()[0]
            rows.append(
                (
                    f"`Arena.load_file` of the snapshot (dump v{version}, "
                    f"{size / 2**20:,.0f} MiB), load average {load:.2f}",
                    f"{seconds:.2f} s wall, {cpu:.2f} s CPU",
                )
            )
            ready, rss = ready_after(data_dir, tmp_path / "snap.log")
            load = os.getloadavg()[0]
            rows.append(
                (
                    f"`bfx serve` from the snapshot: first ready answer, load average {load:.2f}",
                    f"{ready:.2f} s, peak RSS {rss / 2**20:,.0f} MiB",
                )
            )
        if args.full:
            saved = tmp_path / "saved.snapshot"
            shutil.move(data_dir / "arena.snapshot", saved)
            try:
                full, rss = ready_after(data_dir, tmp_path / "full.log")
            finally:
                (data_dir / "arena.snapshot").unlink(missing_ok=True)
                shutil.move(saved, data_dir / "arena.snapshot")
            rows.append(
                (
                    "`bfx serve` loading in full from SQLite: first ready answer",
                    f"{full:.2f} s, peak RSS {rss / 2**20:,.0f} MiB",
                )
            )
    load = os.getloadavg()
    print(f"{what}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs")
    print()
    print("| start | time |")
    print("|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
