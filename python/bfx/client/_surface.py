"""The clients' methods, made from the operation table: one per client operation (its
name), an ``iter_*`` per paged list, and the older names of ``bfx.client.Client``.

A method binds its arguments against the operation's signature (the path's ids, then
the body or query fields) and hands them to the class's ``_call`` (sync: the answer;
async: a coroutine) or ``_walk`` (sync: a generator; async: an async generator). Nothing
here is written route by route.
"""

from __future__ import annotations

from typing import Any

from bfx.api.operations import Operation
from bfx.client._wire import CLIENT_OPERATIONS, items_field, signature

__all__ = ["ALIASES", "PAGED", "AsyncOperations", "Operations", "iterator_name"]

#: Names the first ``bfx.client.Client`` used, kept working: each is the operation named.
ALIASES: dict[str, str] = {
    "create": "create_substrate",
    "get": "get_substrate",
    "delete": "delete_substrate",
    "list": "list_substrates",
    "create_many": "create_substrates",
    "relate": "create_relationship",
    "relate_many": "create_relationships",
    "relationships": "list_relationships",
    "import_": "import_records",
    "search_page": "search",
    "query_page": "query",
}

#: Paged operations and the answer field holding their items.
PAGED: dict[str, str] = {
    name: field for name, op in CLIENT_OPERATIONS.items() if (field := items_field(op))
}


def iterator_name(operation: str) -> str:
    """``list_substrates`` → ``iter_substrates``, ``pagerank`` → ``iter_pagerank``."""
    return "iter_" + operation.removeprefix("list_")


def _doc(op: Operation) -> str:
    answer = op.response.__name__ if isinstance(op.response, type) else "None"
    scope = op.scope or "none"
    return (
        f"{op.summary}.\n\n``{op.method} {op.path}`` → ``{answer}`` "
        f"(scope {scope}; the arguments are the path's ids, then the fields of "
        f"``{getattr(op.body or op.query, '__name__', 'nothing')}``)."
    )


def _method(op: Operation, asynchronous: bool) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return self._call(op, args, kwargs)

    async def coroutine(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._call(op, args, kwargs)

    if asynchronous:  # a real coroutine function, as inspect and the IDEs see it
        method = coroutine

    method.__name__ = method.__qualname__ = op.name
    method.__doc__ = _doc(op)
    method.__signature__ = signature(op)  # type: ignore[attr-defined]
    return method


def _iterator(op: Operation, field: str) -> Any:
    def walk(self: Any, *args: Any, page: int | None = None, **kwargs: Any) -> Any:
        if page is not None:  # the first client's name for the page size
            kwargs.setdefault("limit", page)
        return self._walk(op, field, args, kwargs)

    sig = signature(op)
    walk.__name__ = walk.__qualname__ = iterator_name(op.name)
    walk.__doc__ = (
        f"Every item of ``{op.name}``, page after page (``limit`` is the page size, "
        f"default 1000): the ``{field}`` of each page until ``next_cursor`` is null."
    )
    walk.__signature__ = sig.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(default=1000) if p.name == "limit" else p
            for p in sig.parameters.values()
            if p.name not in ("cursor", "offset")
        ]
    )
    return walk


class Operations:
    """Every client operation of the table as a method (installed below); ``_call``
    answers the result."""

    def _call(self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _walk(
        self, op: Operation, field: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        raise NotImplementedError


class AsyncOperations(Operations):
    """The same methods as coroutine functions; ``_call`` is a coroutine and ``_walk``
    an async generator."""


def _install(cls: type, asynchronous: bool) -> None:
    for op in CLIENT_OPERATIONS.values():
        setattr(cls, op.name, _method(op, asynchronous))
    for name, field in PAGED.items():
        setattr(cls, iterator_name(name), _iterator(CLIENT_OPERATIONS[name], field))
    for alias, name in ALIASES.items():
        setattr(cls, alias, getattr(cls, name))


_install(Operations, asynchronous=False)
_install(AsyncOperations, asynchronous=True)

# The table must not name an operation like a method of the clients themselves.
_CLASH = {"close", "aclose", "request", "export_to", "base_url"} & set(CLIENT_OPERATIONS)
if _CLASH:
    raise RuntimeError(f"operation names clash with client methods: {sorted(_CLASH)}")
