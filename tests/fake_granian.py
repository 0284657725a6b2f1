"""A stand-in for ``granian.Granian``: ``bfx serve`` configures it and returns, so the
CLI's flags, checks and output are tested without starting a server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import granian
import pytest


class FakeGranian:
    #: Every server ``bfx serve`` made during the test, in order.
    made: ClassVar[list[FakeGranian]] = []

    def __init__(self, target: str, **kw: Any) -> None:
        self.target = target
        self.kw = kw
        self.served = False
        FakeGranian.made.append(self)

    def serve(self) -> None:
        self.served = True


@contextlib.contextmanager
def faked(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeGranian]]:
    """Granian faked, no ``BFX_*`` variable inherited, and the environment ``bfx serve``
    writes for its workers undone afterwards."""
    FakeGranian.made = []
    monkeypatch.setattr(granian, "Granian", FakeGranian)
    for key in list(os.environ):
        if key.startswith("BFX_"):
            monkeypatch.delenv(key)
    saved = dict(os.environ)
    try:
        yield FakeGranian
    finally:
        os.environ.clear()
        os.environ.update(saved)
