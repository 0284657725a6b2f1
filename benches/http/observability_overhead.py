"""What observability costs in throughput: GET and invoke with everything off, with the
metrics and access log on (bfx serve's default) and with tracing on too, as ratios to
all off, in one run (issue 15's target: >= 0.9 for metrics + access log).

    python benches/http/observability_overhead.py --rounds 4 --duration 3

Three ``bfx serve --memory`` on loopback, one worker each, holding the same substrate:

- ``off``: ``--no-metrics --no-access-log``, no tracing;
- ``default``: metrics and access log on (the log goes to a file, as a service's would);
- ``traced``: the default plus ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a loopback
  OTLP/HTTP receiver in this process that accepts every batch and discards it (so the
  figure is the spans' cost in the server, not a collector's).

Each round runs wrk on one route against all three, the order rotating round by round
(whichever runs later in a round tends to measure slower on a shared machine); the
median of the rounds is printed with the ratios default/off and traced/off. Figures,
never assertions: this is not a test. Needs ``wrk`` and, for the traced column, the
``otel`` extra.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run_wrk import API, Process, _free_port, _median, bfx_serve_argv, call, clean_env, wrk

_SUBSTRATE = {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"}
_INVOKE = json.dumps('{"parameters":{"x":3,"y":4}}')
_POST = (
    f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {_INVOKE}\n'
)
CONFIGS = ("off", "default", "traced")


class _Discard(http.server.BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps nothing."""

    protocol_version = "HTTP/1.1"  # kept-alive, as the exporter's session expects

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _server(config: str, tmp: Path, otlp: str) -> Process:
    port = _free_port()
    argv = bfx_serve_argv(port, "memory", tmp)
    env = clean_env()
    for name in [k for k in env if k.startswith("OTEL_")]:
        del env[name]
    if config == "off":
        argv += ["--no-metrics", "--no-access-log"]
    elif config == "traced":
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp
    server = Process(argv, port, f"{API}/health", tmp / f"{config}.log", env=env)
    if config == "traced" and "tracing: spans exported" not in server.log.read_text():
        server.stop()
        sys.exit(f"the traced server does not trace:\n{server.log.read_text()}")
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=3, help="seconds per wrk run (3)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Discard)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{receiver.server_address[1]}"
    tmp = Path(tempfile.mkdtemp(prefix="bfx-observability-bench-"))
    servers: dict[str, Process] = {}
    try:
        for config in CONFIGS:
            servers[config] = _server(config, tmp, otlp)
        sid = ""
        for server in servers.values():
            status, body = call("127.0.0.1", server.port, "POST", f"{API}/substrates", _SUBSTRATE)
            if status != 201:
                sys.exit(f"could not create the substrate: {status} {body}")
            sid = body["substrate_id"]  # type: ignore[index]
        print(f"load average before: {os.getloadavg()[0]:.2f} (2-core machine: see uptime)")
        print(
            f"{'route':8} {'off rps':>9} {'default rps':>12} {'traced rps':>11} "
            f"{'default/off':>12} {'traced/off':>11}"
        )
        for route, script in (("get", None), ("invoke", _POST)):
            path = f"{API}/substrates/{sid}" + ("/invoke" if script else "")
            runs: dict[str, list] = {c: [] for c in CONFIGS}
            for i in range(args.rounds):
                shift = i % len(CONFIGS)
                for config in CONFIGS[shift:] + CONFIGS[:shift]:
                    url = f"http://127.0.0.1:{servers[config].port}{path}"
                    runs[config].append(wrk(f"{route}-{config}", url, script, args, tmp))
            found = {c: _median(r) for c, r in runs.items()}
            off = found["off"].rps or float("nan")
            bad = sum(f.non_2xx for r in runs.values() for f in r)
            print(
                f"{route:8} {found['off'].rps:9.0f} {found['default'].rps:12.0f} "
                f"{found['traced'].rps:11.0f} {found['default'].rps / off:12.3f} "
                f"{found['traced'].rps / off:11.3f}" + (f"  ({bad} non-2xx!)" if bad else "")
            )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        for server in servers.values():
            server.stop()
        receiver.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
