"""The GIL switch interval of a server worker, set by what runs beside its event loop.

CPython makes the thread holding the GIL hand it over once another thread has waited
for it this long (``sys.setswitchinterval``; 5 ms by default). Two kinds of thread
share a worker's GIL with the event loop, and they want opposite intervals:

* **bfx's own threads at work** (a heavy job such as an import, a batch or a graph
  call; a light operation; a group of creates or a freshness check on a store thread).
  A heavy thread holds the GIL for the whole interval each time the loop asks for it
  back: 1 ms instead of 5 ms cut ``/health``'s median during a 100k-record import from
  5.8 to 1.8 ms (p99 37 -> 11 ms), at no cost to the import
  (``benches/python/import_stall.py``).
* **Granian's thread** hands each request, and each request body, to the loop. With
  nothing else running, 1 ms made the loop give the GIL up five times as often while
  it was busy answering: invoke throughput was 0.78x the bare ASGI app against 0.88x at
  5 ms, GET 0.99x against 1.03x (``benches/http/interfaces.py``, docs/http.md, Speed).

So a worker runs at :data:`BUSY` while any of its own threads is at work
(:func:`enter` / :func:`leave`, counted across the process) and at :data:`IDLE`
otherwise. Only a server worker turns this on (:func:`install`, from
``bfx.asgi.create_app``); in a library process ``enter`` and ``leave`` change nothing.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = [
    "BUSY",
    "IDLE",
    "at_work",
    "enter",
    "install",
    "leave",
    "to_thread",
    "uninstall",
    "while_running",
]

#: Seconds, while a thread of bfx's own runs beside the loop.
BUSY = 0.001
#: Seconds otherwise (CPython's default).
IDLE = 0.005

T = TypeVar("T")
F = TypeVar("F", bound=Any)  # a future: asyncio's or concurrent.futures'

_lock = threading.Lock()
_installed = False
_at_work = 0


def install() -> None:
    """Turn the policy on for this process (a server worker): idle to begin with."""
    global _installed
    with _lock:
        _installed = True
        sys.setswitchinterval(BUSY if _at_work else IDLE)


def uninstall() -> None:
    """Turn it off again and restore CPython's default (tests)."""
    global _installed
    with _lock:
        _installed = False
        sys.setswitchinterval(IDLE)


def enter() -> None:
    """A thread of bfx's own starts work beside the loop (the first one: :data:`BUSY`)."""
    global _at_work
    with _lock:
        _at_work += 1
        if _at_work == 1 and _installed:
            sys.setswitchinterval(BUSY)


def leave() -> None:
    """That work is done (the last one: :data:`IDLE`)."""
    global _at_work
    with _lock:
        if _at_work == 0:  # an unmatched leave (a bug): never below idle
            return
        _at_work -= 1
        if _at_work == 0 and _installed:
            sys.setswitchinterval(IDLE)


def while_running(submit: Callable[[], F]) -> F:
    """``submit()`` hands work to a thread and returns its future: counted at work from
    before it is handed over (the thread may start at once) until that future is done."""
    enter()
    try:
        future = submit()
    except BaseException:
        leave()
        raise
    future.add_done_callback(_left)
    return future


async def to_thread(fn: Callable[..., T], /, *args: Any) -> T:
    """``asyncio.to_thread``, counted at work until it is answered."""
    enter()
    try:
        return await asyncio.to_thread(fn, *args)
    finally:
        leave()


def _left(_: Any) -> None:
    leave()


def at_work() -> int:
    """How many threads are at work now (tests, diagnostics)."""
    return _at_work
