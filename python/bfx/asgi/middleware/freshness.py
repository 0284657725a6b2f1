"""Middleware: freshness — applies what other workers and nodes wrote before this request
reads anything (read-your-writes across processes; docs/storage.md)."""

from __future__ import annotations

from typing import Any

from bfx.asgi.pipeline import Before, Call

__all__ = ["freshness"]


class freshness(Before):
    def __init__(self, registry: Any) -> None:
        self.registry = registry

    def step(self, call: Call) -> None:
        self.registry.refresh()
