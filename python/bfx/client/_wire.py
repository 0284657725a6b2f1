"""The request layer shared by :class:`~bfx.client.Client` and
:class:`~bfx.client.AsyncClient`, free of I/O.

An operation of the table (:mod:`bfx.api.operations`) and its arguments in, the parts of
an HTTP request out; an answer (status, headers, bytes) in, the operation's response type
or a :mod:`bfx.errors` exception out; an httpx failure in, a :mod:`bfx.errors` exception
out. The sync and async clients only send, sleep and loop.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, get_origin
from urllib.parse import urlsplit, urlunsplit

import msgspec

from bfx import errors
from bfx.api import types as t
from bfx.api.operations import OPERATIONS, PREFIX, Operation

if TYPE_CHECKING:  # httpx is imported by the clients, not by the CLI's parser
    import httpx

__all__ = ["CLIENT_OPERATIONS", "Prepared", "Wire", "format_id", "normalise_base_url"]

#: Every operation the clients offer, by name.
CLIENT_OPERATIONS: dict[str, Operation] = {op.name: op for op in OPERATIONS if op.client}

#: Body fields that hold a substrate id: an ``int`` given there is sent as its hex form.
_ID_FIELDS = frozenset({"source_id", "target_id", "substrate_id", "start_substrate_id"})
_NDJSON = "application/x-ndjson"


def normalise_base_url(url: str) -> str:
    """The service root: ``http://h:p/x`` and ``http://h:p/x/api/v1/`` both give
    ``http://h:p/x`` (the operations' paths carry ``/api/v1``)."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL with a host: {url!r}")
    path = parts.path.rstrip("/")
    path = path.removesuffix(PREFIX).rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def format_id(value: int | str) -> str:
    """An id for a URL or a body: an ``int`` as ``0x`` + 16 hex digits; text as given
    (the service parses it and answers 400/422 when it is malformed)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"an id is an int or a hex string, not {type(value).__name__}")
    if isinstance(value, int):
        if not 0 <= value < 2**64:
            raise ValueError(f"an id is an unsigned 64-bit integer, not {value}")
        return f"0x{value:016X}"
    return value


def _with_ids(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with ints under the id fields sent as hex, at the top and in the items
    of a batch; never inside a JSON object the caller stores (metadata, constraints,
    parameters), where an int named ``source_id`` is just data."""

    def top(item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: format_id(v) if k in _ID_FIELDS and isinstance(v, int) else v
            for k, v in item.items()
        }

    return {
        k: [top(x) if isinstance(x, Mapping) else x for x in v] if isinstance(v, list) else v
        for k, v in top(fields).items()
    }


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):  # relationship_types: comma-separated in a URL
        return ",".join(str(v) for v in value)
    return str(value)


def _fields(kind: Any) -> tuple[msgspec.structs.FieldInfo, ...]:
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return msgspec.structs.fields(kind)
    return ()


def signature(op: Operation) -> inspect.Signature:
    """The method's signature: the path's ids in path order, then the body or query
    fields in declared order (positional or keyword), as DESIGN.md §10 names them."""
    P = inspect.Parameter
    params = [P("self", P.POSITIONAL_OR_KEYWORD)]
    params += [P(name, P.POSITIONAL_OR_KEYWORD) for name in op.param_names]
    if op.body is bytes:
        params += [
            P("data", P.POSITIONAL_OR_KEYWORD),
            P("format", P.POSITIONAL_OR_KEYWORD, default="json"),
        ]
    kind = P.POSITIONAL_OR_KEYWORD
    for f in _fields(op.body if op.body is not bytes else None) or _fields(op.query):
        if f.name in op.param_names:
            raise RuntimeError(f"{op.name}: field {f.name!r} is also a path parameter")
        if f.required:
            # A required field after an optional one (kw_only Structs allow it): it and
            # the fields after it are keyword-only.
            if params[-1].default is not P.empty:
                kind = P.KEYWORD_ONLY
            params.append(P(f.name, kind))
        else:
            default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
            params.append(P(f.name, kind, default=default))
    return inspect.Signature(params)


def items_field(op: Operation) -> str | None:
    """For a paged list (a ``cursor`` in, a ``next_cursor`` out): the answer's field
    holding the items; None for any other operation."""
    takes = {f.name for f in _fields(op.body) + _fields(op.query)}
    gives = {f.name: f.type for f in _fields(op.response)}
    if "cursor" not in takes or "next_cursor" not in gives:
        return None
    lists = [name for name, kind in gives.items() if get_origin(kind) is list]
    return lists[0] if len(lists) == 1 else None


@dataclass(frozen=True, slots=True)
class Prepared:
    """One request, ready to send (and to send again)."""

    op: Operation
    method: str
    path: str
    params: dict[str, str]
    content: bytes | None
    headers: dict[str, str]


def _error_classes() -> dict[str, type[errors.BfxError]]:
    out: dict[str, type[errors.BfxError]] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        out.setdefault(cls.code, cls)
    return out


_BY_CODE = _error_classes()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    from datetime import UTC, datetime

    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_answer(status: int, headers: Mapping[str, str], data: bytes) -> errors.BfxError:
    """The :mod:`bfx.errors` exception for an error answer, ``status`` the one received."""
    try:
        body = msgspec.json.decode(data, type=t.ErrorBody)
        code, message, details = body.error, body.message, body.details
    except msgspec.MsgspecError:
        text = data[:200].decode("utf-8", "replace").strip()
        code, message, details = "http_error", f"HTTP {status}: {text or 'no body'}", {}
    cls = _BY_CODE.get(code, errors.HttpError)
    exc = cls(message, details)
    exc.status = status  # type: ignore[misc]
    if cls is errors.HttpError:
        exc.code = code  # type: ignore[misc]
    wait = retry_after(headers)
    if wait is not None:
        exc.retry_after = wait  # type: ignore[attr-defined]
    return exc


def error_from_transport(exc: httpx.RequestError, url: str) -> errors.ConnectionFailedError:
    """A :mod:`bfx.errors` exception for an httpx failure; ``sent`` says whether the
    request may have reached the service (the outcome is then unknown)."""
    import httpx

    # After these the request cannot have reached the service.
    not_sent = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
    if isinstance(exc, httpx.TimeoutException):
        err: errors.ConnectionFailedError = errors.RequestTimeoutError(
            f"no answer from {url} in time ({type(exc).__name__})"
        )
    elif isinstance(exc, httpx.ConnectError):
        err = errors.ConnectionFailedError(f"cannot connect to {url}: {exc}")
    else:
        err = errors.ConnectionFailedError(f"the connection to {url} failed: {exc!r}")
    err.sent = not isinstance(exc, not_sent)  # type: ignore[attr-defined]
    return err


class Wire:
    """How one client talks: its base URL, credentials and the request/answer mapping."""

    def __init__(self, base_url: str, api_key: str | None, token: str | None) -> None:
        if api_key is not None and token is not None:
            raise ValueError("give api_key= or token=, not both")
        self.base_url = normalise_base_url(base_url)
        self.headers = {"accept": "application/json"}
        if api_key is not None:
            self.headers["x-api-key"] = api_key
        if token is not None:
            self.headers["authorization"] = f"Bearer {token}"
        self.signatures = {op.name: signature(op) for op in CLIENT_OPERATIONS.values()}

    def bind(self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments given, by name, bound as the method's signature binds them (a
        TypeError names a missing or unknown one)."""
        given = dict(self.signatures[op.name].bind(None, *args, **kwargs).arguments)
        given.pop("self")
        return given

    def prepare(self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Prepared:
        return self.build(op, self.bind(op, args, kwargs))

    def build(self, op: Operation, given: dict[str, Any]) -> Prepared:
        """The request for bound arguments: ids into the path, the rest into the body or
        the query string (only what was given: the service applies the defaults)."""
        given = dict(given)
        ids = iter([format_id(given.pop(name)) for name in op.param_names])
        path = "/".join(next(ids) if s.startswith("{") else s for s in op.path.split("/"))
        headers: dict[str, str] = {}
        params: dict[str, str] = {}
        content: bytes | None = None
        if op.body is bytes:
            content, headers["content-type"] = _raw_body(
                op, given["data"], given.get("format", "json")
            )
        elif op.body is not None:
            content = msgspec.json.encode(_with_ids(given))
            headers["content-type"] = "application/json"
        elif op.query is not None:
            params = {k: _query_value(v) for k, v in _with_ids(given).items() if v is not None}
        return Prepared(op, op.method, path, params, content, headers)

    def result(self, op: Operation, content_type: str, data: bytes) -> Any:
        """The typed answer of a 2xx response."""
        if op.response is None or not data:
            return None
        try:
            if op.name == "export":
                return export_document(content_type, data)
            return msgspec.json.decode(data, type=op.response)
        except msgspec.MsgspecError as exc:
            err = errors.HttpError(f"{op.name}: the answer is not a {op.response.__name__}: {exc}")
            err.code = "invalid_answer"  # type: ignore[misc]
            raise err from None


def _raw_body(op: Operation, data: Any, fmt: str) -> tuple[bytes, str]:
    """An import body: bytes as given, a path's bytes, or an exported document encoded."""
    media = {"json": "application/json", "ndjson": _NDJSON}
    if fmt not in media:
        raise ValueError(f"{op.name}: format is 'json' or 'ndjson', not {fmt!r}")
    if isinstance(data, t.ImportDocument | t.ExportDocument):
        return msgspec.json.encode(data), media["json"]
    if isinstance(data, str | os.PathLike):
        with open(data, "rb") as f:
            return f.read(), media[fmt]
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), media[fmt]
    raise TypeError(f"{op.name}: data is bytes, a file path or an ImportDocument")


def export_document(content_type: str, data: bytes) -> t.ImportDocument:
    """An export, in either format, as the type the import reads (an ``ImportDocument``:
    exported records carry no ``invocations``, which ``ExportDocument`` would require)."""
    if not content_type.startswith(_NDJSON):
        return msgspec.json.decode(data, type=t.ImportDocument)
    lines = [
        msgspec.json.decode(line, type=t.ImportLine) for line in data.splitlines() if line.strip()
    ]
    return t.ImportDocument(
        substrates=[x for x in lines if isinstance(x, t.ImportSubstrateLine)],
        relationships=[x for x in lines if isinstance(x, t.ImportRelationshipLine)],
    )
