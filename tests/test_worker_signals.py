"""A worker's stop signals are not lost during its start-up (bfx.asgi.worker_signals).

In process, with this process's own SIGTERM: uvloop reads signals only while its loop
runs, so one sent while the loop is stopped reached no handler; the same for a signal a
forked worker's inherited handler took before the worker's own were in. The end-to-end
form (``bfx serve`` stopped right after it starts) is in ``tests/test_e2e_serve.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator

import pytest
import uvloop

from bfx.asgi import worker_signals


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    loop = uvloop.new_event_loop()
    try:
        yield loop
    finally:
        for sig in worker_signals.STOP_SIGNALS:
            loop.remove_signal_handler(sig)
        loop.close()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


def _run_briefly(loop: asyncio.AbstractEventLoop) -> None:
    loop.run_until_complete(asyncio.sleep(0.2))


def test_uvloop_alone_loses_a_signal_sent_while_it_is_stopped(loop):
    # What the module works around; if uvloop starts keeping them, this test says so.
    got: list[str] = []
    loop.add_signal_handler(signal.SIGTERM, got.append, "TERM")
    os.kill(os.getpid(), signal.SIGTERM)
    _run_briefly(loop)
    assert got == []


def test_a_signal_sent_while_the_loop_is_stopped_reaches_its_handler_once_it_runs(loop):
    got: list[str] = []
    loop.add_signal_handler(signal.SIGTERM, got.append, "TERM")
    worker_signals.redeliver_while_stopped(loop)
    os.kill(os.getpid(), signal.SIGTERM)
    _run_briefly(loop)
    assert got == ["TERM"]  # once: the copy uvloop kept is not handled a second time
    os.kill(os.getpid(), signal.SIGTERM)  # while running, as before
    _run_briefly(loop)
    assert got == ["TERM", "TERM"]


def test_a_signal_a_worker_took_before_its_handlers_is_sent_again(loop, monkeypatch):
    # The handler a forked worker inherits from Granian's main process, as bfx serve
    # wraps it; here "the main process" is a pid that is not this one.
    from granian import _signals

    main: list[int] = []

    class Server:
        def signal_handler_interrupt(self, signum, frame):
            main.append(signum)

    server = Server()
    monkeypatch.setattr(os, "getpid", lambda: 1)  # the wrapper remembers pid 1 as main
    assert worker_signals.keep_early_worker_signals(server)
    monkeypatch.undo()
    server.signal_handler_interrupt(signal.SIGTERM, None)  # in "a worker": noted
    assert main == []
    assert worker_signals._early == [signal.SIGTERM]

    # Granian's set_loop_signals installs the worker's handler on its loop (Granian's
    # sets a WorkerSignal, which Python cannot observe: a handler that records stands in).
    got: list[str] = []

    def set_loop_signals(loop):
        loop.add_signal_handler(signal.SIGTERM, got.append, "TERM")
        return "event"

    monkeypatch.setattr(_signals, "set_loop_signals", set_loop_signals)
    monkeypatch.setattr(worker_signals, "_worker_signal", None)
    assert worker_signals.capture_worker_signals()
    assert _signals.set_loop_signals(loop) == "event"  # the wrapped one
    assert worker_signals._worker_signal == "event"
    assert got == []  # not before the loop runs
    _run_briefly(loop)
    assert got == ["TERM"]
    assert worker_signals._early == []


def test_the_granian_hooks_this_relies_on_are_there():
    # A Granian that renamed them would make bfx serve quietly lose early signals again.
    from granian import _signals
    from granian.server.common import AbstractServer

    assert callable(_signals.set_loop_signals)
    assert callable(AbstractServer.signal_handler_interrupt)
