"""Middleware: routing — finds the operation of the method and path (404/405 otherwise),
answers ``OPTIONS`` with the path's methods, and parses the path's ids.

Ids in the path (``{id}``, ``{rid}``, ``{src}``, ``{dst}``) reach handlers as ints; a
malformed one is a 400 ``invalid_id`` here, before anything else runs.
"""

from __future__ import annotations

from bfx.asgi.base import Response, path_id
from bfx.asgi.errors import RouteNotFoundError
from bfx.asgi.pipeline import Before, Call
from bfx.asgi.router import Router, allowed

__all__ = ["ID_PARAMS", "routing"]

#: Path parameters that are 64-bit ids.
ID_PARAMS = frozenset({"id", "rid", "src", "dst"})


class routing(Before):
    def __init__(self, router: Router) -> None:
        self.router = router

    def step(self, call: Call) -> Response | None:
        if call.method == "OPTIONS":
            return _options(self.router, call.path)
        route, values = self.router.match(call.method, call.path)
        call.route = route
        if values:
            names = route.param_names
            if len(values) == 1:  # the common case, without building a comprehension
                value = values[0]
                call.params = [path_id(value) if names[0] in ID_PARAMS else value]
            else:
                call.params = [
                    path_id(v) if name in ID_PARAMS else v
                    for name, v in zip(names, values, strict=True)
                ]
        return None


def _options(router: Router, path: str) -> Response:
    found = router.methods_for(path)
    if found is None:
        raise RouteNotFoundError(f"no route for {path}", {"path": path})
    allow = allowed(found[0])
    return Response(204, b"", None, headers=[(b"allow", ", ".join(allow).encode())])
