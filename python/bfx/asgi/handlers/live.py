"""The live streams (metrics over SSE and over a WebSocket) and the dashboard page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cache
from importlib import resources

from bfx.asgi import sse
from bfx.asgi.base import Response
from bfx.asgi.errors import UpgradeRequiredError
from bfx.asgi.pipeline import Input
from bfx.services import Services

_HTML = b"text/html; charset=utf-8"
# The page names its scripts and styles by hash-free paths: revalidate rather than cache.
_NO_CACHE = [(b"cache-control", b"no-cache")]


@cache
def _page() -> bytes:
    return resources.files("bfx.asgi").joinpath("static", "dashboard.html").read_bytes()


def metrics_stream(svc: Services, inp: Input) -> Response:
    ticks = svc.system.metrics_ticks()
    resp = sse.response(_events(ticks))
    _free_when_sent(resp, ticks)
    return resp


def metrics_ws(svc: Services, inp: Input) -> Response:
    upgrade = inp.header(b"upgrade")
    if upgrade is None or upgrade.strip().lower() != b"websocket":
        raise UpgradeRequiredError(
            "this route speaks WebSocket: connect with ws:// (an Upgrade: websocket handshake)",
            {"upgrade": "websocket"},
        )
    ticks = svc.system.metrics_ticks()
    resp = Response(101, b"", None, astream=ticks, websocket=True)
    _free_when_sent(resp, ticks)
    return resp


def dashboard(svc: Services, inp: Input) -> Response:
    return Response(200, _page(), _HTML, headers=_NO_CACHE)


async def _events(ticks: AsyncIterator[str]) -> AsyncIterator[sse.Event]:
    try:
        async for text in ticks:
            yield sse.Event(text, event="metrics")
    finally:
        aclose = getattr(ticks, "aclose", None)
        if aclose is not None:
            await aclose()


def _free_when_sent(resp: Response, ticks: AsyncIterator[str]) -> None:
    free = getattr(ticks, "free", None)
    if free is not None:
        resp.on_sent(lambda _status: free())
