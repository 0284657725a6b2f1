"""GET and invoke throughput with ``--auth required`` (an API key on every request) as a
ratio to ``--auth off``, side by side in one run (issue 14's target: >= 0.95).

    python benches/http/auth_ratio.py --repeat 4 --duration 5 [--jwt]

With ``--jwt`` a third column: the auth-required server again, called with
``Authorization: Bearer <JWT>`` from ``POST /auth/login`` instead of the key (its ratio
to auth off too).

Two ``bfx serve`` on loopback, each on its own fresh SQLite directory holding the same
substrate, one worker each, no access log (so the figures show the auth check, not
logging). Each repeat runs wrk on one route against both servers, auth off first in
even repeats and second in odd ones (the second of a pair measured slower even with
both off), so use an even ``--repeat``; the median of the repeats is reported. Both get the
same request bytes (an ``X-API-Key`` header the auth-off server ignores), so that wrk's
own cost — it shares the machine — is the same on both sides. Besides the ratio of the
two medians, ``paired`` is the median of each repeat's own ratio (the two runs of a
repeat are seconds apart, so a change in the machine's load between repeats cancels
out), and ``spread`` the lowest and highest of those. Figures, never assertions: this is
not a test. Needs ``wrk``.
"""

from __future__ import annotations

import argparse
import json
import statistics
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


_PASSWORD = "bench-password-1"


def _script(credential: str, post: bool) -> str:
    lines = []
    if post:
        lines += ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"',
                  f"wrk.body = {_INVOKE}"]  # fmt: skip
    if credential.startswith("eyJ"):  # a JWT
        lines.append(f'wrk.headers["Authorization"] = "Bearer {credential}"')
    else:
        lines.append(f'wrk.headers["X-API-Key"] = "{credential}"')
    return "\n".join(lines) + "\n"


def _login(port: int) -> str:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        body = json.dumps({"username": "bench", "password": _PASSWORD})
        conn.request("POST", f"{API}/auth/login", body, {"content-type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    if resp.status != 200:
        raise SystemExit(f"login failed: {resp.status} {answer}")
    return str(answer["access_token"])


def _prepare(data: Path, with_key: bool) -> tuple[str, str]:
    """A store holding the substrate (and an admin key): (substrate id, key); without
    one, a made-up key of the same length for the auth-off server to ignore."""
    from bfx import Registry
    from bfx.security.keys import now_us
    from bfx.security.users import new_user
    from bfx.services.keys import LocalKeys

    reg = Registry(storage=str(data))
    try:
        sid = reg.create(**_SUBSTRATE).substrate_id
        key = (
            LocalKeys(lambda: reg.store).create("bench", ["admin"]).secret
            if with_key
            else "bfx_0000000000000000_" + "A" * 43
        )
        if with_key:  # and a user, for the JWT column
            reg.store.add_user(new_user("bench", ["admin"], _PASSWORD, now_us()))
    finally:
        reg.close()
    return sid, key


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    p.add_argument("--repeat", type=int, default=4)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jwt", action="store_true", help="also a bearer-JWT column")
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
                     "--data-dir", str(data), "--auth", mode, "--jwt-ttl", "1h"]  # fmt: skip
            servers[mode] = Process(
                argv_, port, f"{API}/health", tmp / f"{mode}.log", env=clean_env()
            )
        # (column, server, credential): the JWT column reuses the auth-required server.
        columns = [("off", "off", ids["off"][1]), ("required", "required", ids["required"][1])]
        if args.jwt:
            columns.append(("jwt", "required", _login(servers["required"].port)))
        head = f"{'route':8} {'auth off rps':>13} {'auth on rps':>12} {'ratio':>6}"
        head += f" {'paired':>7} {'spread':>12}"
        print(head + (f" {'jwt rps':>9} {'ratio':>6}" if args.jwt else ""))
        for route, post in (("get", False), ("invoke", True)):
            runs: dict[str, list] = {c[0]: [] for c in columns}
            for i in range(args.repeat):
                # ABBA: whichever server runs second in a pair measured slower in
                # trials (both with auth off), so the order alternates.
                for column, mode, credential in columns if i % 2 == 0 else columns[::-1]:
                    sid = ids[mode][0]
                    path = f"{API}/substrates/{sid}" + ("/invoke" if post else "")
                    url = f"http://127.0.0.1:{servers[mode].port}{path}"
                    script = _script(credential, post)
                    runs[column].append(wrk(f"{route}-{column}", url, script, args, tmp))
            found = {c: _median(r) for c, r in runs.items()}
            off, on = found["off"], found["required"]
            line = f"{route:8} {off.rps:13.0f} {on.rps:12.0f} {on.rps / off.rps:6.3f}"
            pairs = sorted(
                b.rps / a.rps for a, b in zip(runs["off"], runs["required"], strict=True)
            )
            line += f" {statistics.median(pairs):7.3f} {pairs[0]:5.2f}-{pairs[-1]:5.2f}"
            if args.jwt:
                line += f" {found['jwt'].rps:9.0f} {found['jwt'].rps / off.rps:6.3f}"
            bad = sum(r.non_2xx for r in found.values())
            print(line + (f"  ({bad} non-2xx!)" if bad else ""))
    finally:
        for server in servers.values():
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
