"""A Granian worker's stop signals (SIGINT, SIGTERM): none is lost, and the live
streams end before Granian's graceful shutdown starts.

Three gaps, each closed here:

* **Before the worker listens.** A forked worker inherits the main process's handler,
  which only sets an event of the main process's, until Granian installs the worker's
  own handlers on its loop (``set_loop_signals``). :func:`keep_early_worker_signals`
  makes the inherited handler note the signal in a worker, and the wrapped
  ``set_loop_signals`` (:func:`capture_worker_signals`) sends it again once the loop runs.
* **While the loop is stopped.** uvloop reads signals through the wakeup fd it sets only
  while it runs; one that arrives while it is stopped (the app's start-up, between
  Granian's runs of the loop) is kept in a set that is read only when another signal
  comes, so it was lost. :func:`redeliver_while_stopped` sends it again once the loop
  runs. (asyncio's loop keeps its wakeup fd set and needs none of this.)
* **Streams open at shutdown.** Granian waits for every open connection before it tells
  the app it stops: :func:`chain_shutdown_signals` puts the streams' end in front of
  Granian's handler.

Measured before: ``bfx serve --workers 2`` stopped right after it started lost the
SIGTERM in one worker in about half of the runs, which Granian then killed after its
10 s timeout (``tests/test_e2e_serve.py``, the SIGTERM test).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from bfx.asgi.live import CLOSE_GRACE, FLUSH_SECONDS

__all__ = [
    "capture_worker_signals",
    "chain_shutdown_signals",
    "keep_early_worker_signals",
    "redeliver_while_stopped",
]

log = logging.getLogger("bfx.asgi")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: The shutdown event Granian made for this worker's loop (``capture_worker_signals``),
#: once it has; each forked worker sets its own.
_worker_signal: Any = None
#: Stop signals this worker received before Granian's handlers for them were in place.
_early: list[int] = []


def capture_worker_signals() -> bool:
    """Keeps the event Granian's worker signal handlers set (called by ``bfx serve``
    before Granian forks its workers), and delivers what arrived before them.

    Granian installs, in each worker, a loop signal handler that sets a ``WorkerSignal``
    (``granian._signals.set_loop_signals``) before it starts the app. Under asyncio that
    handler can be read back from the loop, but uvloop keeps its handlers out of reach,
    so :func:`chain_shutdown_signals` would find nothing to chain: this wraps that
    function so the worker's event is kept here. False (and nothing done) when the
    installed Granian has no such function; the streams then end at its kill timeout."""
    try:
        from granian import _signals
    except ImportError:
        return False
    original = getattr(_signals, "set_loop_signals", None)
    if original is None or getattr(original, "_bfx_wrapped", False):
        return original is not None

    def set_loop_signals(loop: Any) -> Any:
        global _worker_signal
        _worker_signal = original(loop)
        redeliver_while_stopped(loop)
        for signum in _early:  # sent again once the loop runs: its handlers take it
            loop.call_soon(os.kill, os.getpid(), signum)
        _early.clear()
        return _worker_signal

    set_loop_signals._bfx_wrapped = True  # type: ignore[attr-defined]
    _signals.set_loop_signals = set_loop_signals
    return True


def keep_early_worker_signals(server: Any) -> bool:
    """Makes the stop handler a worker inherits from the main process note the signal
    for the worker's own handlers (called by ``bfx serve`` on its Granian server, before
    ``serve()``): :func:`capture_worker_signals`' hook sends it again once they are in.
    False (and nothing done) when the server has no such handler to wrap."""
    main_pid = os.getpid()
    interrupt = getattr(server, "signal_handler_interrupt", None)
    if interrupt is None:
        return False

    def signal_handler_interrupt(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # a worker that has no handlers of its own yet
            _early.append(signum)
            return
        interrupt(signum, frame)

    server.signal_handler_interrupt = signal_handler_interrupt
    return True


def redeliver_while_stopped(loop: asyncio.AbstractEventLoop) -> None:
    """Under uvloop: a stop signal that arrives while ``loop`` is not running is sent
    again as soon as it runs (call again after each ``add_signal_handler`` for them,
    which puts uvloop's own Python-level handler back)."""
    if not type(loop).__module__.startswith("uvloop"):
        return  # asyncio's wakeup fd is set from add_signal_handler on: nothing is lost
    for sig in STOP_SIGNALS:
        inner = signal.getsignal(sig)
        if not callable(inner):
            continue  # no handler of the loop's: the default action stands

        def handler(signum: int, frame: Any, inner: Callable[..., Any] = inner) -> None:
            inner(signum, frame)
            if not loop.is_running() and not loop.is_closed():
                loop.call_soon(os.kill, os.getpid(), signum)

        signal.signal(sig, handler)
        signal.siginterrupt(sig, False)  # as uvloop sets it: restart interrupted calls


def chain_shutdown_signals(
    loop: asyncio.AbstractEventLoop, end: Callable[[], Awaitable[bool]]
) -> bool:
    """On SIGINT or SIGTERM, awaits ``end()`` (the live streams ending, bounded by
    :data:`~bfx.asgi.live.CLOSE_GRACE`; True when some were open, which then get
    :data:`~bfx.asgi.live.FLUSH_SECONDS` more) and then runs the handler already there
    (Granian's, which starts its graceful shutdown); a second signal meanwhile runs it
    at once.

    Granian waits for every open connection before it tells the app it stops
    (``__rsgi_del__``, the ASGI lifespan), so a live stream would hold a worker until its
    kill timeout: the streams must learn of the signal first, and end (with a close
    frame on a WebSocket) while the server still carries their last bytes. Only where a
    handler is installed (a Granian worker); False elsewhere (a test's loop), which is
    left alone. The handler to chain is what Granian's sets: its worker event, kept by
    :func:`capture_worker_signals` (any loop), or else the handle asyncio keeps in
    ``loop._signal_handlers`` (asyncio has no public way to chain one)."""
    previous: dict[int, Callable[[], None]] = {}
    if _worker_signal is not None:
        worker_signal = _worker_signal
        for sig in STOP_SIGNALS:
            previous[sig] = worker_signal.set
    else:
        handlers = getattr(loop, "_signal_handlers", None) or {}
        for sig in STOP_SIGNALS:
            handle = handlers.get(sig)
            if handle is not None:
                previous[sig] = handle._run
    if not previous:
        return False
    ending: list[asyncio.Task[None]] = []

    async def end_then(then: Callable[[], None]) -> None:
        try:
            if await asyncio.wait_for(end(), CLOSE_GRACE + 1):
                await asyncio.sleep(FLUSH_SECONDS)
        except Exception:
            log.exception("ending the live streams failed")
        finally:
            then()

    for sig, then in previous.items():

        def handler(then: Callable[[], None] = then) -> None:
            if ending:
                then()
                return
            ending.append(loop.create_task(end_then(then)))

        loop.add_signal_handler(sig, handler)
    redeliver_while_stopped(loop)
    return True
