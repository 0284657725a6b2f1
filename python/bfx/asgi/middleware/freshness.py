"""Middleware: freshness — applies what other workers and nodes wrote before this request
reads anything (read-your-writes across processes; docs/storage.md)."""

from __future__ import annotations

from typing import Any

from bfx.asgi.base import Response
from bfx.asgi.pipeline import Call, Handle, Middleware

__all__ = ["freshness"]


def freshness(registry: Any) -> Middleware:
    def wrap(next_: Handle) -> Handle:
        async def handle(call: Call) -> Response:
            registry.refresh()
            return await next_(call)

        return handle

    return wrap
