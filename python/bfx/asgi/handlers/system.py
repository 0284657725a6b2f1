"""Health, metrics, the OpenAPI document and the documentation pages."""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import bfx
from bfx.api import openapi as openapi_document
from bfx.api import types as s
from bfx.asgi.base import PREFIX, Request, Response, encode
from bfx.asgi.errors import RouteNotFoundError
from bfx.identity import format_id

_STATIC_TYPES = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-init.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "redoc.standalone.js": b"text/javascript; charset=utf-8",
}
_HTML = b"text/html; charset=utf-8"
# Bundles are versioned with the package; a day of caching spares reloads.
_CACHE = [(b"cache-control", b"public, max-age=86400")]


def _asset(name: str) -> bytes:
    return resources.files("bfx.asgi").joinpath("static", name).read_bytes()


def health(req: Request) -> Response:
    return Response(
        200,
        encode(s.Health(status="healthy", timestamp=datetime.now(UTC), version=bfx.__version__)),
    )


def metrics(req: Request) -> Response:
    reg = req.registry
    counts = reg.stats()
    snap = req.app.metrics.snapshot()
    top = [s.TopInvoked(substrate_id=format_id(i), invocations=n) for i, n in reg.top_invoked(5)]
    return Response(
        200,
        encode(
            s.Metrics(
                total_substrates=counts["total_substrates"],
                total_relationships=counts["total_relationships"],
                version=bfx.__version__,
                most_invoked_substrates=top,
                storage=s.StorageInfo(
                    backend=reg.store.backend, durable=reg.store.durable, change_seq=reg.store.seq
                ),
                **snap,
            )
        ),
    )  # type: ignore[arg-type]


def openapi(req: Request) -> Response:
    app = req.app
    if app.openapi_bytes is None:
        app.openapi_bytes = encode(openapi_document.build(bfx.__version__))
    return Response(200, app.openapi_bytes)


def _page(name: str) -> Response:
    return Response(200, _asset(name), _HTML)


def docs(req: Request) -> Response:
    return _page("docs.html")


def redoc(req: Request) -> Response:
    return _page("redoc.html")


def static(req: Request) -> Response:
    name = req.params[0]
    ctype = _STATIC_TYPES.get(name)
    if ctype is None:
        raise RouteNotFoundError(f"no static file {name}", {"path": f"{PREFIX}/static/{name}"})
    cache = req.app.static_cache
    body = cache.get(name)
    if body is None:
        body = cache[name] = _asset(name)
    return Response(200, body, ctype, headers=_CACHE)
