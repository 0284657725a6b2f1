"""Middleware: the access log, one line per request on stderr, as text or JSON.

A line names the client, method, route template (never the raw path: ids would make
every line unique to a log indexer), status, duration, bytes sent and principal (``-``
when nobody authenticated). It is written straight to the file descriptor, no
logging-module machinery on the hot path, and the lines of one pass of the event loop
go out in one ``write`` (a system call per request cost more than the rest of the line),
so it stays on by default (``--no-access-log`` turns it off). A line waits at most for
the end of the loop's current pass.

The core's ``AccessLines`` formats and holds the lines: in Python the f-string and the
duration's formatting cost more than the rest of the request's bookkeeping (callgrind).
With the metrics on, this middleware is not in the chain: the metrics middleware writes
the line in the same call into the core that counts the request
(:mod:`bfx.asgi.middleware.metrics`).
"""

from __future__ import annotations

import asyncio
import atexit
import time
import weakref
from typing import Any

from bfx._core import AccessLines
from bfx.asgi.base import Response
from bfx.asgi.pipeline import Around, Call
from bfx.budget import Cancelled

__all__ = ["AccessLog", "access_log", "log_line"]

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
        #: The lines held until the loop's pass ends (the core formats them).
        self.lines = AccessLines(self.json, fd)
        _LOGS.add(self)

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
        if self.lines.push(client, method, route, status, seconds, nbytes, principal):
            self.flush_soon()

    def flush_soon(self) -> None:
        """Writes the lines held at the end of the loop's pass (at once outside a loop);
        called when the first line of a pass is held."""
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop in this thread: at once
            self.flush()

    def flush(self) -> None:
        """Writes the lines held, in one system call."""
        self.lines.flush()


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
            _when_sent(self.log, call, resp)
        return resp

    def fail(self, call: Call, exc: BaseException) -> Response | None:
        if isinstance(exc, Cancelled):
            log_line(self.log, call, 499)
        return None


def _when_sent(log: AccessLog, call: Call, resp: Response) -> None:
    # Its own function: a lambda in leave() would make ``call`` a closure cell there,
    # built on every request.
    resp.on_sent(lambda status: log_line(log, call, status))


def log_line(log: AccessLog, call: Call, status: int) -> None:
    """The line of a request that ended with ``status`` now (streams, departed clients)."""
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
