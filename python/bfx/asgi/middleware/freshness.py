"""Middleware: freshness — applies what other workers and nodes wrote before this request
reads anything (read-your-writes across processes; docs/storage.md).

Only a durable store has other writers: over the in-memory store the pipeline leaves
this step out (``assemble``)."""

from __future__ import annotations

from typing import Any

from bfx.asgi.pipeline import Before, Call

__all__ = ["freshness"]


class freshness(Before):
    def __init__(self, store: Any) -> None:
        self.refresh = store.refresh

    def step(self, call: Call) -> None:
        # The readiness probe asks the store itself, and answers 503 not_ready rather
        # than the storage_error a failed catch-up would be.
        route = call.route
        if route is None or route.op.name != "health_ready":
            self.refresh()
