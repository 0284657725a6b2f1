"""HTTP load benchmark: wrk against ``bfx serve`` and against a bare Granian app.

    python benches/http/run_wrk.py                 # starts both servers itself
    python benches/http/run_wrk.py --url http://127.0.0.1:8000   # a running bfx serve
    python benches/http/run_wrk.py --duration 5 --connections 64 --routes get,invoke

For each route it prints requests/s, p50 and p99 latency, non-2xx answers, and the
throughput as a fraction of the bare app measured in the same run: GET routes against
the bare app's GET, POST routes against a POST of the same invoke body to the bare app
(which reads it), each paired with a bare run just before it; and all against the bare
GET (the target is >= 70% for get and invoke). Targets are loopback only; every wrk run is bounded by --duration.
Needs ``wrk`` (Debian package ``wrk``). Figures, never assertions: this is not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
API = "/api/v1"
ROUTES = ("health", "get", "invoke", "divide", "create", "relate", "outgoing")
SEED_SUBSTRATES = 2000


@dataclass
class Figures:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        sys.exit(f"refusing a non-loopback target: {url}")
    return host, parts.port or 80


class Process:
    """A server subprocess, always stopped (SIGINT, then kill) and bounded in start-up."""

    def __init__(
        self,
        argv: list[str],
        port: int,
        health: str,
        log: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.log = log
        self._out = log.open("wb")
        # Its own process group: Granian's worker processes are stopped with it.
        self.proc = subprocess.Popen(
            argv,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                sys.exit(f"server exited early:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(OSError):
                if call("127.0.0.1", port, "GET", health)[0] == 200:
                    return
            time.sleep(0.1)
        self.stop()
        sys.exit(f"server did not start:\n{log.read_text(errors='replace')}")

    def stop(self) -> None:
        """SIGINT (a clean shutdown), then SIGKILL to the whole process group if the
        server or any of its workers is still there after 15 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        # Workers left behind by a main process that exited or hung: never orphans.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._out.close()


def _serve_flags() -> str:
    """The text of ``bfx serve --help`` (which storage flags this bfx has)."""
    out = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.stdout


def bfx_serve_argv(
    port: int, storage: str, tmp: Path, workers: int = 1, interface: str | None = None
) -> list[str]:
    """``bfx serve`` on loopback with ``storage`` "memory" (in-memory registry) or
    "sqlite" (the embedded store in a fresh directory under ``tmp``), over Granian's
    ``interface`` (None: bfx's default)."""
    argv = [
        sys.executable,
        "-m",
        "bfx.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    flags = _serve_flags()
    if storage == "memory":
        if "--memory" in flags:
            argv.append("--memory")
    elif storage == "sqlite":
        if "--data-dir" not in flags:
            sys.exit("this bfx serve has no --data-dir: cannot measure the SQLite store")
        argv += ["--data-dir", str(tmp / "bfx-data")]
    else:
        sys.exit(f"unknown storage: {storage}")
    if workers != 1:
        argv += ["--workers", str(workers)]
    if interface is not None:
        argv += ["--interface", interface]
    return argv


def clean_env() -> dict[str, str]:
    """The environment without BFX_* settings, so the flags decide."""
    return {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}


def call(host: str, port: int, method: str, path: str, body: object = None) -> tuple[int, object]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if payload else {}
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, (json.loads(data) if data else None)
    finally:
        conn.close()


def seed(host: str, port: int) -> dict[str, object]:
    """Substrates to read and invoke, a hub with edges, and many ids for new edges."""
    status, mul = call(
        host,
        port,
        "POST",
        f"{API}/substrates",
        {
            "expression_type": "lambda",
            "expression_code": "lambda x, y=2: x * y",
            "metadata": {"name": "bench-mul"},
        },
    )
    if status == 409:
        mul = {"substrate_id": mul["details"]["substrate_id"]}  # type: ignore[index]
    nonce = time.time_ns()
    items = [
        {"expression_type": "expression", "expression_code": f"x + {nonce + i}"}
        for i in range(SEED_SUBSTRATES)
    ]
    ids: list[str] = []
    for start in range(0, len(items), 500):
        _, res = call(
            host,
            port,
            "POST",
            f"{API}/substrates/batch",
            {"substrates": items[start : start + 500]},
        )
        ids += [r["substrate_id"] for r in res["results"]]  # type: ignore[index]
    hub = ids[0]
    for other in ids[1:11]:
        call(
            host,
            port,
            "POST",
            f"{API}/relationships",
            {"rel_type": "DEPENDENCY", "source_id": hub, "target_id": other},
        )
    return {"mul": mul["substrate_id"], "hub": hub, "ids": ids}  # type: ignore[index]


_POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""

_CREATE = """math.randomseed(os.time())
local n = 0
-- LuaJIT numbers are doubles printed with 14 significant digits: stay well below.
local base = math.random(1, 100000) * 1000000
request = function()
  n = n + 1
  local body = '{{"expression_type":"expression","expression_code":"x * ' .. (base + n) .. ' + 1"}}'
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
end
"""

_RELATE = """math.randomseed(os.time())
local ids = {{{ids}}}
local types = {{"DEPENDENCY","COMPOSITION","LINEAGE","SIBLING","ADJACENCY","EMBEDDING"}}
local n = math.random(0, 1000000)
request = function()
  n = n + 1
  local k = #ids
  local a = ids[(n % k) + 1]
  local b = ids[(math.floor(n / k) % k) + 1]
  local t = types[(math.floor(n / (k * k)) % #types) + 1]
  local body = '{{"rel_type":"' .. t .. '","source_id":"' .. a .. '","target_id":"' .. b .. '"}}'
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
end
"""


_INVOKE_BODY = _POST.format(body=json.dumps('{"parameters":{"x":3,"y":4}}'))
POST_ROUTES = frozenset({"invoke", "divide", "create", "relate"})


def scenarios(seeded: dict[str, object]) -> dict[str, tuple[str, str | None]]:
    """route name -> (path, lua script or None)."""
    mul, hub = seeded["mul"], seeded["hub"]
    # New edges never touch the hub, so the outgoing page stays 10 edges in every run.
    ids = ",".join(f'"{i}"' for i in seeded["ids"][11:])  # type: ignore[index]
    return {
        "health": (f"{API}/health", None),
        "get": (f"{API}/substrates/{mul}", None),
        "invoke": (f"{API}/substrates/{mul}/invoke", _INVOKE_BODY),
        "divide": (f"{API}/substrates/{mul}/divide", _POST.format(body='""')),
        "create": (f"{API}/substrates", _CREATE.format()),
        "relate": (f"{API}/relationships", _RELATE.format(ids=ids)),
        "outgoing": (f"{API}/relationships/outgoing/{hub}", None),
    }


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(
    name: str,
    url: str,
    script: str | None,
    args: argparse.Namespace,
    tmp: Path,
    duration: float | None = None,
) -> Figures:
    cmd = [
        "wrk",
        "-t",
        str(args.threads),
        "-c",
        str(args.connections),
        "-d",
        f"{max(1, round(duration or args.duration))}s",
        "--latency",
        "--timeout",
        "5s",
    ]
    if script:
        path = tmp / f"{name}.lua"
        path.write_text(script)
        cmd += ["-s", str(path)]
    cmd.append(url)
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=False, timeout=(duration or args.duration) + 30
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errs = re.search(r"Socket errors: (.*)", out)
    return Figures(
        name,
        float(rps.group(1)) if rps else 0.0,
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        int(total.group(1)) if total else 0,
        int(non2xx.group(1)) if non2xx else 0,
        errs.group(1) if errs else "",
    )


def _median(runs: list[Figures]) -> Figures:
    return sorted(runs, key=lambda f: f.rps)[len(runs) // 2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running bfx serve (loopback); default: start one")
    p.add_argument("--duration", type=int, default=5, help="seconds per route (5)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="wrk threads (1: leave a core to the server on a 2-core machine)",
    )
    p.add_argument("--routes", default=",".join(ROUTES))
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per route; the median is reported (1)"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--storage",
        choices=("memory", "sqlite"),
        default="memory",
        help="the started bfx serve's storage: in memory, or SQLite in a temporary "
        "directory (default memory)",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="Granian workers of the started bfx serve (1)"
    )
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 60:
        p.error("--duration must be 1..60 seconds")
    if not 1 <= args.repeat <= 10:
        p.error("--repeat must be 1..10")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    routes = [r for r in args.routes.split(",") if r]
    unknown = set(routes) - set(ROUTES)
    if unknown:
        p.error(f"unknown routes: {', '.join(sorted(unknown))}")

    started: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="bfx-wrk-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            bare_port = _free_port()
            bare = Process(
                [
                    sys.executable,
                    "-m",
                    "granian",
                    "--interface",
                    "asgi",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(bare_port),
                    "--workers",
                    "1",
                    "--no-ws",
                    "--log-level",
                    "warning",
                    "bare_app:app",
                ],
                bare_port,
                "/",
                tmp / "bare.log",
                cwd=HERE,
            )
            started.append(bare)
            if args.url:
                host, port = _loopback(args.url)
            else:
                host, port = "127.0.0.1", _free_port()
                started.append(
                    Process(
                        bfx_serve_argv(port, args.storage, tmp, args.workers),
                        port,
                        f"{API}/health",
                        tmp / "bfx.log",
                        env=clean_env(),
                    )
                )
            seeded = seed(host, port)
            plan = scenarios(seeded)
            base = f"http://{host}:{port}"
            # Warm both servers (first requests pay imports and allocations).
            wrk("warm", f"http://127.0.0.1:{bare_port}/", None, args, tmp, duration=1)
            wrk("warm", base + plan["get"][0], None, args, tmp, duration=1)
            bare_url = f"http://127.0.0.1:{bare_port}/"
            bare_job = {"GET": ("bare GET", None), "POST": ("bare POST", _INVOKE_BODY)}
            # The machine may be shared: each route run is paired with a run of the bare
            # app (same method) just before it, the ratio is taken per pair, and with
            # --repeat the median run and the median ratio are reported.
            runs: dict[str, list[Figures]] = {"bare GET": [], "bare POST": []}
            ratios: dict[str, list[float]] = {}
            for _ in range(args.repeat):
                for name in routes:
                    label, script = bare_job["POST" if name in POST_ROUTES else "GET"]
                    bare = wrk(label, bare_url, script, args, tmp)
                    runs[label].append(bare)
                    path, route_script = plan[name]
                    got = wrk(name, base + path, route_script, args, tmp)
                    runs.setdefault(name, []).append(got)
                    ratios.setdefault(name, []).append(got.rps / (bare.rps or float("nan")))
            results = [_median(r) for r in runs.values() if r]
        finally:
            for proc in reversed(started):
                proc.stop()

    bare_get = next((f.rps for f in results if f.name == "bare GET"), float("nan"))
    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, median of "
        f"{args.repeat}, bare app 1 Granian worker, bfx {args.workers} "
        f"({args.storage if not args.url else 'given --url'}), {os.cpu_count()} CPUs\n"
    )
    print("| route | req/s | p50 ms | p99 ms | vs bare, same method | vs bare GET | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for f in results:
        pair = ratios.get(f.name)
        same = f"{sorted(pair)[len(pair) // 2]:.0%}" if pair else "100%"
        print(
            f"| {f.name} | {f.rps:,.0f} | {f.p50_ms:.2f} | {f.p99_ms:.2f} | "
            f"{same} | {f.rps / bare_get:.0%} | "
            f"{f.non_2xx}{' ' + f.errors if f.errors else ''} |"
        )
    if args.json:
        args.json.write_text(json.dumps([f.__dict__ for f in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
