"""GET and invoke throughput with ``--auth required`` (an API key on every request) as a
ratio to ``--auth off``, side by side in one run (issue 14's target: >= 0.95).

    python benches/http/auth_ratio.py --repeat 4 --duration 5

Two ``bfx serve`` on loopback, each on its own fresh SQLite directory holding the same
substrate, one worker each, no access log (so the figures show the auth check, not
logging). Each repeat runs wrk on one route against both servers, auth off first in
even repeats and second in odd ones (the second of a pair measured slower even with
both off), so use an even ``--repeat``; the median of the repeats is reported. Both get the
same request bytes (an ``X-API-Key`` header the auth-off server ignores), so that wrk's
own cost — it shares the machine — is the same on both sides. Figures, never assertions: this is not a test. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_wrk import (
    API,
    Process,
    _free_port,
    _median,
    clean_env,
    wrk,
)

_SUBSTRATE = {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"}
_INVOKE = json.dumps('{"parameters":{"x":3,"y":4}}')


def _script(key: str, post: bool) -> str:
    lines = []
    if post:
        lines += ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"',
                  f"wrk.body = {_INVOKE}"]  # fmt: skip
    lines.append(f'wrk.headers["X-API-Key"] = "{key}"')
    return "\n".join(lines) + "\n"


def _prepare(data: Path, with_key: bool) -> tuple[str, str]:
    """A store holding the substrate (and an admin key): (substrate id, key); without
    one, a made-up key of the same length for the auth-off server to ignore."""
    from bfx import Registry
    from bfx.services.keys import LocalKeys

    reg = Registry(storage=str(data))
    try:
        sid = reg.create(**_SUBSTRATE).substrate_id
        key = (
            LocalKeys(lambda: reg.store).create("bench", ["admin"]).secret
            if with_key
            else "bfx_0000000000000000_" + "A" * 43
        )
    finally:
        reg.close()
    return sid, key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bfx-auth-bench-"))
    servers = {}
    try:
        ids = {}
        for mode in ("off", "required"):
            data = tmp / mode
            ids[mode] = _prepare(data, mode == "required")
            port = _free_port()
            argv_ = [sys.executable, "-m", "bfx.cli", "serve", "--host", "127.0.0.1",
                     "--port", str(port), "--log-level", "warning", "--no-access-log",
                     "--data-dir", str(data), "--auth", mode]  # fmt: skip
            servers[mode] = Process(
                argv_, port, f"{API}/health", tmp / f"{mode}.log", env=clean_env()
            )
        print(f"{'route':8} {'auth off rps':>13} {'auth on rps':>12} {'ratio':>6}")
        for route, post in (("get", False), ("invoke", True)):
            runs: dict[str, list] = {"off": [], "required": []}
            for i in range(args.repeat):
                # ABBA: whichever server runs second in a pair measured slower in
                # trials (both with auth off), so the order alternates.
                order = list(servers.items())
                for mode, server in order if i % 2 == 0 else order[::-1]:
                    sid, key = ids[mode]
                    path = f"{API}/substrates/{sid}" + ("/invoke" if post else "")
                    url = f"http://127.0.0.1:{server.port}{path}"
                    runs[mode].append(wrk(f"{route}-{mode}", url, _script(key, post), args, tmp))
            off, on = _median(runs["off"]), _median(runs["required"])
            bad = off.non_2xx + on.non_2xx
            note = f"  ({bad} non-2xx!)" if bad else ""
            print(f"{route:8} {off.rps:13.0f} {on.rps:12.0f} {on.rps / off.rps:6.3f}{note}")
    finally:
        for server in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
