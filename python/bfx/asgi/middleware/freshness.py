"""Middleware: freshness — applies what other workers and nodes wrote before this request
reads anything (read-your-writes across processes; docs/storage.md).

Only a durable store has other writers: over the in-memory store the pipeline leaves
this step out (``assemble``).

A single create (an operation that ``runs="write"``) skips it unless authentication is
on: its write catches the arena up with the log under the write lock before checking
it (``Store.write``), and its answer is the row it wrote, so it reads nothing stale. A
pipeline's create reads its steps before that: it catches up itself
(``Engine.catch_up``). With authentication on, every request takes the step, so that a
key revoked through another process is refused here too.

SQLite's check costs microseconds and no I/O (``PRAGMA data_version``), so it runs
inline on the loop, **once per pass of the loop**: it takes a shared lock on the
write-ahead log's index and lets it go (two ``fcntl`` system calls, most of its cost),
and a request needs a check made after it arrived, not one of its own. A check marks
the loop fresh and queues a callback that marks it stale again; a request that starts
while the loop is fresh is served by that check. That is sound because the loop's ready
queue is first in, first out, and a request reaches it only after it has arrived (the
server's hand-over, ``call_soon_threadsafe`` under Granian, or the read callback of the
loop's own poll under another server): a request that arrived after the check is
queued behind the callback and finds the loop stale, so it checks again; one that
starts before the callback arrived before it, hence before the check. Requests run the
step in their first pass (nothing before it awaits). A loop that ends before the
callback runs leaves no mark behind: the mark names its loop.

PostgreSQL's is a round trip (``Store.check_is_round_trip``), so concurrent requests
share one (:class:`SharedCheck`): one check, run in a thread, serves every
request that arrived **before it was sent**; a request arriving while a check is in
flight waits for the next one, never the current one. So the check that serves a
request was sent after the request arrived, hence after every write answered before it
— read-your-writes holds exactly as with one check per request.
"""

from __future__ import annotations

import asyncio
from asyncio import get_running_loop
from collections.abc import Awaitable, Callable
from typing import Any

from bfx import switching
from bfx.asgi.pipeline import Before, Call
from bfx.switching import while_running

__all__ = ["SharedCheck", "freshness"]


class SharedCheck:
    """At most one ``refresh`` in flight per event loop; the requests that arrive
    meanwhile wait together for the next one.

    With ``probe`` (a store's ``probe_on_loop``: an async look at the committed head
    that says whether the arena is behind it), the look runs on the loop itself and a
    thread runs ``refresh`` only when another process wrote: the common check costs no
    thread hand-over."""

    def __init__(
        self, refresh: Callable[[], Any], probe: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        self._refresh = refresh
        self._probe = probe
        #: Requests waiting for the next check (arrived after the current one was sent).
        self._waiting: list[asyncio.Future[None]] = []
        self._in_flight = False
        #: Checks sent and requests served (tests and benchmarks read them).
        self.checks = 0
        self.served = 0

    def wait(self) -> Awaitable[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        if not self._in_flight:
            self._send()
        return fut

    def _send(self) -> None:
        # Taken on the loop before the thread runs the query: each of these requests
        # arrived before the check is sent.
        batch, self._waiting = self._waiting, []
        self._in_flight = True
        self.checks += 1
        self.served += len(batch)
        loop = asyncio.get_running_loop()
        job: asyncio.Future[Any]
        if self._probe is None:
            job = while_running(lambda: loop.run_in_executor(None, self._refresh))
        else:
            job = loop.create_task(self._probe_then_refresh())
        job.add_done_callback(lambda done: self._answer(batch, done))

    async def _probe_then_refresh(self) -> None:
        assert self._probe is not None
        if await self._probe():
            await switching.to_thread(self._refresh)

    def _answer(self, batch: list[asyncio.Future[None]], done: asyncio.Future[Any]) -> None:
        gone = done.cancelled()  # the loop is closing: the check was cancelled
        exc = None if gone else done.exception()
        for fut in batch:
            if fut.done():  # the request went away (cancelled) meanwhile
                continue
            if gone:
                fut.cancel()
                continue
            if exc is None:
                fut.set_result(None)
            else:
                fut.set_exception(exc)
        self._in_flight = False
        if self._waiting:
            self._send()


class freshness(Before):
    def __init__(self, store: Any, *, creates_too: bool = True) -> None:
        self.refresh = store.refresh
        self.creates_too = creates_too
        self.shared = (
            SharedCheck(store.refresh, getattr(store, "probe_on_loop", None))
            if store.check_is_round_trip
            else None
        )
        #: The loop a check was made on in its current pass, until the callback queued
        #: behind it runs (see the module's docstring); None: the next request checks.
        self.fresh_on: asyncio.AbstractEventLoop | None = None
        #: Checks made (tests and benchmarks read it).
        self.checks = 0

    def _stale(self) -> None:
        self.fresh_on = None

    def step(self, call: Call) -> Awaitable[None] | None:
        # The readiness probe asks the store itself, and answers 503 not_ready rather
        # than the storage_error a failed catch-up would be.
        route = call.route
        if route is not None and route.runs == "write" and not self.creates_too:
            return None
        if route is None or route.op.name != "health_ready":
            if self.shared is not None:
                return self.shared.wait()
            loop = get_running_loop()
            if self.fresh_on is not loop:
                self.refresh()  # raises if it fails: the loop stays stale
                self.checks += 1
                self.fresh_on = loop
                loop.call_soon(self._stale)
        return None
