"""Middleware: the request body and query string, read within their bounds and decoded
into the operation's types before any handler runs.

In order: the declared length against the body limit (413 before a byte is read), the
media type (415), the body read within the body deadline (408), its nesting depth (422
before a decoder recurses into it), the typed decode (400 malformed / 422 naming the
field), a batch's item count (413 ``too_many_items``), and the query string into the
operation's query type (422 naming the field).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, NoReturn
from urllib.parse import parse_qsl

import msgspec

from bfx import errors
from bfx._core import json_nesting_exceeds
from bfx.api.decoding import MalformedJsonError, field_error
from bfx.asgi.base import JSON
from bfx.asgi.errors import BodyTooLargeError
from bfx.asgi.middleware.body_deadline import BodyDeadlines, BodyTimeoutError
from bfx.asgi.pipeline import Before, Call, ClientGone
from bfx.settings import Settings

__all__ = ["body", "check_depth", "check_items", "decode_query"]

_JSON_SUFFIX = b"+json"


class body(Before):
    def __init__(self, settings: Settings, deadlines: BodyDeadlines) -> None:
        self.limits = {
            "body_limit": settings.body_limit,
            "import_body_limit": settings.import_body_limit,
        }
        self.depth = settings.max_body_depth
        self.max_items = settings.max_batch_items
        self.deadlines = deadlines
        # One decoder per request type, built once: decoding is schema-driven and cached.
        self.decoders: dict[Any, msgspec.json.Decoder[Any]] = {}

    def step(self, call: Call) -> Awaitable[None] | None:
        route = call.route
        if route.query is not None:
            call.query = decode_query(call.query_string, route.query)
        if route.body is None:
            return None
        return self._read(call)

    async def _read(self, call: Call) -> None:
        # One coroutine for the whole read and decode, the checks inline: every POST
        # runs through here, and each extra frame costs about as much as a check.
        route = call.route
        kind = route.body
        limit = self.limits[route.body_limit]
        ctype, declared = call.body_headers()
        if ctype is not None and ctype != JSON:
            ctype = _media_type(ctype)
        # Refuse what will not fit before reading a byte of it.
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BodyTooLargeError(limit)
        if (
            ctype is not None
            and ctype != JSON
            and not ctype.endswith(_JSON_SUFFIX)
            and not (kind is bytes and ctype.startswith(b"application/"))
            and declared != b"0"
        ):
            raise errors.UnsupportedMediaTypeError(
                f"expected application/json, got {ctype.decode('latin-1')}",
                {"content_type": ctype.decode("latin-1")},
            )
        # One budget for the whole body (Granian bounds only the headers): a client
        # trickling its body in holds a connection for at most this long.
        deadlines = self.deadlines
        read = call.read_body(limit, declared)
        watched = deadlines.begin(read)
        try:
            raw = await read
        except asyncio.CancelledError:
            if deadlines.timed_out(watched):
                raise BodyTimeoutError(deadlines.budget) from None
            raise
        except call.gone:
            raise ClientGone from None
        finally:
            deadlines.end(watched)
        # Nesting deeper than ``depth`` takes more than ``depth`` bytes of brackets.
        if len(raw) > self.depth and json_nesting_exceeds(raw, self.depth):
            raise _too_deep(self.depth)
        call.raw = raw
        call.content_type = ctype
        if kind is not bytes:
            decoder = self.decoders.get(kind)
            if decoder is None:
                decoder = self.decoders[kind] = msgspec.json.Decoder(kind)
            try:
                call.body = decoder.decode(raw or b"{}")
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                _refuse(exc, raw or b"{}")
            if route.items is not None:
                check_items(call.body, route.items, self.max_items)


def _too_deep(limit: int) -> errors.ValidationError:
    return errors.ValidationError(
        f"request body is nested more than {limit} levels deep",
        {"reason": "too_deep", "limit": limit, "location": "body"},
    )


def check_depth(raw: bytes, limit: int) -> None:
    """422 for a body nesting arrays/objects deeper than ``limit``, before decoding it:
    a decoder would recurse (and fail far less gracefully) long before."""
    if raw and json_nesting_exceeds(raw, limit):
        raise _too_deep(limit)


def check_items(data: Any, field: str, limit: int) -> None:
    """413 ``too_many_items`` for a batch longer than ``limit``: nothing is computed."""
    n = len(getattr(data, field))
    if n > limit:
        raise errors.TooManyItemsError(
            f"{field} holds {n} items; the limit is {limit} per request",
            {"field": field, "items": n, "limit": limit},
        )


_DEFAULTS: dict[type[Any], Any] = {}


def decode_query(query_string: bytes | str, kind: type[Any]) -> Any:
    """The query string (bytes from ASGI, text from RSGI) converted to ``kind``; unknown
    keys ignored, blanks dropped."""
    if not query_string:
        obj = _DEFAULTS.get(kind)
        if obj is None:
            obj = _DEFAULTS[kind] = kind()
        return obj
    if type(query_string) is bytes:
        query_string = query_string.decode("utf-8", "replace")
    pairs = parse_qsl(query_string)
    try:
        return msgspec.convert(dict(pairs), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise field_error(exc, location="query") from None


def _media_type(value: bytes) -> bytes:
    return value.split(b";", 1)[0].strip().lower()


def _refuse(exc: Exception, raw: bytes) -> NoReturn:
    """The error for a body the typed decoder refused: 400 malformed JSON, else 422
    naming the field."""
    if isinstance(exc, msgspec.ValidationError):
        # A typed decode stops at the first shape error, before it would notice trailing
        # garbage; re-read untyped so that malformed JSON is always the 400.
        try:
            msgspec.json.decode(raw)
        except msgspec.ValidationError:
            pass
        except msgspec.DecodeError as syntax:
            raise MalformedJsonError(f"request body is not valid JSON: {syntax}") from None
        raise field_error(exc) from None
    raise MalformedJsonError(f"request body is not valid JSON: {exc}") from None
