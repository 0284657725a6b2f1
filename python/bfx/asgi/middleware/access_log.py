"""The access log: one line per request on stderr, as text or JSON.

A line names the client, method, route template (never the raw path: ids would make
every line unique to a log indexer), status, duration, bytes sent and principal (``-``
until authentication exists). It is written straight to the file descriptor — one
``write`` per request, no logging-module machinery on the hot path — so it stays on
by default (``--no-access-log`` turns it off).
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import msgspec

__all__ = ["AccessLog"]

_encode = msgspec.json.encode


class AccessLog:
    def __init__(self, fmt: str = "text", fd: int = 2) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"log format must be text or json, not {fmt!r}")
        self.json = fmt == "json"
        self.fd = fd
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        # Formatting a time costs more than the rest of the line: once a second.
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._stamp

    def write(
        self,
        client: Any,
        method: str,
        route: str,
        status: int,
        seconds: float,
        nbytes: int,
        principal: str = "-",
    ) -> None:
        host = client[0] if client else "-"
        ms = round(seconds * 1000.0, 3)
        if self.json:
            line = _encode(
                {
                    "ts": self._now(),
                    "client": host,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": ms,
                    "bytes": nbytes,
                    "principal": principal,
                }
            )
        else:
            text = f'{self._now()} {host} "{method} {route}" {status} {ms}ms {nbytes}B {principal}'
            line = text.encode()
        # A closed or full stderr must not fail the request.
        with contextlib.suppress(OSError):
            os.write(self.fd, line + b"\n")
