"""The handlers, one function per operation, named as the operation (bfx.api.operations).

:func:`bind` pairs every operation with its handler, and refuses to start when one lacks
a handler or a handler names no operation: the table and the code cannot drift apart.
"""

from __future__ import annotations

import inspect

from bfx.api.operations import BY_NAME, OPERATIONS
from bfx.asgi.handlers import (
    auth,
    changes,
    graph,
    keys,
    live,
    relationships,
    substrates,
    system,
    transfer,
    versions,
)
from bfx.asgi.router import Route

__all__ = ["bind"]

MODULES = (system, live, keys, auth, substrates, relationships, transfer, graph, versions, changes)


def bind() -> list[Route]:
    found = {}
    for module in MODULES:
        for name, fn in vars(module).items():
            if inspect.isfunction(fn) and fn.__module__ == module.__name__ and name in BY_NAME:
                if name in found:
                    raise RuntimeError(f"two handlers for operation {name}")
                found[name] = fn
    missing = [op.name for op in OPERATIONS if op.name not in found]
    if missing:
        raise RuntimeError(f"operations without a handler: {', '.join(missing)}")
    return [Route(op, found[op.name]) for op in OPERATIONS]
