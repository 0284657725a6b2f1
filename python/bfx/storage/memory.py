"""The in-memory store: the arena is the only copy (tests, scratch work, benchmarks)."""

from __future__ import annotations

from bfx.storage.base import Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Nothing to commit: the engine writes straight to the arena, and nothing
    survives the process."""

    def describe(self) -> str:
        return "in-memory (everything is lost when the process stops)"
