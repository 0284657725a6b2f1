"""Instructions per request of a real Granian worker, bfx against the bare apps, counted
by callgrind: the same figure on a busy machine as on a quiet one, unlike ``wrk``.

    python benches/http/worker_instructions.py                    # get and invoke
    python benches/http/worker_instructions.py --tree /tmp/old/python   # and an older bfx
    python benches/http/worker_instructions.py --requests 5000 --routes invoke

Each server (the bare app over ASGI and over RSGI, ``bfx serve --memory`` over RSGI, and
with ``--tree`` the bfx of that ``python/`` directory) runs twice under ``valgrind
--tool=callgrind``, one Granian worker, answering ``--warm`` requests of a route in the
first run and ``--warm + --requests`` in the second: the difference of the worker's two
totals, divided by ``--requests``, is one request's instructions in every thread of the
worker (Granian's Rust side, its Python glue, the event loop and the app), start-up and
shutdown excluded. The requests come from 8 keep-alive connections of a client in this
process, on loopback, and each run stops after its count.

``wrk``'s ratios (``interfaces.py``) swing by 15-20% between runs on a shared machine; this
does not, to a few hundred instructions. It is not the target itself: instructions are
not time (a thread hand-off costs time and few instructions), so a figure here says how
much work bfx adds, and ``interfaces.py`` what that work costs in throughput.

bfx runs with ``BFX_RESULT_CACHE_SIZE=0``: under valgrind every evaluation is ~50x slower,
so the result cache would take this cheap lambda for a costly one and answer from memory,
which is not the path a request takes at native speed. Needs valgrind (Debian's
``valgrind``). Figures, never assertions.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_wrk import API, _free_port, call  # noqa: E402  (a script beside this one)

ROUTES = ("get", "invoke")
CONNECTIONS = 8
_INVOKE = b'{"parameters":{"x":3,"y":4}}'
_EXPRESSION = {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"}


def _argv(server: str, port: int, tree: str | None) -> tuple[list[str], dict[str, str], Path]:
    """The command, environment and working directory of one server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    env["PYTHONHASHSEED"] = "0"  # the same dict layouts, run after run
    if server.startswith("bare"):
        interface = server.split()[1]
        target = "bare_app:app" if interface == "asgi" else "bare_app:rsgi_app"
        argv = [sys.executable, "-m", "granian", "--interface", interface, "--loop", "uvloop"]
        argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--no-ws"]
        return [*argv, "--log-level", "warning", target], env, HERE
    env["BFX_RESULT_CACHE_SIZE"] = "0"
    if tree is not None:
        env["PYTHONPATH"] = tree
    argv = [sys.executable, "-m", "bfx.cli", "serve", "--memory", "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--no-access-log", "--log-level", "warning"]
    return argv, env, HERE


def _drive(port: int, path: str, post: bool, count: int) -> int:
    """``count`` requests over CONNECTIONS keep-alive connections; returns non-200s."""
    bad = [0]
    lock = threading.Lock()

    def run(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        headers = {"content-type": "application/json"} if post else {}
        try:
            for _ in range(n):
                conn.request("POST" if post else "GET", path, _INVOKE if post else None, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    with lock:
                        bad[0] += 1
        finally:
            conn.close()

    share, extra = divmod(count, CONNECTIONS)
    threads = [
        threading.Thread(target=run, args=(share + (i < extra),)) for i in range(CONNECTIONS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bad[0]


def _worker_total(server: str, route: str, count: int, tree: str | None, tmp: Path) -> int:
    """One run under callgrind answering ``count`` requests: the worker's total."""
    port = _free_port()
    argv, env, cwd = _argv(server, port, tree)
    out = tmp / f"cg-{abs(hash((server, route, count)))}"
    for old in tmp.glob(out.name + ".*"):
        old.unlink()
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}.%p", *argv]
    log = (tmp / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        health = "/" if server.startswith("bare") else f"{API}/health"
        deadline = time.monotonic() + 300  # start-up under valgrind: tens of seconds
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{server} did not start:\n{(tmp / 'server.log').read_text()[-2000:]}")
            try:
                if call("127.0.0.1", port, "GET", health)[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        path = "/"
        if not server.startswith("bare"):
            _, created = call("127.0.0.1", port, "POST", f"{API}/substrates", _EXPRESSION)
            path = f"{API}/substrates/{created['substrate_id']}"  # type: ignore[index]
            path += "/invoke" if route == "invoke" else ""
        bad = _drive(port, path, route == "invoke", count)
        if bad:
            print(f"warning: {server} {route}: {bad} answers were not 200")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        log.close()
    totals = {}
    for f in tmp.glob(out.name + ".*"):
        pid = int(f.suffix[1:])
        m = re.search(r"^totals: (\d+)", f.read_text(errors="replace"), re.M)
        if m:
            totals[pid] = int(m.group(1))
    workers = [total for pid, total in totals.items() if pid != proc.pid]
    if len(workers) != 1:
        sys.exit(f"expected one worker's callgrind file for {server}, found {len(workers)}")
    return workers[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2500, help="requests counted (2500)")
    p.add_argument("--warm", type=int, default=500, help="requests in both runs (500)")
    p.add_argument("--routes", default=",".join(ROUTES), help="get,invoke")
    p.add_argument("--tree", help="also measure the bfx of this python/ directory")
    args = p.parse_args(argv)
    routes = [r for r in args.routes.split(",") if r]
    if not set(routes) <= set(ROUTES) or not 100 <= args.requests <= 100_000:
        p.error("--routes from get,invoke; --requests 100..100000")
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    servers = ["bare asgi", "bare rsgi", "bfx rsgi"] + (["bfx rsgi (--tree)"] if args.tree else [])
    per: dict[tuple[str, str], float] = {}
    with tempfile.TemporaryDirectory(prefix="bfx-worker-instr-") as tmpdir:
        tmp = Path(tmpdir)
        for route in routes:
            for server in servers:
                tree = args.tree if server.endswith("(--tree)") else None
                name = server.removesuffix(" (--tree)")
                low = _worker_total(name, route, args.warm, tree, tmp)
                high = _worker_total(name, route, args.warm + args.requests, tree, tmp)
                per[server, route] = (high - low) / args.requests
                print(f"{route:7} {server:18} {per[server, route]:10,.0f} instructions/request")
    print(
        f"\ninstructions per request in the Granian worker (callgrind; {args.requests} "
        f"requests over {CONNECTIONS} connections; bfx --memory --no-access-log)\n"
    )
    print("| route | " + " | ".join(servers) + " | bfx rsgi / bare asgi |")
    print("|---|" + "---:|" * (len(servers) + 1))
    for route in routes:
        cells = " | ".join(f"{per[s, route]:,.0f}" for s in servers)
        ratio = per["bfx rsgi", route] / per["bare asgi", route]
        print(f"| {route} | {cells} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
