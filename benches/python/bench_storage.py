"""Storage benchmark: write and read throughput through HTTP per backend, and start-up.

    python benches/python/bench_storage.py                       # everything (~6 min)
    python benches/python/bench_storage.py --startup 0           # skip the 1M start-up
    python benches/python/bench_storage.py --duration 10 --startup 1000000

Prints, side by side in one run (this machine is shared and noisy: compare rows, not
runs):

* creates/s through ``POST /substrates`` and substrates/s through
  ``POST /substrates/batch`` (100 per request) for memory, SQLite and PostgreSQL;
* reads/s of ``GET /substrates/{id}`` with 1 and 2 workers (SQLite), and 1 worker on
  memory and PostgreSQL (the cost of the per-request freshness check);
* start-up of a SQLite store holding N substrates and 3N relationships: a full load
  from the database, from the snapshot, and ``bfx serve`` until it answers.

wrk (Debian package ``wrk``) drives HTTP, on loopback, each run bounded by
``--duration``. PostgreSQL runs as a throwaway server (tests/pg_server.py) when its
binaries are installed. Figures only: nothing here asserts.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from bfx_server import Server  # noqa: E402

API = "/api/v1"

# Each wrk thread numbers its own requests; codes never repeat across threads or runs
# (a repeat would be a 409 and count as non-2xx).
_LUA_HEAD = """
local n = 0
setup = function(thread)
  threads_started = (threads_started or 0) + 1
  thread:set("tid", threads_started)
end
local function code()
  n = n + 1
  return string.format("%d", PREFIX * 1e12 + tid * 1e9 + n)
end
"""

CREATE_LUA = (
    _LUA_HEAD
    + """
request = function()
  local body = '{"expression_type":"constant","expression_code":"' .. code() .. '"}'
  return wrk.format("POST", "/api/v1/substrates", {["Content-Type"] = "application/json"}, body)
end
"""
)

BATCH_LUA = (
    _LUA_HEAD
    + """
request = function()
  local items = {}
  for i = 1, 100 do
    items[i] = '{"expression_type":"constant","expression_code":"' .. code() .. '"}'
  end
  local body = '{"substrates":[' .. table.concat(items, ",") .. ']}'
  return wrk.format("POST", "/api/v1/substrates/batch", {["Content-Type"] = "application/json"}, body)
end
"""
)


def wrk(url: str, duration: int, connections: int, script: str | None = None) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        if script:
            f.write(script)
    try:
        if script:
            cmd += ["-s", f.name]
        out = subprocess.run(
            [*cmd, url], capture_output=True, text=True, timeout=duration + 60
        ).stdout
    finally:
        os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    return {
        "rps": rps,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
    }


def seed(port: int, n: int = 2000) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    items = [{"expression_type": "constant", "expression_code": str(-i - 1)} for i in range(n)]
    conn.request(
        "POST",
        f"{API}/substrates/batch",
        json.dumps({"substrates": items}),
        {"content-type": "application/json"},
    )
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body["results"][n // 2]["substrate_id"]


def backends(tmp: Path, pg) -> list[tuple[str, list[str]]]:
    out = [("memory", ["--memory"]), ("sqlite", ["--data-dir", str(tmp / "sqlite")])]
    if pg is not None:
        out.append(("postgresql", ["--database-url", pg.new_database()]))
    return out


def http_figures(tmp: Path, pg, duration: int) -> None:
    print(f"\n## Writes through HTTP (wrk, {duration}s each, 2 threads)\n")
    print("| backend | creates/s (POST /substrates, c=16) | p99 ms | "
          "substrates/s (batch of 100, c=4) | p99 ms | non-2xx |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    for name, flags in backends(tmp, pg):
        srv = Server(tmp, *flags)
        try:
            base = f"http://127.0.0.1:{srv.port}"
            one = wrk(base, duration, 16, CREATE_LUA.replace("PREFIX", "1"))
            many = wrk(base, duration, 4, BATCH_LUA.replace("PREFIX", "2"))
        finally:
            srv.stop()
        print(f"| {name} | {one['rps']:,.0f} | {one['p99_ms']:.1f} | {many['rps'] * 100:,.0f} | "
              f"{many['p99_ms']:.1f} | {one['non_2xx'] + many['non_2xx']} |", flush=True)  # fmt: skip

    print(f"\n## Reads through HTTP: GET /substrates/{{id}} (wrk, {duration}s, c=64)\n")
    print("| backend | workers | reads/s | p99 ms |")
    print("|---|---:|---:|---:|")
    runs = [(n, f, 1) for n, f in backends(tmp / "reads", pg)] + [
        ("sqlite", ["--data-dir", str(tmp / "reads" / "sqlite")], 2)
    ]
    for name, flags, workers in runs:
        srv = Server(tmp, *flags, "--workers", str(workers))
        try:
            sid = seed(srv.port) if workers == 1 or name != "sqlite" else _existing(srv.port)
            fig = wrk(f"http://127.0.0.1:{srv.port}{API}/substrates/{sid}", duration, 64)
        finally:
            srv.stop()
        print(f"| {name} | {workers} | {fig['rps']:,.0f} | {fig['p99_ms']:.1f} |", flush=True)


def _existing(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"{API}/substrates?limit=1")
    body = json.loads(conn.getresponse().read())
    conn.close()
    return body["substrates"][0]["substrate_id"]


def startup(tmp: Path, n: int) -> None:
    import bfx
    from bfx.rows import RelationshipRow, SubstrateRow

    data = tmp / "startup"
    print(f"\n## Start-up of a SQLite store with {n:,} substrates and {3 * n:,} relationships\n")
    t0 = time.perf_counter()
    now = 1_700_000_000_000_000
    with bfx.Registry(data_dir=data) as reg:
        engine = reg.engine
        ids: list[int] = []
        for start in range(0, n, 50_000):
            rows = [SubstrateRow(None, "lambda", f"lambda x: x + {i}", f"lambda x: x + {i}",
                     b'{"name":"s%d"}' % i, now + i) for i in range(start, min(n, start + 50_000))]  # fmt: skip
            ids += engine.insert_substrates(rows)
        rnd = random.Random(1)
        for start in range(0, 3 * n, 50_000):
            rows = [RelationshipRow(None, "DEPENDENCY", ids[i // 3], ids[rnd.randrange(n)], False, b"", now + i)
                    for i in range(start, min(3 * n, start + 50_000))]  # fmt: skip
            engine.insert_relationships(rows)
        stats = reg.stats()
    build = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in data.iterdir() if p.name.startswith("bfx.db"))
    print(f"built through the store's write path in {build:,.0f} s: {stats}; "
          f"database {size / 1e6:,.0f} MB ({size / n:,.0f} B per substrate with its 3 relationships)\n")  # fmt: skip
    (data / "arena.snapshot").unlink(missing_ok=True)
    t = time.perf_counter()
    reg = bfx.Registry(data_dir=data)  # full load, then writes the snapshot
    full = time.perf_counter() - t
    reg.close()
    t = time.perf_counter()
    reg = bfx.Registry(data_dir=data)
    warm = time.perf_counter() - t
    reg.close()
    t = time.perf_counter()
    srv = Server(tmp, "--data-dir", str(data))
    serve = time.perf_counter() - t
    srv.stop()
    snap = (data / "arena.snapshot").stat().st_size
    print("| start-up | seconds |")
    print("|---|---:|")
    print(f"| full load from SQLite (no snapshot; writes one) | {full:.2f} |")
    print(f"| from the snapshot ({snap / 1e6:,.0f} MB) + log | {warm:.2f} |")
    print(f"| `bfx serve` launched until /health answers (snapshot) | {serve:.2f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--startup", type=int, default=1_000_000, help="substrates (0 skips)")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("bench_storage: wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    import pg_server

    try:
        pg = pg_server.start()
    except pg_server.Unavailable as exc:
        print(f"PostgreSQL rows skipped: {exc}")
        pg = None
    tmp = Path(tempfile.mkdtemp(prefix="bfx-bench-storage-"))
    try:
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
        http_figures(tmp, pg, args.duration)
        if args.startup:
            startup(tmp, args.startup)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
