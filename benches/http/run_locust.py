"""The locust workload (locustfile.py) against a ``bfx serve`` this script starts.

    python benches/http/run_locust.py                          # 20 users, 30 s, in memory
    python benches/http/run_locust.py --storage sqlite --run-time 60s
    BFX_MIX=get=80,invoke=20 python benches/http/run_locust.py --users 50

It starts ``bfx serve`` on a free loopback port (in memory, or with the SQLite store
in a temporary directory), runs ``locust --headless`` for a bounded time, prints
locust's summary and the locustfile's markdown summary, and stops the server
(SIGINT, then kill). The exit status is locust's (non-zero when requests failed).
Figures, never assertions: this is not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

from run_wrk import API, Process, _free_port, bfx_serve_argv, clean_env  # noqa: E402


def _seconds(text: str) -> int:
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?", text.strip())
    if not m or not any(m.groups()):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 2m, 1m30s)")
    h, mi, s = (int(g or 0) for g in m.groups())
    total = h * 3600 + mi * 60 + s
    if not 1 <= total <= 3600:
        raise argparse.ArgumentTypeError("the run time must be between 1 s and 1 h")
    return total


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=20, help="concurrent users (20)")
    p.add_argument("--spawn-rate", type=float, default=10, help="users started per second (10)")
    p.add_argument("--run-time", type=_seconds, default=30, help="e.g. 30s, 2m (30s)")
    p.add_argument(
        "--storage",
        choices=("memory", "sqlite"),
        default="memory",
        help="bfx serve's storage: in memory, or SQLite in a temporary directory (memory)",
    )
    p.add_argument("--workers", type=int, default=1, help="Granian workers (1)")
    p.add_argument("--locustfile", type=Path, default=ROOT / "locustfile.py", help="(the repo's)")
    p.add_argument("--csv", type=Path, help="also write locust's CSV files with this prefix")
    args = p.parse_args(argv)
    if shutil.which("locust") is None and not _has_module("locust"):
        sys.exit("locust is not installed (pip install locust, or make bench-deps)")
    if args.users < 1:
        p.error("--users must be at least 1")

    with tempfile.TemporaryDirectory(prefix="bfx-locust-") as tmpdir:
        tmp = Path(tmpdir)
        port = _free_port()
        server = Process(
            bfx_serve_argv(port, args.storage, tmp, args.workers),
            port,
            f"{API}/health",
            tmp / "bfx.log",
            env=clean_env(),
        )
        try:
            cmd = [
                sys.executable,
                "-m",
                "locust",
                "-f",
                str(args.locustfile),
                "--headless",
                "-u",
                str(args.users),
                "-r",
                str(args.spawn_rate),
                "-t",
                f"{args.run_time}s",
                "--stop-timeout",
                "5",
                "--host",
                f"http://127.0.0.1:{port}",
                "--only-summary",
                "--loglevel",
                "WARNING",
            ]
            if args.csv:
                cmd += ["--csv", str(args.csv)]
            print(
                f"locust: {args.users} users for {args.run_time} s against bfx serve "
                f"({args.storage}, {args.workers} worker{'s' if args.workers != 1 else ''}) "
                f"on 127.0.0.1:{port}; mix {os.environ.get('BFX_MIX', '(default)')}; "
                f"{os.cpu_count()} CPUs shared by locust and the server",
                flush=True,
            )
            # Bounded: locust stops itself after --run-time; the deadline is a backstop.
            locust = subprocess.Popen(cmd)
            cpu = CpuSampler(server.proc.pid, locust.pid)
            deadline = time.monotonic() + args.run_time + 120
            while locust.poll() is None and time.monotonic() < deadline:
                cpu.sample()
                time.sleep(1.0)
            if locust.poll() is None:
                locust.kill()
            code = locust.wait()
            print(cpu.report(), flush=True)
        finally:
            server.stop()
        if code not in (0, 1):
            print((tmp / "bfx.log").read_text(errors="replace")[-3000:], file=sys.stderr)
    return code


class CpuSampler:
    """CPU use of the server's process tree and of locust, one sample a second: on a
    small machine it tells whether the server or the load generator was the limit."""

    def __init__(self, server_pid: int, locust_pid: int) -> None:
        import psutil

        self._psutil = psutil
        self.server = psutil.Process(server_pid)
        self.locust = psutil.Process(locust_pid)
        self.samples: list[tuple[float, float]] = []
        self._seen: dict[int, object] = {}

    def _tree(self, root) -> float:
        total = 0.0
        procs = [root]
        with contextlib.suppress(self._psutil.Error):
            procs += root.children(recursive=True)
        for p in procs:
            proc = self._seen.setdefault(p.pid, p)
            with contextlib.suppress(self._psutil.Error):
                total += proc.cpu_percent(None)  # type: ignore[attr-defined]
        return total

    def sample(self) -> None:
        self.samples.append((self._tree(self.server), self._tree(self.locust)))

    def report(self) -> str:
        # The first samples prime the counters and cover the spawn; drop them.
        usable = self.samples[3:] or self.samples
        if not usable:
            return "cpu: no samples"
        server = sum(s for s, _ in usable) / len(usable)
        client = sum(c for _, c in usable) / len(usable)
        return (
            f"cpu (mean of {len(usable)} one-second samples, 100% = one core): "
            f"bfx serve {server:.0f}%, locust {client:.0f}%"
        )


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
