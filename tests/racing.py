"""Threads racing each other over shared state: released together, and switching as
often as CPython allows, so that a step that is not atomic shows up as a lost update."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


def race(work: Callable[[int], None], threads: int) -> None:
    """Runs ``work(seed)`` for seeds ``0 .. threads - 1``, one thread each, all
    started at once with the switch interval at 1 µs; returns when all are done."""
    barrier = threading.Barrier(threads)

    def run(seed: int) -> None:
        barrier.wait()
        work(seed)

    workers = [threading.Thread(target=run, args=(seed,)) for seed in range(threads)]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(old)
