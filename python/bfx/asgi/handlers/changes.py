"""The change feed: a page of it, or a live stream of it (``bfx.asgi.change_stream``)."""

from __future__ import annotations

from bfx.api import types as s
from bfx.asgi.base import Response
from bfx.asgi.change_stream import open_stream
from bfx.asgi.pipeline import Input
from bfx.services import Services


def changes(svc: Services, inp: Input) -> s.ChangePage:
    return svc.changes.read(inp.query)


def changes_stream(svc: Services, inp: Input) -> Response:
    since = None if inp.query is None else inp.query.since
    return open_stream(svc.changes, since, inp.header(b"last-event-id"))
