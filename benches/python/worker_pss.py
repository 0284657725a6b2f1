"""The whole server's memory by worker count: does a worker share the arena?

    python benches/python/worker_pss.py --substrates 1000000 --data-dir /tmp/pssdata

Writes N substrates (``bfx capacity``'s synthetic shape) and their relationships into
a SQLite data directory, straight through the engine (rows, not the sandbox: the
codes are canonical by construction) unless ``--data-dir`` already holds them. Then,
for each ``--workers`` count, starts a real ``bfx serve --data-dir`` (its own process
group), waits for ``/health/ready``, sends a little traffic through fresh connections
(so every worker takes some): ``GET`` and invoke of ``--requests`` substrates and a
few creates, and sums the proportional set size (``Pss`` of
``/proc/PID/smaps_rollup``) over the server's processes: the main process and its
workers. PSS divides every shared page among the processes that map it, so the sum
counts the arena once however many workers share it. ``--compare`` runs each count a
second time with ``--no-shared-arena`` (every worker loads its own). Figures, not
assertions; every wait is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bfx.capacity import DEFAULT_EXPRESSION_LENGTH, DEFAULT_METADATA_BYTES, Shape

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server_memory import call, free_port

API = "/api/v1"
CHUNK = 20_000
MIB = 2**20


def populate(data_dir: Path, shape: Shape) -> float:
    """Writes the records through the engine, a chunk per transaction; seconds taken."""
    from bfx._core import REL_TYPES, substrate_id
    from bfx.engine import Engine
    from bfx.rows import RelationshipRow, SubstrateRow
    from bfx.storage import open_store

    t0 = time.perf_counter()
    engine = Engine(open_store(str(data_dir)))
    now = int(time.time() * 1e6)
    try:
        for start in range(0, shape.substrates, CHUNK):
            end = min(shape.substrates, start + CHUNK)
            rows = [
                SubstrateRow(None, "lambda", code, code, meta, now)
                for _, code, _, meta, _, _ in shape.substrate_rows(start, end)
            ]
            for answer in engine.insert_substrates(rows):
                if not isinstance(answer, int):
                    raise SystemExit(f"could not write a substrate: {answer}")
            rels = [
                RelationshipRow(
                    None,
                    REL_TYPES[q],
                    substrate_id("lambda", shape.code(i)),
                    substrate_id("lambda", shape.code(t)),
                    both,
                    b"",
                    now,
                )
                for i, t, q, both in shape.relationship_items(start, end, end)
            ]
            for answer in engine.insert_relationships(rels):
                if not isinstance(answer, int):
                    raise SystemExit(f"could not write a relationship: {answer}")
            print(f"  written {end:,} / {shape.substrates:,}", file=sys.stderr, flush=True)
    finally:
        engine.close()  # writes the arena snapshot
    return time.perf_counter() - t0


def pss(pid: int) -> int:
    """PSS of one process in bytes (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += map(int, f.read().split())
    return out


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo and len(pids) < 1000:
        p = todo.pop()
        pids.append(p)
        todo += children(p)
    return pids


class Server:
    def __init__(self, data_dir: Path, workers: int, shared: bool, log: Path) -> None:
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
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
                "--workers",
                str(workers),
                "--log-level",
                "warning",
                "--no-access-log",
                *(() if shared else ("--no-shared-arena",)),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise SystemExit(f"server exited:\n{log.read_text(errors='replace')[-3000:]}")
            with contextlib.suppress(OSError):
                if call(self.port, "GET", f"{API}/health/ready")[0] == 200:
                    break
            time.sleep(0.2)
        else:
            self.stop()
            raise SystemExit("server not ready in 10 minutes")
        self.ready_seconds = time.perf_counter() - t0
        # Every worker must be up (the first ready answer may come from one of them).
        # Counted from /proc, not through /api/v1/metrics: its whole-graph figures, a
        # Python pass over every record, leave tens of MiB in the worker that computes
        # them, which is not what is measured here (see BENCHMARKS.md).
        for _ in range(600):
            if len(children(self.proc.pid)) >= workers:
                break
            time.sleep(0.1)
        time.sleep(2.0)
        for _ in range(4 * workers):
            call(self.port, "GET", f"{API}/health/ready")

    def pss(self) -> tuple[int, int]:
        """(PSS summed over the process group, processes counted)."""
        time.sleep(1.0)
        pids = tree(self.proc.pid)
        return sum(pss(p) for p in pids), len(pids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=120)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self._log.close()


def traffic(port: int, shape: Shape, requests: int, run: int) -> None:
    """GETs and invokes spread over the records, and a few creates (writes that every
    worker applies from the change log on its next request)."""
    from bfx._core import substrate_id

    step = max(1, shape.substrates // max(1, requests))
    for n, i in enumerate(range(0, shape.substrates, step)):
        if n >= requests:
            break
        sid = f"0x{substrate_id('lambda', shape.code(i)):016X}"
        status, _ = call(port, "GET", f"{API}/substrates/{sid}")
        if status != 200:
            raise SystemExit(f"GET {sid}: {status}")
        status, body = call(port, "POST", f"{API}/substrates/{sid}/invoke", {"parameters": {}})
        if status != 200:
            raise SystemExit(f"invoke {sid}: {status} {body}")
    for k in range(20):
        code = f"lambda **kw: {run * 1000 + k} + {time.time_ns()}"
        status, body = call(
            port,
            "POST",
            f"{API}/substrates",
            {"expression_type": "lambda", "expression_code": code},
        )
        if status != 201:
            raise SystemExit(f"create: {status} {body}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--substrates", type=int, default=1_000_000)
    p.add_argument("--relationships-per-substrate", type=int, default=3)
    p.add_argument("--workers", default="1,2,4", help="worker counts, comma separated")
    p.add_argument("--requests", type=int, default=2000, help="GETs and invokes per server")
    p.add_argument("--compare", action="store_true", help="also each count unshared")
    p.add_argument("--data-dir", type=Path, default=None, help="keep (and reuse) the data")
    args = p.parse_args(argv)
    shape = Shape(
        args.substrates,
        args.relationships_per_substrate,
        DEFAULT_EXPRESSION_LENGTH,
        DEFAULT_METADATA_BYTES,
    )
    shape.check()
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="bfx-worker-pss-") as tmp:
        data_dir = args.data_dir or Path(tmp) / "data"
        if (data_dir / "bfx.db").exists():
            written = "reused"
        else:
            written = f"written in {populate(data_dir, shape):,.1f} s"
        rows = []
        modes = [True, False] if args.compare else [True]
        for run, (shared, workers) in enumerate((s, w) for s in modes for w in counts):
            server = Server(data_dir, workers, shared, Path(tmp) / f"serve-{run}.log")
            try:
                loaded, _ = server.pss()
                traffic(server.port, shape, args.requests, run)
                total, procs = server.pss()
            finally:
                server.stop()
            rows.append((shared, workers, procs, server.ready_seconds, loaded, total))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    load = os.getloadavg()
    print(
        f"bfx serve --data-dir, {shape.substrates:,} substrates + "
        f"{shape.substrates * shape.relationships_per_substrate:,} relationships ({written}); "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| arena | workers | processes | ready after | PSS loaded | PSS after traffic | ratio to 1 worker |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = {s: t for s, w, _, _, _, t in rows if w == 1}
    for shared, workers, procs, ready, loaded, total in rows:
        ratio = f"{total / base[shared]:.2f}" if shared in base else "-"
        print(
            f"| {'shared' if shared else 'per worker'} | {workers} | {procs} | {ready:.1f} s | "
            f"{loaded / MIB:,.1f} MiB | {total / MIB:,.1f} MiB | {ratio} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
