"""A tiny loopback HTTP server that answers from a script, for the clients' retry tests.

Each request takes the next step of the script: a status (with its headers and a bfx
error body, or ``ok_body`` for a 2xx), or ``"drop"`` (read the request, then close the
connection without answering: the client cannot know whether it was processed), or
``("slow", seconds)`` (answer 200 that much later: past a client's timeout). Once the
script is spent every request gets a 500, so a client that retries more than it should
fails the test. It records each request's method and path.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HEALTH = {"status": "healthy", "timestamp": "2026-01-01T00:00:00Z", "version": "test"}
_CODES = {429: "rate_limited", 503: "overloaded", 500: "internal_error"}


class ScriptedServer:
    def __init__(self, script: list[Any], ok_body: object = HEALTH) -> None:
        self.script = list(script)
        self.ok_body = json.dumps(ok_body).encode()
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet under pytest
                pass

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                with owner._lock:
                    owner.requests.append((self.command, self.path))
                    step = owner.script.pop(0) if owner.script else (500, {})
                if step == "drop":
                    self.close_connection = True
                    return
                if isinstance(step, tuple) and step[0] == "slow":
                    time.sleep(step[1])
                    step = 200
                status, headers = step if isinstance(step, tuple) else (step, {})
                if status < 400:
                    body = owner.ok_body
                else:
                    code = _CODES.get(status, "http_error")
                    body = json.dumps({"error": code, "message": code, "details": {}}).encode()
                # A client that gave up has closed the connection: nothing to answer.
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            do_GET = do_POST = do_DELETE = _any

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
