"""Middleware: the access log, one line per request on stderr, as text or JSON.

A line names the client, method, route template (never the raw path: ids would make
every line unique to a log indexer), status, duration, bytes sent and principal (``-``
until authentication exists). It is written straight to the file descriptor, no logging-module machinery on the hot
path, and the lines of one pass of the event loop go out in one ``write`` (a system
call per request cost more than the rest of the line), so it stays on by default
(``--no-access-log`` turns it off). A line waits at most for the end of the loop's
current pass.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import time
import weakref
from typing import Any

import msgspec

from bfx.asgi.base import Response
from bfx.asgi.pipeline import Around, Call
from bfx.budget import Cancelled

__all__ = ["AccessLog", "access_log"]

_encode = msgspec.json.encode
#: The three digits after a millisecond's point, made once: a ``:03d`` format spec
#: costs more than the rest of the number (callgrind).
_THOUSANDTHS = tuple(f"{i:03d}" for i in range(1000))
#: Lines held before a write whatever the loop does (a burst in one pass).
_BATCH = 256
#: Every access log of the process, for the one exit hook below (weakly: an app that is
#: gone, as in the tests, takes its log with it).
_LOGS: weakref.WeakSet[AccessLog] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    """What the last loop pass left, at interpreter exit."""
    for log in list(_LOGS):
        log.flush()


class AccessLog:
    def __init__(self, fmt: str = "text", fd: int = 2) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"log format must be text or json, not {fmt!r}")
        self.json = fmt == "json"
        self.fd = fd
        self._second = -1
        self._stamp = ""
        self._pending: list[bytes] = []
        _LOGS.add(self)

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
        # Whole microseconds: rounding a float to 3 places and printing it cost more than
        # the rest of the line (a correctly rounded decimal conversion, twice).
        us = round(seconds * 1_000_000)
        second = int(time.time())
        if second != self._second:  # _now(), inlined: this runs for every request
            self._now()
        if self.json:
            line = _encode(
                {
                    "ts": self._stamp,
                    "client": host,
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": us / 1000,
                    "bytes": nbytes,
                    "principal": principal,
                }
            )
            line += b"\n"
        else:
            line = (
                f'{self._stamp} {host} "{method} {route}" {status} '
                f"{us // 1000}.{_THOUSANDTHS[us % 1000]}ms {nbytes}B {principal}\n"
            ).encode()
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop in this thread: at once
                self.flush()
        elif len(pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        """Writes the lines held, in one system call."""
        if not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        # A closed or full stderr must not fail a request (try/except rather than
        # contextlib.suppress: its three frames cost more than the write).
        try:  # noqa: SIM105
            os.write(self.fd, data)
        except OSError:
            pass


class access_log(Around):
    """Writes the line when the answer is ready (a streamed one: once it is sent, with the
    bytes the adapter counted in ``call.sent``); a departed client logs 499."""

    def __init__(self, log: AccessLog) -> None:
        self.log = log

    def leave(self, call: Call, resp: Response) -> Response:
        if resp.stream is None:
            call.sent = len(resp.body)
            route = call.route
            self.log.write(
                call.client,
                call.method,
                route.path if route is not None else "-",
                resp.status,
                time.perf_counter() - call.started,
                call.sent,
                call.principal,
            )
        else:
            resp.on_sent(lambda status: _line(self.log, call, status))
        return resp

    def fail(self, call: Call, exc: BaseException) -> Response | None:
        if isinstance(exc, Cancelled):
            _line(self.log, call, 499)
        return None


def _line(log: AccessLog, call: Call, status: int) -> None:
    route = call.route.path if call.route is not None else "-"
    log.write(
        call.client,
        call.method,
        route,
        status,
        time.perf_counter() - call.started,
        call.sent,
        call.principal,
    )
