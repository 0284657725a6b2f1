"""bfx over RSGI and over ASGI against the bare Granian app over each, in one run.

    python benches/http/interfaces.py                         # get and invoke, 3 rounds
    python benches/http/interfaces.py --rounds 5 --duration 5 --connections 64

Starts four servers on loopback, one Granian worker each: the bare yardstick
(``bare_app.py``) over ASGI and over RSGI, and ``bfx serve --memory`` with
``--interface rsgi`` and ``--interface asgi``. Every round runs each route (``get``:
``GET /substrates/{id}``; ``invoke``: ``POST /substrates/{id}/invoke``; the bare apps
answer a GET, or read a POST of the same body) against all four, in an order that
rotates from round to round, and the median round is printed with the ratios to the
bare ASGI app (the target of DESIGN §11: bfx over RSGI >= 1.0x it). ``--loop`` (uvloop,
``bfx serve``'s default, or asyncio) is every server's event loop. Needs ``wrk``.
Figures, never assertions: the machine is shared, so only ratios from one run compare.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run_wrk import (  # noqa: E402  (a script beside this one, not a package)
    _INVOKE_BODY,
    API,
    Process,
    _free_port,
    bfx_serve_argv,
    clean_env,
    scenarios,
    seed,
    wrk,
)

ROUTES = ("get", "invoke")
SERVERS = ("bare asgi", "bare rsgi", "bfx rsgi", "bfx asgi")


def _bare(interface: str, tmp: Path, loop: str) -> Process:
    port = _free_port()
    target = "bare_app:app" if interface == "asgi" else "bare_app:rsgi_app"
    argv = [sys.executable, "-m", "granian", "--interface", interface, "--loop", loop]
    argv += ["--host", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", "--no-ws", "--log-level", "warning", target]
    return Process(argv, port, "/", tmp / f"bare-{interface}.log", cwd=HERE)


def _bfx(interface: str, tmp: Path, access_log: bool, loop: str) -> Process:
    port = _free_port()
    argv = [*bfx_serve_argv(port, "memory", tmp, interface=interface), "--loop", loop]
    if not access_log:
        argv.append("--no-access-log")
    return Process(argv, port, f"{API}/health", tmp / f"bfx-{interface}.log", env=clean_env())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=4, help="seconds per wrk run (4)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="wrk threads (1 on 2 cores)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the median is shown (3)")
    p.add_argument(
        "--no-access-log", action="store_true", help="bfx without its access log (on by default)"
    )
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="every server's event loop (uvloop, bfx serve's default)",
    )
    args = p.parse_args(argv)
    if not 1 <= args.duration <= 60 or not 1 <= args.rounds <= 15:
        p.error("--duration 1..60 and --rounds 1..15")
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install wrk)")
    started: list[Process] = []
    rps: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bfx-interfaces-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            servers = {
                "bare asgi": _bare("asgi", tmp, args.loop),
                "bare rsgi": _bare("rsgi", tmp, args.loop),
            }
            started += servers.values()
            for interface in ("rsgi", "asgi"):
                servers[f"bfx {interface}"] = _bfx(
                    interface, tmp, not args.no_access_log, args.loop
                )
                started.append(servers[f"bfx {interface}"])
            urls: dict[tuple[str, str], tuple[str, str | None]] = {}
            for name, proc in servers.items():
                base = f"http://127.0.0.1:{proc.port}"
                if name.startswith("bfx"):
                    plan = scenarios(seed("127.0.0.1", proc.port))
                    for route in ROUTES:
                        urls[name, route] = (base + plan[route][0], plan[route][1])
                else:
                    urls[name, "get"] = (base + "/", None)
                    urls[name, "invoke"] = (base + "/", _INVOKE_BODY)
                wrk("warm", urls[name, "get"][0], None, args, tmp, duration=1)
            for r in range(args.rounds):
                order = SERVERS[r % 4 :] + SERVERS[: r % 4]
                for route in ROUTES:
                    for name in order:
                        url, script = urls[name, route]
                        got = wrk(f"{name}-{route}".replace(" ", "-"), url, script, args, tmp)
                        if got.non_2xx or got.errors:
                            print(f"warning: {name} {route}: {got.non_2xx} non-2xx {got.errors}")
                        rps.setdefault((name, route), []).append(got.rps)
        finally:
            for proc in reversed(started):
                proc.stop()

    print(
        f"\nwrk -t{args.threads} -c{args.connections} -d{args.duration}s, median of "
        f"{args.rounds} rounds, 1 Granian worker each, bfx --memory"
        f"{' --no-access-log' if args.no_access_log else ' (access log on, to a file)'}\n"
    )
    print(f"event loop: {args.loop}")
    print("| route | " + " | ".join(SERVERS) + " | bfx rsgi / bare asgi | bfx asgi / bare asgi |")
    print("|---|" + "---:|" * (len(SERVERS) + 2))
    for route in ROUTES:
        med = {name: statistics.median(rps[name, route]) for name in SERVERS}
        # The ratio of each round's pair, then the median: rounds share the machine's mood.
        ratio = {
            name: statistics.median(
                a / b for a, b in zip(rps[name, route], rps["bare asgi", route], strict=True)
            )
            for name in ("bfx rsgi", "bfx asgi")
        }
        cells = " | ".join(f"{med[name]:,.0f}" for name in SERVERS)
        print(f"| {route} | {cells} | {ratio['bfx rsgi']:.2f}x | {ratio['bfx asgi']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
