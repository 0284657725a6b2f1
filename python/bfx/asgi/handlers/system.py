"""Health, metrics, the OpenAPI document and the documentation pages."""

from __future__ import annotations

from functools import cache
from importlib import resources

import bfx
from bfx.api import openapi as openapi_document
from bfx.api import types as s
from bfx.asgi.base import PREFIX, Response, encode
from bfx.asgi.errors import RouteNotFoundError
from bfx.asgi.pipeline import Input
from bfx.asgi.prometheus import wants_exposition
from bfx.services import Services

_STATIC_TYPES = {
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "swagger-init.js": b"text/javascript; charset=utf-8",
    "swagger-ui.css": b"text/css; charset=utf-8",
    "redoc.standalone.js": b"text/javascript; charset=utf-8",
    "dashboard.js": b"text/javascript; charset=utf-8",
    "dashboard.css": b"text/css; charset=utf-8",
}
_HTML = b"text/html; charset=utf-8"
# Bundles are versioned with the package; a day of caching spares reloads.
_CACHE = [(b"cache-control", b"public, max-age=86400")]
# The metrics answer depends on Accept (JSON or the Prometheus text).
_VARY = [(b"vary", b"Accept")]


@cache
def _asset(name: str) -> bytes:
    return resources.files("bfx.asgi").joinpath("static", name).read_bytes()


@cache
def _openapi_bytes() -> bytes:
    return encode(openapi_document.build(bfx.__version__))


def health(svc: Services, inp: Input) -> s.Health:
    return svc.system.health()


def health_ready(svc: Services, inp: Input) -> s.Ready:
    return svc.system.ready()


def metrics(svc: Services, inp: Input) -> Response:
    accept = inp.header(b"accept")
    if wants_exposition(accept):
        return prometheus(svc, inp)
    value = svc.system.metrics()
    return Response(200, encode(value), headers=_VARY, value=value)


def prometheus(svc: Services, inp: Input) -> Response:
    accept = (inp.header(b"accept") or b"").decode("latin-1")
    body, content_type = svc.system.prometheus(accept)
    return Response(200, body, content_type.encode("latin-1"), headers=_VARY)


def openapi(svc: Services, inp: Input) -> Response:
    return Response(200, _openapi_bytes())


def docs(svc: Services, inp: Input) -> Response:
    return Response(200, _asset("docs.html"), _HTML)


def redoc(svc: Services, inp: Input) -> Response:
    return Response(200, _asset("redoc.html"), _HTML)


def static(svc: Services, inp: Input) -> Response:
    name = inp.params[0]
    ctype = _STATIC_TYPES.get(name)
    if ctype is None:
        raise RouteNotFoundError(f"no static file {name}", {"path": f"{PREFIX}/static/{name}"})
    return Response(200, _asset(name), ctype, headers=_CACHE)
