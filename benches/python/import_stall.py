"""Does a large import hold up other requests? (issue 12: an 85 MB SQLite import
pushed ``/health`` to a 218 ms median, 1.2 s max.)

    python benches/python/import_stall.py                      # 300k records, both modes
    python benches/python/import_stall.py --records 100000 --mode http

Starts a real ``bfx serve`` on a fresh SQLite data directory (loopback), and while
an import runs, a bounded loop times ``GET /api/v1/health`` and
``GET /api/v1/substrates/{id}`` one after the other (one connection each, 5 ms
apart). Two ways to import:

* ``http``: ``POST /substrates/import`` of an NDJSON body to the same server (the
  importing thread and the requests share one process, GIL, store lock and arena);
* ``cli``: ``bfx import FILE --data-dir`` in another process writing to the same
  database (the server follows the change log on each request).

Prints, per mode: the import's size and duration, and the median, p99 and max
latency of both requests before (idle) and during the import. Figures only; the
machine is shared and noisy, so compare rows of one run.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from bfx_server import HOST, Server  # noqa: E402

API = "/api/v1"


def make_file(path: Path, n: int) -> int:
    """``n`` distinct substrates as NDJSON (about 280 bytes each, as an export)."""
    enc = msgspec.json.encode
    with path.open("wb") as f:
        for i in range(n):
            rec = {
                "kind": "substrate",
                "expression_type": "expression",
                "expression_code": f"x * {i} + y",
                "metadata": {"name": f"record {i}", "group": i % 97, "tags": ["a", "b"]},
                "created_at": "2026-01-01T00:00:00Z",
            }
            f.write(enc(rec) + b"\n")
    return path.stat().st_size


class Prober:
    """Times the two GETs back to back until stopped (or ``limit`` seconds)."""

    def __init__(self, port: int, sid: str, limit: float) -> None:
        self.port, self.sid, self.limit = port, sid, limit
        self.health: list[float] = []
        self.get: list[float] = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _one(self, conn: http.client.HTTPConnection, path: str, into: list[float]) -> None:
        t0 = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        into.append(time.perf_counter() - t0)
        if resp.status != 200:
            self.errors += 1

    def _run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        deadline = time.monotonic() + self.limit
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._one(conn, f"{API}/health", self.health)
                self._one(conn, f"{API}/substrates/{self.sid}", self.get)
                self._stop.wait(0.005)
        finally:
            conn.close()

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def summary(label: str, xs: list[float]) -> str:
    if not xs:
        return f"{label:<26} (no samples)"
    xs = sorted(xs)
    p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
    return (
        f"{label:<26} n={len(xs):>6}  median {statistics.median(xs) * 1e3:7.2f} ms  "
        f"p99 {p99 * 1e3:8.2f} ms  max {xs[-1] * 1e3:8.2f} ms"
    )


def run(mode: str, data: Path, size: int, n: int, limit: float) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"bfx-stall-{mode}-"))
    server = Server(tmp, "--import-limit", str(size + (1 << 20)))
    try:
        status, made = server.json(
            "POST", f"{API}/substrates", {"expression_type": "constant", "expression_code": "1"}
        )
        assert status == 201, made
        sid = made["substrate_id"]  # type: ignore[index]
        with Prober(server.port, sid, 3.0) as idle:
            time.sleep(3.0)
        outcome: dict[str, object] = {}

        def do_import() -> None:
            t0 = time.perf_counter()
            if mode == "http":
                conn = http.client.HTTPConnection(HOST, server.port, timeout=limit)
                conn.request(
                    "POST",
                    f"{API}/substrates/import",
                    body=data.read_bytes(),
                    headers={"content-type": "application/x-ndjson"},
                )
                resp = conn.getresponse()
                outcome["answer"] = (resp.status, resp.read()[:200])
                conn.close()
            else:
                proc = subprocess.run(
                    [sys.executable, "-m", "bfx.cli", "import", str(data),
                     "--data-dir", str(tmp / "bfx-data")],
                    capture_output=True, timeout=limit, check=False,
                    env={k: v for k, v in os.environ.items() if not k.startswith("BFX_")},
                )  # fmt: skip
                outcome["answer"] = (proc.returncode, (proc.stdout + proc.stderr)[-200:])
            outcome["seconds"] = time.perf_counter() - t0

        importer = threading.Thread(target=do_import)
        with Prober(server.port, sid, limit) as busy:
            importer.start()
            importer.join(timeout=limit + 30)
        print(f"\n[{mode}] {n:,} records, {size / 1e6:.1f} MB: import answered "
              f"{outcome.get('answer')} in {outcome.get('seconds', float('nan')):.1f} s")  # fmt: skip
        print(summary("idle     GET /health", idle.health))
        print(summary("idle     GET /substrates/id", idle.get))
        print(summary("import   GET /health", busy.health))
        print(summary("import   GET /substrates/id", busy.get))
        if busy.errors or idle.errors:
            print(f"non-200 answers: {idle.errors + busy.errors}")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--mode", choices=["http", "cli", "both"], default="both")
    ap.add_argument("--limit", type=float, default=600.0, help="bound on one import (s)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bfx-stall-") as d:
        data = Path(d) / "records.ndjson"
        size = make_file(data, args.records)
        for mode in ("http", "cli") if args.mode == "both" else (args.mode,):
            run(mode, data, size, args.records, args.limit)


if __name__ == "__main__":
    main()
