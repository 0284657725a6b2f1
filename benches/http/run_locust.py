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
import os
import re
import shutil
import subprocess
import sys
import tempfile
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
            # Bounded: locust stops itself after --run-time; the timeout is a backstop.
            proc = subprocess.run(cmd, check=False, timeout=args.run_time + 120)
            code = proc.returncode
        finally:
            server.stop()
        if code not in (0, 1):
            print((tmp / "bfx.log").read_text(errors="replace")[-3000:], file=sys.stderr)
    return code


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    sys.exit(main())
