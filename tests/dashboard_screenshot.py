"""``make dashboard-screenshot``: a real ``bfx serve`` (two workers, a throwaway data
directory), some traffic, the dashboard in headless Chromium, a PNG of it.

    PYTHONPATH=$PWD/python:$PWD/tests python tests/dashboard_screenshot.py --out target/dashboard.png
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import cdp
from bfx_server import Server

API = "/api/v1"


def traffic(server: Server, seconds: float) -> None:
    """Creates, invokes (some substrates more than others), misses: for ``seconds``."""
    made = []
    for n in range(12):
        status, body = server.json(
            "POST",
            f"{API}/substrates",
            {"expression_type": "lambda", "expression_code": f"lambda x=1: x * {n + 2}"},
        )
        if status == 201:
            made.append(body["substrate_id"])
    end = time.monotonic() + seconds
    i = 0
    while time.monotonic() < end:
        i += 1
        server.json(
            "POST", f"{API}/substrates/{made[i % 3 if i % 4 else i % len(made)]}/invoke", {}
        )
        if i % 9 == 0:
            server.call("GET", f"{API}/substrates/0x7")  # a 404 now and then
        # A rate that changes, so the chart has a shape.
        time.sleep(0.004 if (i // 150) % 2 else 0.012)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("target/dashboard.png"))
    parser.add_argument("--seconds", type=float, default=12.0, help="traffic before the shot")
    args = parser.parse_args()
    browser = cdp.Chromium.start()
    if browser is None:
        print("dashboard-screenshot: chromium is not installed (apt-get install chromium)")
        return 2
    with tempfile.TemporaryDirectory(prefix="bfx-dashboard-") as tmp:
        server = Server(Path(tmp), "--data-dir", str(Path(tmp) / "data"), "--workers", "2")
        try:
            browser.navigate(f"http://127.0.0.1:{server.port}{API}/dashboard")
            browser.wait_for("document.getElementById('status')?.textContent === 'live'")
            # The shot is taken while the traffic still runs: a live rate, not its end.
            worker = threading.Thread(target=traffic, args=(server, args.seconds + 3))
            worker.start()
            time.sleep(args.seconds)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.screenshot(args.out)
            worker.join()
        finally:
            browser.close()
            server.stop()
    print(f"dashboard-screenshot: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
