"""GET and invoke throughput of one bfx node against two on one PostgreSQL, in one run.

    python benches/http/two_nodes.py
    python benches/http/two_nodes.py --duration 5 --repeat 3 --workers 1 --connections 64

Two ``bfx serve --database-url`` (``--workers`` each, loopback) on one throwaway
PostgreSQL (``tests/pg_server.py``, ``fsync=off``), seeded through the first. For each
route, three setups, measured in turn (their order rotating between repeats):

* ``1 node``: wrk against the first node, ``--connections`` connections;
* ``2 nodes``: two wrk at once, one against each node, half the connections each; the
  figure is the sum of their requests/s (p50/p99: the worse of the two). This is what a
  balancer that costs nothing would give;
* ``2 nodes via balancer``: wrk through ``tests/balancer.py`` (round-robin per
  connection), ``--connections`` connections. It is a few lines of asyncio in this
  process: on a small machine it is the bottleneck, and it takes CPU from the nodes.

The median of the repeats is printed with each setup's ratio to ``1 node``, and the load
average. On a machine with fewer cores than the nodes' workers plus wrk, a second node
cannot add throughput: it shares the same cores. Figures, never assertions: this is not
a test. Needs ``wrk`` and PostgreSQL's binaries.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
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

ROUTES = ("get", "invoke")
SETUPS = ("1 node", "2 nodes", "2 nodes via balancer")
#: Seconds between wrk runs: a server still answering the last run's requests settles.
PAUSE = 2.0


def _node_argv(port: int, tmp: Path, url: str, workers: int) -> list[str]:
    argv = bfx_serve_argv(port, "memory", tmp, workers)
    argv.remove("--memory")
    return [*argv, "--database-url", url]


def _parallel(jobs: list[tuple[str, str | None]], args: argparse.Namespace, tmp: Path):
    """wrk against each URL at once (each with its script); their figures."""
    out: list[Figures | None] = [None] * len(jobs)

    def run(i: int, url: str, script: str | None) -> None:
        out[i] = wrk(f"part{i}", url, script, args, tmp)

    threads = [
        threading.Thread(target=run, args=(i, url, script)) for i, (url, script) in enumerate(jobs)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.duration + 60)
    return [f for f in out if f is not None]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections in all (64)")
    p.add_argument("--threads", type=int, default=1, help="threads of each wrk (1)")
    p.add_argument("--repeat", type=int, default=1, help="runs per route and setup (1)")
    p.add_argument("--workers", type=int, default=1, help="Granian workers per node (1)")
    p.add_argument("--routes", default=",".join(ROUTES))
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 60 or not 1 <= args.repeat <= 10:
        p.error("--duration must be 1..60 and --repeat 1..10")
    if not 1 <= args.workers <= 16 or not 2 <= args.connections <= 1024:
        p.error("--workers must be 1..16 and --connections 2..1024")
    routes = [r for r in args.routes.split(",") if r]
    if not routes or set(routes) - set(ROUTES):
        p.error(f"routes among {ROUTES}")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    import pg_server
    from balancer import Balancer

    try:
        pg = pg_server.start()
    except pg_server.Unavailable as exc:
        sys.exit(f"PostgreSQL is needed: {exc}")
    started: list[Process] = []
    lb = None
    runs: dict[tuple[str, str], list[Figures]] = {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bfx-nodes-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            url = pg.new_database()
            for name in ("a", "b"):
                port = _free_port()
                (tmp / name).mkdir()
                started.append(
                    Process(
                        _node_argv(port, tmp / name, url, args.workers),
                        port,
                        f"{API}/health",
                        tmp / f"{name}.log",
                        env=clean_env(),
                    )
                )
            a, b = (f"http://127.0.0.1:{proc.port}" for proc in started)
            plan = scenarios(seed("127.0.0.1", started[0].port))
            lb = Balancer([proc.port for proc in started], max_connections=4 * args.connections)
            via = f"http://127.0.0.1:{lb.port}"
            for base in (a, b):  # warm both (the second catches up with the seed here)
                wrk("warm", base + plan["get"][0], None, args, tmp, duration=1)
            half = argparse.Namespace(**{**vars(args), "connections": args.connections // 2})
            for repeat in range(args.repeat):
                shift = repeat % len(SETUPS)
                order = SETUPS[shift:] + SETUPS[:shift]
                for route in routes:
                    path, script = plan[route]
                    for setup in order:
                        if setup == "1 node":
                            got = wrk(route, a + path, script, args, tmp)
                        elif setup == "2 nodes":
                            parts = _parallel([(a + path, script), (b + path, script)], half, tmp)
                            got = Figures(
                                route,
                                sum(f.rps for f in parts),
                                max(f.p50_ms for f in parts),
                                max(f.p99_ms for f in parts),
                                sum(f.requests for f in parts),
                                sum(f.non_2xx for f in parts),
                                " ".join(f.errors for f in parts if f.errors),
                            )
                        else:
                            got = wrk(route, via + path, script, args, tmp)
                        runs.setdefault((route, setup), []).append(got)
                        time.sleep(PAUSE)
        finally:
            if lb is not None:
                lb.close()
            for proc in reversed(started):
                proc.stop()
            pg.stop()

    load = os.getloadavg()
    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s (2 nodes: two wrk "
        f"-c{args.connections // 2} at once), median of {args.repeat}, {args.workers} "
        f"Granian worker(s) per node, one PostgreSQL, {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.2f} before, {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} after\n"
    )
    print("| route | setup | req/s | p50 ms | p99 ms | vs 1 node | non-2xx |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for route in routes:
        one = _median(runs[(route, "1 node")]).rps or float("nan")
        for setup in SETUPS:
            f = _median(runs[(route, setup)])
            print(
                f"| {route} | {setup} | {f.rps:,.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
                f"{f.rps / one:.2f} | {f.non_2xx}{' ' + f.errors if f.errors else ''} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
