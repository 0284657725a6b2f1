"""Middleware: routing — finds the operation of the method and path (404/405 otherwise),
answers ``OPTIONS`` with the path's methods, and parses the path's ids.

Ids in the path (``{id}``, ``{rid}``, ``{src}``, ``{dst}``) reach handlers as ints; a
malformed one is a 400 ``invalid_id`` here, before anything else runs.
"""

from __future__ import annotations

from bfx.asgi.base import Response, path_id
from bfx.asgi.errors import RouteNotFoundError
from bfx.asgi.pipeline import Call, Handle, Middleware
from bfx.asgi.router import Router, allowed

__all__ = ["ID_PARAMS", "routing"]

#: Path parameters that are 64-bit ids.
ID_PARAMS = frozenset({"id", "rid", "src", "dst"})


def routing(router: Router) -> Middleware:
    def wrap(next_: Handle) -> Handle:
        async def handle(call: Call) -> Response:
            if call.method == "OPTIONS":
                return _options(router, call.path)
            route, values = router.match(call.method, call.path)
            call.route = route
            if values:
                call.input.params = [
                    path_id(v) if name in ID_PARAMS else v
                    for name, v in zip(route.param_names, values, strict=True)
                ]
            return await next_(call)

        return handle

    return wrap


def _options(router: Router, path: str) -> Response:
    found = router.methods_for(path)
    if found is None:
        raise RouteNotFoundError(f"no route for {path}", {"path": path})
    allow = allowed(found[0])
    return Response(204, b"", None, headers=[(b"allow", ", ".join(allow).encode())])
