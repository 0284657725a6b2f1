"""Middleware: routing — finds the operation of the method and path (404/405 otherwise)
and answers ``OPTIONS`` with the path's methods.

Ids in the path (the operation's ``id_params``: ``{id}``, ``{rid}``, ``{src}``,
``{dst}``) reach handlers as ints, parsed by the router once per path it remembers; a
malformed one is a 400 ``invalid_id`` here, before anything else runs.
"""

from __future__ import annotations

from bfx.asgi.base import Response
from bfx.asgi.errors import RouteNotFoundError
from bfx.asgi.pipeline import Before, Call
from bfx.asgi.router import Router, allowed

__all__ = ["routing"]


class routing(Before):
    def __init__(self, router: Router) -> None:
        self.router = router

    def step(self, call: Call) -> Response | None:
        if call.method == "OPTIONS":
            return _options(self.router, call.path)
        call.route, call.params = self.router.match(call.method, call.path)
        return None


def _options(router: Router, path: str) -> Response:
    found = router.methods_for(path)
    if found is None:
        raise RouteNotFoundError(f"no route for {path}", {"path": path})
    allow = allowed(found[0])
    return Response(204, b"", None, headers=[(b"allow", ", ".join(allow).encode())])
