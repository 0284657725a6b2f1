"""Storage backends: where the registry's records live (see ``docs/storage.md``).

:func:`open_store` picks one from a locator:

* ``None``, ``"memory"`` or ``":memory:"``: in memory, nothing survives the process;
* ``"postgresql://..."`` (or ``postgres://``): a PostgreSQL database, shared by
  several bfx processes and machines;
* anything else (a path, or ``sqlite:///path``): an embedded SQLite database in that
  directory, created when missing.
"""

from __future__ import annotations

import os
from typing import Any

from bfx.storage.base import SCHEMA_VERSION, SqlStore, Store
from bfx.storage.memory import MemoryStore

__all__ = ["SCHEMA_VERSION", "MemoryStore", "SqlStore", "Store", "is_memory", "open_store"]

_MEMORY = ("memory", ":memory:", "memory://")


def is_memory(locator: Any) -> bool:
    return locator is None or (isinstance(locator, str) and locator in _MEMORY)


def open_store(locator: str | os.PathLike[str] | Store | None, **options: Any) -> Store:
    """A store from a locator (see the module's text); a Store is returned as is.

    Options go to the backend: ``synchronous`` for SQLite (``normal``/``full``),
    ``connect_timeout`` for PostgreSQL. ``create=False`` (for commands that only
    read) refuses a data directory that holds no database instead of creating one;
    a PostgreSQL database must exist in any case, and memory is always new.
    """
    if isinstance(locator, Store):
        return locator
    if is_memory(locator):
        return MemoryStore()
    text = os.fspath(locator)  # type: ignore[arg-type]
    if text.startswith(("postgresql://", "postgres://")):
        from bfx.storage.postgres import PostgresStore

        options.pop("create", None)
        return PostgresStore(text, **options)
    if text.startswith("sqlite://"):
        text = text[len("sqlite://") :]
    from bfx.storage.sqlite import SqliteStore

    return SqliteStore(text, **options)
