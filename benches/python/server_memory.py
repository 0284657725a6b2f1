"""Resident memory of a real ``bfx serve`` holding N substrates (a check of ``bfx capacity``).

    python benches/python/server_memory.py --substrates 1000000

``bfx capacity`` measures the Rust arena in its own process. This script checks
that figure against the real thing: it writes N substrates (the capacity tool's
synthetic shape, through the sandbox) and their relationships into a SQLite data
directory with ``bfx.Registry(data_dir=...)``, then starts ``bfx serve --data-dir``
on a loopback port and measures the server's resident set once it answers
``/health`` (all records loaded), against the same server on an empty data
directory. Then it invokes ``--warm-cache`` distinct substrates through
``/substrates/batch/invoke`` so the compiled-expression cache (bounded: 100,000
entries by default) is full, and measures again. It also reads the worker's peak
resident set (VmHWM) right after start-up (loading the arena, from the snapshot or
in full) and until it has exited after SIGINT (a clean shutdown writes the arena
snapshot): a server must fit its peak, not only its steady state.
``--data-dir`` keeps (and reuses) the loaded directory. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bfx.capacity import DEFAULT_EXPRESSION_LENGTH, DEFAULT_METADATA_BYTES, Progress, Shape

API = "/api/v1"
CHUNK = 5000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port: int, method: str, path: str, body: object = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if payload else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def tree_rss(pid: int) -> tuple[int, int]:
    """(RSS of the process tree, RSS of its largest process: the Granian worker)."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    sizes = []
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            sizes.append(p.memory_info().rss)
    return sum(sizes), max(sizes)


def peak_rss(pid: int) -> int:
    """VmHWM: the highest resident set the process has had (Linux), 0 if unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def worker_pid(pid: int) -> int:
    """The Granian worker: the largest process of the tree (it holds the registry)."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    best = max(procs, key=lambda p: p.memory_info().rss)
    return best.pid


class Server:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self._log = log.open("wb")
        env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bfx.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--log-level",
                "warning",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own group: the worker is stopped with it
        )
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                sys.exit(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                if call(self.port, "GET", f"{API}/health")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            self.stop()
            sys.exit("server did not start in 30 minutes")
        self.start_seconds = time.perf_counter() - t0

    def rss(self) -> tuple[int, int]:
        time.sleep(1.0)  # let the worker settle after the last request
        return tree_rss(self.proc.pid)

    def peak(self) -> int:
        return peak_rss(worker_pid(self.proc.pid))

    def stop(self) -> int:
        """Stops the server (SIGINT: a clean shutdown, which writes the arena snapshot)
        and returns the worker's peak RSS seen while it shut down."""
        peak = 0
        if self.proc.poll() is None:
            worker = worker_pid(self.proc.pid)
            self.proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + 600
            while self.proc.poll() is None and time.monotonic() < deadline:
                peak = max(peak, peak_rss(worker))
                time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a hung server, or orphaned workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self._log.close()
        return peak


def populate(data_dir: Path, shape: Shape, show: bool) -> tuple[list[int], float]:
    from bfx import Registry
    from bfx._core import REL_TYPES

    reg = Registry(data_dir=str(data_dir))
    progress = Progress(shape.substrates, sys.stderr, show, label="writing")
    ids: list[int] = []
    t0 = time.perf_counter()
    try:
        for start in range(0, shape.substrates, CHUNK):
            end = min(shape.substrates, start + CHUNK)
            items = [
                {
                    "expression_type": "lambda",
                    "expression_code": shape.code(i),
                    "metadata": json.loads(shape.metadata(i)) if shape.metadata_bytes else {},
                }
                for i in range(start, end)
            ]
            for res in reg.create_many(items):
                if isinstance(res, BaseException):
                    raise res
                ids.append(res.identity)
            rels = [
                {
                    "rel_type": REL_TYPES[q],
                    "source_id": ids[i],
                    "target_id": ids[t],
                    "bidirectional": both,
                }
                for i, t, q, both in shape.relationship_items(start, end, end)
            ]
            for res in reg.relate_many(rels) if rels else ():
                if isinstance(res, BaseException):
                    raise res
            progress.update(end)
    finally:
        reg.close()
        progress.close()
    return ids, time.perf_counter() - t0


def warm(port: int, ids: list[int], count: int) -> int:
    done = 0
    for start in range(0, min(count, len(ids)), 500):
        batch = [
            {"substrate_id": f"0x{i:016X}", "parameters": {"x": 2}}
            for i in ids[start : min(count, start + 500)]
        ]
        status, body = call(port, "POST", f"{API}/substrates/batch/invoke", {"invocations": batch})
        if status != 200:
            sys.exit(f"batch invoke failed: {status} {body}")
        done += len(batch)
    return done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", type=int, default=1_000_000)
    p.add_argument("--relationships-per-substrate", type=int, default=3)
    p.add_argument("--expression-length", type=int, default=DEFAULT_EXPRESSION_LENGTH)
    p.add_argument("--metadata-bytes", type=int, default=DEFAULT_METADATA_BYTES)
    p.add_argument("--warm-cache", type=int, default=100_000, help="distinct substrates invoked")
    p.add_argument("--dir", default=None, help="parent of the temporary data directories")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="keep the loaded data directory here, and reuse it if it already holds one "
        "(its records must have this shape)",
    )
    p.add_argument(
        "--drop-snapshot",
        action="store_true",
        help="remove the arena snapshot before starting the loaded server (a full load)",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    shape = Shape(
        args.substrates,
        args.relationships_per_substrate,
        args.expression_length,
        args.metadata_bytes,
    )
    try:
        shape.check()
    except ValueError as exc:
        p.error(str(exc))
    show = sys.stderr.isatty()
    with tempfile.TemporaryDirectory(prefix="bfx-server-memory-", dir=args.dir) as tmp:
        tmp_path = Path(tmp)
        empty_dir = tmp_path / "empty"
        full_dir = args.data_dir or tmp_path / "full"
        if args.data_dir and (full_dir / "bfx.db").exists():
            from bfx._core import substrate_id

            ids = [substrate_id("lambda", shape.code(i)) for i in range(shape.substrates)]
            write_seconds = float("nan")
        else:
            ids, write_seconds = populate(full_dir, shape, show)
        disk = sum(f.stat().st_size for f in full_dir.rglob("*") if f.is_file())

        empty = Server(empty_dir, tmp_path / "empty.log")
        try:
            empty_tree, empty_worker = empty.rss()
        finally:
            empty.stop()
        if args.drop_snapshot:
            (full_dir / "arena.snapshot").unlink(missing_ok=True)
        full = Server(full_dir, tmp_path / "full.log")
        try:
            start_peak = full.peak()
            full_tree, full_worker = full.rss()
            warmed = warm(full.port, ids, args.warm_cache)
            warm_tree, warm_worker = full.rss()
            start_seconds = full.start_seconds
        finally:
            stop_peak = full.stop()

    n = shape.substrates
    k = shape.relationships_per_substrate
    figures = {
        "substrates": n,
        "relationships": n * k,
        "write_seconds": write_seconds,
        "disk_bytes": disk,
        "start_seconds": start_seconds,
        "snapshot_dropped": args.drop_snapshot,
        "empty_tree_rss": empty_tree,
        "empty_worker_rss": empty_worker,
        "loaded_tree_rss": full_tree,
        "loaded_worker_rss": full_worker,
        "warmed": warmed,
        "warm_tree_rss": warm_tree,
        "warm_worker_rss": warm_worker,
        "bytes_per_substrate_loaded": (full_worker - empty_worker) / n,
        "bytes_per_substrate_warm": (warm_worker - empty_worker) / n,
        "cache_bytes_per_entry": (warm_worker - full_worker) / max(1, warmed),
        "start_peak_worker_rss": start_peak,
        "stop_peak_worker_rss": stop_peak,
        "start_peak_bytes_per_substrate": (start_peak - empty_worker) / n,
        "stop_peak_bytes_per_substrate": (stop_peak - empty_worker) / n,
    }
    mib = 2**20
    print(
        f"bfx serve --data-dir, {n:,} substrates with {k} relationships each "
        f"(lambda {shape.expression_length} chars, metadata {shape.metadata_bytes} bytes)"
    )
    written = (
        "reused from --data-dir"
        if write_seconds != write_seconds
        else f"written through Registry(data_dir) in {write_seconds:,.1f} s"
    )
    print(f"{written}; {disk / mib:,.1f} MiB on disk = {disk / n:,.1f} bytes/substrate")
    if args.drop_snapshot:
        print("the arena snapshot was removed before the start: a full load from SQLite")
    print(f"server start (load + first /health): {start_seconds:,.1f} s")
    print()
    print("| server | worker RSS | process tree RSS | worker RSS above empty, per substrate |")
    print("|---|---:|---:|---:|")
    print(f"| empty data dir | {empty_worker / mib:,.1f} MiB | {empty_tree / mib:,.1f} MiB | |")
    print(
        f"| {n:,} substrates loaded | {full_worker / mib:,.1f} MiB | {full_tree / mib:,.1f} MiB | "
        f"{figures['bytes_per_substrate_loaded']:,.1f} bytes |"
    )
    print(
        f"| + {warmed:,} compiled in the cache | {warm_worker / mib:,.1f} MiB | "
        f"{warm_tree / mib:,.1f} MiB | {figures['bytes_per_substrate_warm']:,.1f} bytes |"
    )
    print(
        f"| peak while starting (load) | {start_peak / mib:,.1f} MiB | | "
        f"{figures['start_peak_bytes_per_substrate']:,.1f} bytes |"
    )
    print(
        f"| peak over the run, read until exit (clean shutdown) | {stop_peak / mib:,.1f} MiB | | "
        f"{figures['stop_peak_bytes_per_substrate']:,.1f} bytes |"
    )
    print()
    if warmed:
        print(
            f"compiled cache: {figures['cache_bytes_per_entry']:,.0f} bytes per entry "
            f"(x 100,000 entries at most by default = "
            f"{figures['cache_bytes_per_entry'] * 100_000 / mib:,.0f} MiB, a fixed cost)"
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
