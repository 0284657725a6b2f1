"""Instructions the ASGI app spends per request, counted by callgrind (deterministic on a
shared machine, unlike wall-clock time).

    python benches/python/request_instructions.py                  # this tree
    python benches/python/request_instructions.py --tree /tmp/old/python
    python benches/python/request_instructions.py --access-log  # bfx serve's default
    python benches/python/request_instructions.py --auth        # an API key on each request
    python benches/python/request_instructions.py --no-metrics  # metrics and access log off
    python benches/python/request_instructions.py --tracing     # tracing on (otel extra)
    python benches/python/request_instructions.py --interface rsgi  # the RSGI adapter

Runs the in-process app (memory store; no access log unless ``--access-log``) for 200 and for 1,200 requests of
``GET /substrates/{id}``, of invoke and of create under ``valgrind --tool=callgrind`` and prints the
difference divided by 1,000: the cost of one request, start-up excluded. Needs valgrind
(Debian's ``valgrind``).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(tree: str, n: int, kind: str, mode: str, interface: str) -> None:
    sys.path.insert(0, tree)
    from bfx.asgi import App, Settings

    access_log = mode == "log"
    settings = Settings(access_log=access_log)
    if hasattr(settings, "result_cache_size"):
        # Under valgrind every evaluation is ~50x slower, so the result cache would take
        # this cheap lambda for a costly one and answer from memory: not the path a
        # request takes at native speed, where it evaluates.
        settings = Settings(access_log=access_log, result_cache_size=0)
    if mode == "auth":
        settings = Settings(access_log=False, result_cache_size=0, auth="required")
    if mode == "off":  # the metrics middleware left out too (a tree with --no-metrics)
        settings = Settings(access_log=False, result_cache_size=0, metrics=False)
    if mode == "traced":
        _trace_in_process()
    app = App(settings)
    app.startup()
    auth: list[tuple[bytes, bytes]] = []
    if mode == "auth":  # every request carries an admin API key
        from bfx.security.keys import KeyRecord, digest, new_key, now_us

        store = app.registry.store
        key_id, key = new_key()
        store.add_key(
            KeyRecord(key_id, "bench", ("admin",), digest(store.key_secret, key), now_us(), None)
        )
        auth = [(b"x-api-key", key.encode())]
    sid = app.registry.create("lambda", "lambda x, y=2: x * y").substrate_id
    body = b'{"parameters": {"x": 21}}'
    bodies = (b'{"expression_type": "constant", "expression_code": "%d"}' % i for i in range(n))
    if kind == "create":
        scope = {
            "method": "POST",
            "path": "/api/v1/substrates",
            "headers": [(b"content-type", b"application/json")],
        }
    elif kind == "get":
        scope = {"method": "GET", "path": f"/api/v1/substrates/{sid}", "headers": []}
    else:
        scope = {
            "method": "POST",
            "path": f"/api/v1/substrates/{sid}/invoke",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"25")],
        }
    scope |= {"type": "http", "query_string": b"", "client": ("127.0.0.1", 1)}
    scope["headers"] = [*scope["headers"], *auth]
    msg = {"type": "http.request", "body": body if kind != "get" else b"", "more_body": False}

    async def receive() -> dict:
        if kind == "create":  # a new substrate each time
            return {"type": "http.request", "body": next(bodies), "more_body": False}
        return msg

    async def send(_: dict) -> None:
        pass

    if interface == "rsgi":
        from bfx.asgi.rsgi import RsgiApp

        rsgi = RsgiApp(app)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        rscope = _RsgiScope(scope["method"], scope["path"], headers)
        proto = _RsgiProto(msg["body"])

        async def main() -> None:
            for _ in range(n):
                if kind == "create":  # a new substrate each time, its length declared
                    proto.body = next(bodies)
                    headers["content-length"] = str(len(proto.body))
                await rsgi.__rsgi__(rscope, proto)

    else:

        async def main() -> None:
            for _ in range(n):
                await app(scope, receive, send)

    # bfx serve's default loop: the loop's own work per suspended request (its ready
    # queue, the selector) is C there, Python on asyncio's.
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())


def _trace_in_process() -> None:
    """Tracing on, its spans handed to an exporter that drops them as each ends (so the
    count is the spans' cost in the request, not a batch thread's encoding)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    from bfx import tracing

    class Drop(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Drop()))
    tracer = provider.get_tracer("bfx")

    def setup() -> object:
        tracing.install(tracer)
        return tracer

    tracing.setup = setup  # what App.startup calls


class _RsgiScope:
    """What Granian's RSGI scope offers the adapter (its header map has ``get``)."""

    def __init__(self, method: str, path: str, headers: dict[str, str]) -> None:
        self.proto = "http"
        self.method = method
        self.path = path
        self.query_string = ""
        self.client = "127.0.0.1:1"
        self.headers = headers


class _RsgiProto:
    """The body in one await, the answer dropped: Granian's own work is not counted.

    The read suspends the request as Granian's does (a future the server completes
    later, from its thread through ``call_soon_threadsafe``; here through ``call_soon``),
    so the count includes the task going back to the loop and resuming through every
    coroutine that awaits the body."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __call__(self) -> asyncio.Future[bytes]:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        loop.call_soon(fut.set_result, self.body)
        return fut

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        pass


def _count(tree: str, n: int, kind: str, mode: str, interface: str) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--inner",
            tree,
            str(n),
            kind,
            mode,
            interface,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    return int(re.search(r"Collected : (\d+)", out).group(1))  # type: ignore[union-attr]


def main() -> int:
    if len(sys.argv) == 7 and sys.argv[1] == "--inner":
        _run(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tree", default=str(ROOT / "python"), help="python/ directory to measure")
    how = ap.add_mutually_exclusive_group()
    how.add_argument(
        "--access-log",
        action="store_true",
        help="with the access log on (its lines go to the captured stderr)",
    )
    how.add_argument(
        "--auth", action="store_true", help="with --auth required and an API key on every request"
    )
    how.add_argument(
        "--tracing",
        action="store_true",
        help="with tracing on (the otel extra; spans dropped as they end)",
    )
    how.add_argument(
        "--no-metrics",
        action="store_true",
        help="with the metrics off too (bfx serve --no-metrics --no-access-log)",
    )
    ap.add_argument(
        "--interface",
        choices=("asgi", "rsgi"),
        default="asgi",
        help="drive the app through the ASGI adapter (default) or the RSGI one",
    )
    args = ap.parse_args()
    tree = str(Path(args.tree).resolve())
    mode = (
        "log"
        if args.access_log
        else "auth"
        if args.auth
        else "off"
        if args.no_metrics
        else "traced"
        if args.tracing
        else "plain"
    )
    how = (mode, args.interface)
    for kind in ("get", "invoke", "create"):
        per_request = (_count(tree, 1200, kind, *how) - _count(tree, 200, kind, *how)) / 1000
        print(f"{kind:6} {per_request:10,.0f} instructions per request  ({args.interface}, {tree})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
