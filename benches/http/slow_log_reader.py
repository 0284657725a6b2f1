"""Requests per second while nobody reads ``bfx serve``'s stderr (issue 18).

    python benches/http/slow_log_reader.py                        # this tree
    python benches/http/slow_log_reader.py --before /tmp/old/python   # and an older tree's

Starts ``bfx serve --memory`` (access log on, its default) with stderr on a pipe that is
not read while wrk runs (a stuck log collector, a terminal paused with Ctrl-S), then the
same server with stderr read as it comes, and prints each one's requests per second, how
many answered, and whether one more request is answered within 3 s afterwards. Once the
pipe's 64 KiB are full, a server that writes its log on the event loop stops answering;
one that hands the lines to a writing thread drops lines instead (``--access-log-buffer``).

Figures, never assertions: this is not a test. Needs ``wrk``; loopback only, every run
bounded by ``--duration``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_wrk import API, _free_port, clean_env  # noqa: E402


def _answers(port: int, timeout: float) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", f"{API}/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _run(tree: Path | None, read_stderr: bool, duration: int) -> tuple[float, int, bool]:
    port = _free_port()
    env = clean_env()
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    argv = [sys.executable, "-m", "bfx.cli", "serve", "--memory", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--host", "127.0.0.1", "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    assert proc.stderr is not None
    reader = None
    try:
        deadline = time.monotonic() + 60
        while not _answers(port, 1.0):
            if time.monotonic() > deadline or proc.poll() is not None:
                sys.exit("bfx serve did not start")
            time.sleep(0.1)
        if read_stderr:
            reader = threading.Thread(target=proc.stderr.read, daemon=True)
            reader.start()
        url = f"http://127.0.0.1:{port}{API}/health"
        out = subprocess.run(
            ["wrk", "-t1", "-c16", f"-d{duration}s", "--timeout", "2s", url],
            capture_output=True,
            text=True,
            timeout=duration + 30,
        ).stdout
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        total = re.search(r"(\d+) requests in", out)
        alive = _answers(port, 3.0)
        return (float(rps.group(1)) if rps else 0.0, int(total.group(1)) if total else 0, alive)
    finally:
        if reader is None:  # read now, so that its shutdown is not blocked on the pipe
            reader = threading.Thread(target=proc.stderr.read, daemon=True)
            reader.start()
        proc.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        reader.join(5)
        proc.stderr.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run (3)")
    p.add_argument("--before", type=Path, help="also run this python/ tree (PYTHONPATH)")
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 60:
        p.error("--duration must be 1..60")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.before is not None:
        trees.append(("before", args.before.resolve()))
    print(f"wrk -t1 -c16 -d{args.duration}s GET /health, bfx serve --memory, 1 worker\n")
    print("| tree | stderr | req/s | answered | answers 3 s later |")
    print("|---|---|---:|---:|---|")
    for label, tree in trees:
        for read in (True, False):
            rps, total, alive = _run(tree, read, args.duration)
            how = "read" if read else "never read"
            print(f"| {label} | {how} | {rps:,.0f} | {total:,} | {'yes' if alive else 'no'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
