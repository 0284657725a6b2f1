"""What the live metrics stream costs a worker: the CPU one ``bfx serve`` worker spends
while N SSE clients read ``/api/v1/metrics/stream``, and the ticks each client got.

    python benches/http/stream_fanout.py --clients 0,50,200 --seconds 10

One worker, in memory, ``--stream-clients`` raised above the largest N, on loopback.
The worker computes the metrics document once a second whatever N is and encodes it
once; each client then costs one queue put and one send a second (docs/observability.md
"Live streams"). The clients run in this process (one event loop), so on a loaded
machine their own CPU competes with the worker's: compare the rows of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import httpx

HOST = "127.0.0.1"
STREAM = "/api/v1/metrics/stream"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def worker_pid(main: int) -> int:
    children: list[int] = []
    for task in os.listdir(f"/proc/{main}/task"):
        with open(f"/proc/{main}/task/{task}/children") as f:
            children += map(int, f.read().split())
    if len(children) != 1:
        raise RuntimeError(f"expected one worker, found {children}")
    return children[0]


async def measure(port: int, worker: int, clients: int, seconds: float) -> tuple[float, list[int]]:
    counts = [0] * clients
    url = f"http://{HOST}:{port}{STREAM}"

    async def client(i: int, http: httpx.AsyncClient) -> None:
        async with http.stream("GET", url) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("event: metrics"):
                    counts[i] += 1

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(timeout=seconds + 30, limits=limits) as http:
        tasks = [asyncio.ensure_future(client(i, http)) for i in range(clients)]
        await asyncio.sleep(2)  # every client connected and past its first tick
        start_counts = list(counts)
        before = cpu_seconds(worker)
        await asyncio.sleep(seconds)
        used = cpu_seconds(worker) - before
        got = [c - s for c, s in zip(counts, start_counts, strict=True)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return used / seconds, got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="0,50,200", help="comma-separated client counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per count")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(tmp, "serve.log"), "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "bfx.cli", "serve", "--memory", "--host", HOST,
             "--port", str(port), "--no-access-log", "--log-level", "warning",
             "--stream-clients", str(max(counts) + 10)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://{HOST}:{port}/api/v1/health", timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError("bfx serve did not start") from None
                    time.sleep(0.2)
            worker = worker_pid(proc.pid)
            print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
            print("| SSE clients | worker CPU | ticks per client in the window (min / median) |")
            print("|---:|---:|---|")
            for n in counts:
                cpu, got = asyncio.run(measure(port, worker, n, args.seconds))
                ticks = f"{min(got)} / {statistics.median(got):g}" if got else "-"
                print(f"| {n} | {100 * cpu:.1f}% | {ticks} of {args.seconds:g} s |", flush=True)
            print(f"load average after: {os.getloadavg()[0]:.2f}")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
