"""What handlers see and return: the request, the response, and their few helpers."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import msgspec

from bfx import errors
from bfx.api.decoding import field_error
from bfx.asgi.errors import PathIdError
from bfx.identity import parse_id

if TYPE_CHECKING:
    from bfx import Registry
    from bfx.asgi.app import App

__all__ = ["PREFIX", "Request", "Response", "body_id", "encode", "json", "path_id"]

PREFIX = "/api/v1"
JSON = b"application/json"
NDJSON = b"application/x-ndjson"

#: One encoder for every answer: msgspec encoders are not type-bound, and big ints,
#: datetimes (RFC 3339) and Structs all encode natively.
encode = msgspec.json.Encoder().encode


class Request:
    """A request as a handler needs it: already routed, body already read and decoded."""

    __slots__ = (
        "app",
        "body",
        "cancelled",
        "content_type",
        "data",
        "params",
        "query_string",
        "registry",
    )

    def __init__(
        self,
        app: App,
        registry: Registry,
        params: list[str],
        query_string: bytes,
        body: bytes,
        data: Any,
        content_type: bytes | None,
    ) -> None:
        self.app = app
        self.registry = registry
        #: Path parameter values, in the order of the route's template (shared with the
        #: router's cache of recent matches: read, never modify).
        self.params = params
        self.query_string = query_string
        #: The raw body (empty for routes that read none).
        self.body = body
        #: The body decoded into the route's request type, or None.
        self.data = data
        self.content_type = content_type
        #: Set when the client has gone away (heavy routes only; None elsewhere).
        self.cancelled: threading.Event | None = None

    def query(self, kind: type[Any]) -> Any:
        """The query string converted to ``kind``; unknown keys ignored, blanks dropped."""
        if not self.query_string:
            return _default(kind)
        pairs = parse_qsl(self.query_string.decode("utf-8", "replace"))
        try:
            return msgspec.convert(dict(pairs), kind, strict=False)
        except msgspec.ValidationError as exc:
            raise field_error(exc, location="query") from None


_DEFAULTS: dict[type[Any], Any] = {}


def _default(kind: type[Any]) -> Any:
    obj = _DEFAULTS.get(kind)
    if obj is None:
        obj = _DEFAULTS[kind] = kind()
    return obj


class Response:
    """Status, body and headers; ``stream`` (an iterator of chunks) replaces ``body``.

    ``value`` is the typed answer (or the error) the body was encoded from, for middleware
    that counts by it; ``on_sent`` callbacks run once the adapter has sent the last byte.
    """

    __slots__ = ("_after", "body", "content_type", "first", "headers", "status", "stream", "value")

    def __init__(
        self,
        status: int,
        body: bytes = b"",
        content_type: bytes | None = JSON,
        headers: list[tuple[bytes, bytes]] | None = None,
        stream: Iterator[bytes] | None = None,
        value: Any = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers
        self.stream = stream
        self.value = value
        #: A stream's first chunk, pulled before the status goes out.
        self.first: bytes | None = None
        self._after: list[Callable[[int], None]] | None = None

    def on_sent(self, callback: Callable[[int], None]) -> None:
        """Run ``callback(status)`` after the answer is sent (or the client left: 499)."""
        if self._after is None:
            self._after = [callback]
        else:
            self._after.append(callback)

    def sent(self, status: int) -> None:
        """Called by the adapter once: the answer is out (or cut off with ``status``)."""
        after, self._after = self._after, None
        if after:
            for callback in reversed(after):  # innermost middleware first
                callback(status)


def json(obj: Any, status: int = 200) -> Response:
    return Response(status, encode(obj))


def no_content() -> Response:
    """A fresh 204 (answers carry per-request callbacks, so none is shared)."""
    return Response(204, b"", None)


def path_id(text: str) -> int:
    """An id from the URL; a malformed one is a 400 ``invalid_id``."""
    try:
        return parse_id(text)
    except errors.InvalidIdError as exc:
        raise PathIdError(exc.message, {**exc.details, "value": text}) from None


def query_id(text: str | None, name: str) -> int | None:
    """An id from the query string: part of the URL, so malformed is a 400 as in a path."""
    if text is None:
        return None
    try:
        return parse_id(text)
    except errors.InvalidIdError as exc:
        raise PathIdError(exc.message, {**exc.details, "field": name, "value": text}) from None


def body_id(text: str, field: str) -> int:
    """An id from a JSON body; a malformed one is a 422 ``invalid_id`` naming the field."""
    try:
        return parse_id(text)
    except errors.InvalidIdError as exc:
        raise errors.InvalidIdError(
            f"{field}: {exc.message}",
            {**exc.details, "field": field, "location": "body", "value": text},
        ) from None
