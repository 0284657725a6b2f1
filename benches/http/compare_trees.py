"""Throughput of two bfx source trees side by side: GET, invoke and create with wrk.

    python benches/http/compare_trees.py --before /tmp/old/python --after python --rounds 6

Each tree is a ``python/`` directory holding a built ``bfx`` package (check an old commit
out with ``git worktree add /tmp/old <commit>`` and copy a built ``_core.abi3.so`` into
``/tmp/old/python/bfx/`` when its Rust is the same). Both servers run ``bfx serve
--memory`` (or, with ``--store sqlite``, each on a fresh SQLite data directory) on
loopback, one worker each; every round runs each route against both,
alternating which goes first, and the median of the rounds is printed with the ratio
after/before. The machine is shared: ratios from one run are what to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROUTES = ("get", "invoke", "create")


def _serve(
    tree: str, port: int, extra: list[str], log: Path, data_dir: Path | None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    env["PYTHONPATH"] = tree
    store = ["--memory"] if data_dir is None else ["--data-dir", str(data_dir)]
    cmd = [sys.executable, "-m", "bfx.cli", "serve", *store, "--port", str(port)]
    return subprocess.Popen(
        [*cmd, "--log-level", "warning", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
        cwd=log.parent,
    )


def _call(port: int, method: str, path: str, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        method=method,
        data=data,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.load(resp)


def _wait(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            _call(port, "GET", "/health")
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"no server on port {port}")


def _script(tmp: Path, route: str, tag: str) -> list[str]:
    if route == "get":
        return []
    path = tmp / f"{route}.lua"
    if route == "invoke":
        text = (
            'wrk.method = "POST"\nwrk.body = \'{"parameters": {"x": 21}}\'\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    else:  # a fresh prefix per run, so that every create is new (201, never 409)
        text = (
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            "counter = 0\nrequest = function()\n  counter = counter + 1\n"
            '  return wrk.format(nil, nil, nil, \'{"expression_type": "constant", '
            f'"expression_code": "{tag}\' .. counter .. \'"}}\')\nend\n'
        )
    path.write_text(text)
    return ["-s", str(path)]


def _wrk(url: str, script: list[str], seconds: int) -> tuple[float, int]:
    out = subprocess.run(
        ["wrk", "-t1", "-c64", f"-d{seconds}s", url, *script],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(next(x for x in out.splitlines() if x.startswith("Requests/sec")).split()[1])
    bad = sum(int(x.split()[-1]) for x in out.splitlines() if "Non-2xx" in x)
    return rps, bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="python/ directory of the old tree")
    ap.add_argument("--after", default="python", help="python/ directory of the new tree")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument(
        "--after-interface",
        choices=("rsgi", "asgi"),
        help="--interface for the after tree's server only (a tree from before the RSGI "
        "adapter serves ASGI: pass asgi to compare like with like)",
    )
    ap.add_argument(
        "--store",
        choices=("memory", "sqlite"),
        default="memory",
        help="--memory, or each server on a fresh SQLite data directory of its own",
    )
    args, serve_args = (
        ap.parse_known_args()
    )  # the rest goes to both bfx serve (e.g. --no-access-log)
    trees = {"before": str(Path(args.before).resolve()), "after": str(Path(args.after).resolve())}
    ports = {"before": 18101, "after": 18102}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        procs = {
            name: _serve(
                tree,
                ports[name],
                serve_args
                + (
                    ["--interface", args.after_interface]
                    if name == "after" and args.after_interface
                    else []
                ),
                tmp / f"{name}.log",
                None if args.store == "memory" else tmp / f"{name}-data",
            )
            for name, tree in trees.items()
        }
        try:
            ids = {}
            for name, port in ports.items():
                _wait(port)
                created = _call(
                    port,
                    "POST",
                    "/substrates",
                    {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"},
                )
                ids[name] = created["substrate_id"]
            figures: dict[tuple[str, str], list[float]] = {}
            for rnd in range(args.rounds):
                order = list(ports) if rnd % 2 == 0 else list(ports)[::-1]
                for route in ROUTES:
                    for name in order:
                        base = f"http://127.0.0.1:{ports[name]}/api/v1/substrates"
                        url = {
                            "get": f"{base}/{ids[name]}",
                            "invoke": f"{base}/{ids[name]}/invoke",
                            "create": base,
                        }[route]
                        # A numeric prefix unique to this run: constants must be numbers.
                        tag = f"{rnd + 1}{ports[name]}{int(time.time() * 1000) % 100000}"
                        rps, bad = _wrk(url, _script(tmp, route, tag), args.seconds)
                        figures.setdefault((route, name), []).append(rps)
                        print(f"round {rnd} {route:6} {name:6} {rps:10.0f}/s  non-2xx {bad}")
            print()
            print("| route | before req/s | after req/s | after/before |")
            print("|---|---:|---:|---:|")
            for route in ROUTES:
                b = statistics.median(figures[(route, "before")])
                a = statistics.median(figures[(route, "after")])
                print(f"| {route} | {b:,.0f} | {a:,.0f} | {a / b:.2f} |")
        finally:
            for proc in procs.values():
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=15)
    return 0


if __name__ == "__main__":
    sys.exit(main())
