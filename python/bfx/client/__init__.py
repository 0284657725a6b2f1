"""Python clients of the v1 HTTP API (docs/clients.md): :class:`Client` (sync) and
:class:`AsyncClient` (asyncio), one request layer (httpx) and one retry policy.

    >>> from bfx.client import Client
    >>> with Client("http://127.0.0.1:8000") as api:              # doctest: +SKIP
    ...     s = api.create_substrate("lambda", "lambda x, y=2: x * y")
    ...     api.invoke(s.substrate_id, {"x": 21}).result
    42

Every method is an operation of the table (:mod:`bfx.api.operations`), named as the
operation: the path's ids first, then the body or query fields (positional or keyword).
Answers are the API's own types (:mod:`bfx.api.types`); ``metadata`` and
``constraints`` are the stored JSON as ``msgspec.Raw``: ``msgspec.json.decode(r.metadata)``
gives the dict. Failures raise :mod:`bfx.errors` classes with ``status`` the HTTP status
received (:class:`bfx.errors.ConnectionFailedError` when nothing was received).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bfx.client._retry import NO_RETRY, Retry
from bfx.client._surface import ALIASES, PAGED, iterator_name
from bfx.errors import HttpError as ClientError

if TYPE_CHECKING:
    from bfx.client.aio import AsyncClient
    from bfx.client.sync import Client

__all__ = [
    "ALIASES",
    "NO_RETRY",
    "PAGED",
    "AsyncClient",
    "Client",
    "ClientError",
    "Retry",
    "iterator_name",
]


def __getattr__(name: str) -> Any:
    # httpx (and, through it, its own CLI's imports) loads on first use of a client, so
    # that `bfx serve` and the other commands do not pay for it at start-up.
    if name == "Client":
        from bfx.client.sync import Client

        return Client
    if name == "AsyncClient":
        from bfx.client.aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module 'bfx.client' has no attribute {name!r}")
