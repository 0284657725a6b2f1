"""Single creates and GETs per storage backend, side by side in one run (issue 18).

    python benches/http/create_rates.py                       # memory, sqlite, postgresql
    python benches/http/create_rates.py --duration 5 --repeat 3 --connections 64
    python benches/http/create_rates.py --backends sqlite,postgresql --routes get
    python benches/http/create_rates.py --before /tmp/old/python   # and an older tree's

One ``bfx serve`` per backend (one worker, loopback): in memory, SQLite in a fresh
directory, PostgreSQL on a throwaway server (``tests/pg_server.py``, ``fsync=off``, so
its figures are the protocol's cost, not a disk's). Each repeat runs wrk on each route
against every backend in turn, the backends' order rotating between repeats (the
machine is shared: compare within a row); the median of the repeats is reported with
each server's ratio to the first. ``create`` is ``POST /substrates`` with a new
expression each time; ``get`` is ``GET /substrates/{id}``. With ``--before TREE`` (a
``python/`` directory holding a built ``bfx``: ``git archive <commit> python | tar -x -C
/tmp/old`` and a copy of ``_core.abi3.so`` when the Rust is the same) every backend also
runs from that tree, in the same rounds; given more than once, each tree is labelled by
its parent directory's name.

Figures, never assertions: this is not a test. Needs ``wrk``; PostgreSQL's binaries
for the postgresql backend (it is left out, saying why, without them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tests"))

from run_wrk import (  # noqa: E402
    API,
    Figures,
    Process,
    _free_port,
    _median,
    bfx_serve_argv,
    clean_env,
    scenarios,
    seed,
    wrk,
)

BACKENDS = ("memory", "sqlite", "postgresql")
#: Seconds between wrk runs (see the loop).
PAUSE = 2.0
ROUTES = ("create", "get")


def _serve_argv(backend: str, port: int, tmp: Path, url: str | None) -> list[str]:
    if backend != "postgresql":
        return bfx_serve_argv(port, backend, tmp)
    argv = bfx_serve_argv(port, "memory", tmp)
    argv.remove("--memory")
    return [*argv, "--database-url", str(url)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1)")
    p.add_argument("--repeat", type=int, default=1, help="runs per route and backend (1)")
    p.add_argument("--backends", default=",".join(BACKENDS))
    p.add_argument("--routes", default=",".join(ROUTES))
    p.add_argument(
        "--before",
        type=Path,
        action="append",
        default=[],
        help="also run every backend from this python/ tree (repeatable: each tree is "
        "then labelled by its parent directory's name)",
    )
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 60 or not 1 <= args.repeat <= 10:
        p.error("--duration must be 1..60 and --repeat 1..10")
    backends = [b for b in args.backends.split(",") if b]
    routes = [r for r in args.routes.split(",") if r]
    if set(backends) - set(BACKENDS) or set(routes) - set(ROUTES) or not backends:
        p.error(f"backends among {BACKENDS}, routes among {ROUTES}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")

    pg = None
    started: list[Process] = []
    runs: dict[tuple[str, str], list[Figures]] = {}
    with tempfile.TemporaryDirectory(prefix="bfx-rates-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            if "postgresql" in backends:
                import pg_server

                try:
                    pg = pg_server.start()
                except pg_server.Unavailable as exc:
                    print(f"postgresql left out: {exc}")
                    backends.remove("postgresql")
            servers: dict[str, tuple[str, dict[str, tuple[str, str | None]]]] = {}
            trees = {
                ("before" if len(args.before) == 1 else tree.resolve().parent.name): tree
                for tree in args.before
            }
            labels = list(backends)
            for name in trees:
                labels += [f"{b} {name}" for b in backends]
            for label in labels:
                backend, _, tree = label.partition(" ")
                env = clean_env()
                if tree:
                    env["PYTHONPATH"] = str(trees[tree].resolve())
                port = _free_port()
                url = pg.new_database() if backend == "postgresql" and pg else None
                (tmp / label).mkdir()
                proc = Process(
                    _serve_argv(backend, port, tmp / label, url),
                    port,
                    f"{API}/health",
                    tmp / f"{label}.log",
                    env=env,
                )
                started.append(proc)
                base = f"http://127.0.0.1:{port}"
                servers[label] = (base, scenarios(seed("127.0.0.1", port)))
                wrk("warm", base + servers[label][1]["get"][0], None, args, tmp, duration=1)
            backends = labels
            for repeat in range(args.repeat):
                shift = repeat % len(backends)
                order = backends[shift:] + backends[:shift]
                for route in routes:
                    for backend in order:
                        base, plan = servers[backend]
                        path, script = plan[route]
                        got = wrk(route, base + path, script, args, tmp)
                        runs.setdefault((route, backend), []).append(got)
                        # A slow server is still answering wrk's last requests when wrk
                        # stops: let it finish before the next one is measured.
                        time.sleep(PAUSE)
        finally:
            for proc in reversed(started):
                proc.stop()
            if pg is not None:
                pg.stop()

    load = os.getloadavg()
    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, median of "
        f"{args.repeat}, 1 bfx worker each, {os.cpu_count()} CPUs, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
    )
    print("| route | backend | req/s | p50 ms | p99 ms | vs " + backends[0] + " | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for route in routes:
        first = _median(runs[(route, backends[0])]).rps or float("nan")
        for backend in backends:
            f = _median(runs[(route, backend)])
            print(
                f"| {route} | {backend} | {f.rps:,.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
                f"{f.rps / first:.2f} | {f.non_2xx}{' ' + f.errors if f.errors else ''} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
