"""A small router: a dict for fixed paths, a segment trie for paths with parameters.

A fixed segment always beats a parameter at the same position, and a path that exists
for some method answers 405 (with the allowed methods) rather than falling through to a
parameter route: ``GET /substrates/batch`` is a 405, not a lookup of id "batch".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bfx.api.operations import Operation
from bfx.asgi.base import path_id
from bfx.asgi.errors import MethodNotAllowedError, RouteNotFoundError

__all__ = ["Route", "Router"]


_RECENT = 4096


class Route:
    """An operation (:mod:`bfx.api.operations`) bound to the handler of the same name:
    what the router finds and the app runs. The operation's fields the request path
    reads are copied onto slots, so the hot path reads no second object."""

    __slots__ = (
        "body",
        "body_limit",
        "handler",
        "items",
        "method",
        "op",
        "param_names",
        "path",
        "query",
        "runs",
    )

    def __init__(self, op: Operation, handler: Callable[..., Any]) -> None:
        self.op = op
        self.handler = handler
        self.method = op.method
        self.path = op.path
        self.param_names = op.param_names
        #: msgspec type of the JSON body, ``bytes`` for a raw one, or None.
        self.body = op.body
        self.query = op.query
        #: "loop", "light" (a plain thread), "heavy" (the bounded heavy pool) or
        #: "write" (on the loop, awaiting its commit: ``bfx.group_commit``).
        self.runs = op.runs
        #: The body field holding a batch's items, bounded by ``max_batch_items``.
        self.items = op.items
        #: Which Settings attribute caps this route's body.
        self.body_limit = op.body_limit


class _Node:
    __slots__ = ("methods", "param", "static")

    def __init__(self) -> None:
        self.static: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.methods: dict[str, Route] = {}


class Router:
    def __init__(self, routes: Iterable[Route] = ()) -> None:
        self.routes: list[Route] = []
        self._fixed: dict[str, tuple[dict[str, Route], tuple[Any, ...]]] = {}
        self._root = _Node()
        self._recent: dict[str, tuple[dict[str, Route], tuple[Any, ...]]] = {}
        for route in routes:
            self.add(route)

    def add(self, route: Route) -> None:
        node = self._root
        for seg in route.path.split("/")[1:]:
            if seg.startswith("{"):
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:
                node = node.static.setdefault(seg, _Node())
        if route.method in node.methods:
            raise ValueError(f"duplicate route {route.method} {route.path}")
        for other in node.methods.values():
            # The ids of a path are parsed once for all its methods.
            if other.op.id_params != route.op.id_params:
                raise ValueError(f"{route.path}: its methods disagree on which parameters are ids")
        node.methods[route.method] = route
        if not route.param_names:
            self._fixed[route.path] = (node.methods, ())
        self.routes.append(route)

    def methods_for(self, path: str) -> tuple[dict[str, Route], tuple[Any, ...]] | None:
        """The routes of ``path`` by method and its parameters (ids parsed to ints), or
        None (no such path). A malformed id is a 400 ``invalid_id``."""
        found = self._fixed.get(path) or self._recent.get(path)
        if found is not None:
            return found
        segs = path.split("/")
        if segs[0] != "":
            return None
        values: list[str] = []
        node = _walk(self._root, segs, 1, values)
        if node is None:
            return None
        ids = next(iter(node.methods.values())).op.id_params
        found = (
            node.methods,
            tuple(path_id(v) if is_id else v for v, is_id in zip(values, ids, strict=True)),
        )
        # Hot paths repeat (the same substrate read or invoked again): remember the last
        # few thousand matches, ids parsed. Only matches are kept, so unknown paths (and
        # malformed ids, refused above) cannot churn it.
        if len(self._recent) >= _RECENT:
            self._recent.clear()
        self._recent[path] = found
        return found

    def match(self, method: str, path: str) -> tuple[Route, tuple[Any, ...]]:
        """The route and its parameters in template order (ids parsed to ints); 404,
        405 or 400 ``invalid_id`` errors otherwise."""
        found = self._fixed.get(path) or self._recent.get(path) or self.methods_for(path)
        if found is None:
            raise RouteNotFoundError(f"no route for {path}", {"path": path})
        methods, params = found
        route = methods.get(method)
        if route is None and method == "HEAD":
            route = methods.get("GET")
        if route is None:
            raise MethodNotAllowedError(method, allowed(methods))
        return route, params


def allowed(methods: dict[str, Route]) -> tuple[str, ...]:
    names = set(methods)
    if "GET" in names:
        names.add("HEAD")
    names.add("OPTIONS")
    return tuple(sorted(names))


def _walk(node: _Node, segs: list[str], i: int, values: list[str]) -> _Node | None:
    # Depth-first, fixed segments before the parameter, so the most specific path wins.
    if i == len(segs):
        return node if node.methods else None
    seg = segs[i]
    child = node.static.get(seg)
    if child is not None:
        found = _walk(child, segs, i + 1, values)
        if found is not None:
            return found
    if node.param is not None and seg:
        values.append(seg)
        found = _walk(node.param, segs, i + 1, values)
        if found is not None:
            return found
        values.pop()
    return None
