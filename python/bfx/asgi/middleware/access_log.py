"""Middleware: the access log, one line per request on stderr, as text or JSON.

A line names the client, method, route template (never the raw path: ids would make
every line unique to a log indexer), status, duration, bytes sent and principal (``-``
when nobody authenticated). No logging-module machinery on the hot path: the lines of
one pass of the event loop are handed in one piece to a thread of the core that writes
them to the file descriptor (``rust/src/log_writer.rs``), so the loop makes no system
call for them and never waits for the log's reader. A reader that stops (a pipe nobody
drains, a paused terminal) costs lines, not requests: past ``--access-log-buffer``
bytes waiting (:data:`HELD_MAX` by default) lines are dropped and counted
(:attr:`AccessLog.dropped`), and a notice of how many follows once the reader is back.
It stays on by default (``--no-access-log`` turns it off). A line waits at most for the
end of the loop's current pass, plus the writer's few milliseconds of gathering.

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

from bfx._core import ACCESS_LOG_HELD_MAX, AccessLines
from bfx.asgi.base import Response
from bfx.asgi.pipeline import Around, Call
from bfx.budget import Cancelled

__all__ = [
    "DRAIN_SECONDS",
    "HELD_MAX",
    "AccessLog",
    "access_log",
    "drain_all",
    "log_line",
    "open_access_log",
]

#: Bytes of lines that may wait for a slow reader before lines are dropped, by default
#: (the core's; ``--access-log-buffer`` sets it for ``bfx serve``).
HELD_MAX = ACCESS_LOG_HELD_MAX
#: How long the exit hook, and a write outside an event loop, wait for the lines to be
#: written before giving up on a reader that is not reading.
DRAIN_SECONDS = 1.0

#: Every access log of the process, for the one exit hook below (weakly: an app that is
#: gone, as in the tests, takes its log with it).
_LOGS: weakref.WeakSet[AccessLog] = weakref.WeakSet()


@atexit.register
def drain_all(timeout: float = DRAIN_SECONDS) -> None:
    """Every access log of the process written out, each waited for at most
    ``timeout`` (a reader that is not reading): at interpreter exit, and after each
    test, so that a test's lines land in its own captured output."""
    for log in list(_LOGS):
        log.drain(timeout)


class AccessLog:
    def __init__(self, fmt: str = "text", fd: int = 2, held_max: int = HELD_MAX) -> None:
        if fmt not in ("text", "json"):
            raise ValueError(f"log format must be text or json, not {fmt!r}")
        self.json = fmt == "json"
        self.fd = fd
        #: The lines held until the loop's pass ends (the core formats them).
        self.lines = AccessLines(self.json, fd, held_max)
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
        """Hands the lines held over at the end of the loop's pass (outside a loop: at
        once, and waits for them to be written); called when the first line of a pass
        is held."""
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop in this thread: written before returning
            self.drain(DRAIN_SECONDS)

    def flush(self) -> None:
        """Hands the lines held to the writing thread (no system call here)."""
        self.lines.flush()

    def drain(self, timeout: float) -> bool:
        """Hands the lines held over and waits at most ``timeout`` seconds for every
        line to be written; true if it was."""
        self.lines.flush()
        return self.lines.drain(timeout)

    @property
    def dropped(self) -> int:
        """Lines dropped because the log's reader did not keep up."""
        return self.lines.dropped


def open_access_log(settings: Any) -> AccessLog | None:
    """The access log the settings ask for (``bfx.settings.Settings``), on stderr."""
    if not settings.access_log:
        return None
    return AccessLog(settings.log_format, held_max=settings.access_log_buffer)


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
