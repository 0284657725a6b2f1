"""A small synchronous client for the v1 HTTP API (stdlib ``http.client`` + msgspec).

    >>> from bfx.client import Client
    >>> with Client("http://127.0.0.1:8000") as api:            # doctest: +SKIP
    ...     s = api.create("lambda", "lambda x, y=2: x * y")
    ...     api.invoke(s["substrate_id"], {"x": 21})["result"]
    42

Every method is an operation of the table (:mod:`bfx.api.operations`): its HTTP method
and path come from there, never spelt out here. Answers are the API's JSON objects as
dicts. Error answers raise the matching
:mod:`bfx.errors` class (by the ``error`` code), with ``status`` set to the HTTP status
received. One connection, kept alive; a client is not meant to be shared across threads.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec

from bfx import errors
from bfx.api.operations import BY_NAME, PREFIX

__all__ = ["Client", "ClientError"]

Id = int | str

_encode = msgspec.json.encode
_decode = msgspec.json.decode


class ClientError(errors.BfxError):
    """An error answer whose code has no class in :mod:`bfx.errors` (405, 413, 415...)."""


def _error_classes() -> dict[str, type[errors.BfxError]]:
    out: dict[str, type[errors.BfxError]] = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        out.setdefault(cls.code, cls)
    return out


_BY_CODE = _error_classes()


def _walk(
    fetch: Callable[[str | None], dict[str, Any]], field: str = "substrates"
) -> Iterator[dict[str, Any]]:
    """Every item of a paged list: fetch(cursor) pages until next_cursor is null."""
    cursor = None
    while True:
        body = fetch(cursor)
        yield from body[field]
        cursor = body["next_cursor"]
        if cursor is None:
            return


def _id(value: Id) -> str:
    return f"0x{value:016X}" if isinstance(value, int) else value


class Client:
    def __init__(self, base_url: str = "http://127.0.0.1:8000", timeout: float = 30.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port
        self._prefix = parts.path.rstrip("/") + PREFIX
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    # -- plumbing -----------------------------------------------------------------------

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self._timeout)
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, bytes, str]:
        """One request; returns (status, body, content type) or raises on an error answer."""
        url = self._prefix + path
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            url += "?" + urlencode(params)
        payload = raw if raw is not None else (None if body is None else _encode(body))
        headers = {"accept": "application/json"}
        if payload is not None:
            headers["content-type"] = content_type
        reused = self._conn is not None
        try:
            status, data, ctype = self._send(method, url, payload, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.close()
            if not reused:
                raise
            # The server closed an idle kept-alive connection: one retry on a fresh one.
            status, data, ctype = self._send(method, url, payload, headers)
        if status >= 400:
            raise self._error(status, data)
        return status, data, ctype

    def _send(
        self, method: str, url: str, payload: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes, str]:
        conn = self._connection()
        conn.request(method, url, body=payload, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self.close()
        return resp.status, data, resp.getheader("content-type", "")

    @staticmethod
    def _error(status: int, data: bytes) -> errors.BfxError:
        try:
            body = _decode(data)
            code, message, details = body["error"], body["message"], body.get("details", {})
        except (msgspec.DecodeError, KeyError, TypeError):
            code, message, details = "http_error", data[:200].decode("utf-8", "replace"), {}
        cls = _BY_CODE.get(code, ClientError)
        exc = cls(message, details)
        exc.status = status  # type: ignore[misc]
        if cls is ClientError:
            exc.code = code  # type: ignore[misc]
        return exc

    def _send_op(
        self, operation: str, *ids: Id, body: Any = None, **kw: Any
    ) -> tuple[int, bytes, str]:
        """One operation of the table (``bfx.api.operations``): its method and path
        template, the path's ids filled in."""
        op = BY_NAME[operation]
        values = iter(ids)
        path = "/".join(
            _id(next(values)) if seg.startswith("{") else seg for seg in op.path.split("/")
        )
        return self.request(op.method, path.removeprefix(PREFIX), body, **kw)

    def _call(self, operation: str, *ids: Id, body: Any = None, **kw: Any) -> Any:
        _, data, _ = self._send_op(operation, *ids, body=body, **kw)
        return _decode(data) if data else None

    # -- system ---------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("health")

    def metrics(self) -> dict[str, Any]:
        return self._call("metrics")

    # -- substrates -------------------------------------------------------------------------

    def create(
        self, expression_type: str, expression_code: str, metadata: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "expression_type": expression_type,
            "expression_code": expression_code,
        }
        if metadata is not None:
            body["metadata"] = dict(metadata)
        return self._call("create_substrate", body=body)

    def get(self, substrate_id: Id) -> dict[str, Any]:
        return self._call("get_substrate", substrate_id)

    def delete(self, substrate_id: Id) -> None:
        self._call("delete_substrate", substrate_id)

    def list(self, limit: int = 100, cursor: Id | None = None) -> dict[str, Any]:
        return self._call(
            "list_substrates",
            query={"limit": limit, "cursor": None if cursor is None else _id(cursor)},
        )

    def iter_substrates(self, page: int = 1000) -> Iterator[dict[str, Any]]:
        cursor = None
        while True:
            body = self.list(limit=page, cursor=cursor)
            yield from body["substrates"]
            cursor = body["next_cursor"]
            if cursor is None:
                return

    def invoke(
        self, substrate_id: Id, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._call(
            "invoke",
            substrate_id,
            body={"parameters": None if parameters is None else dict(parameters)},
        )

    def create_many(
        self, items: Iterable[Mapping[str, Any]], atomic: bool = False
    ) -> list[dict[str, Any]]:
        body = {"substrates": [dict(x) for x in items], "atomic": atomic}
        return self._call("create_substrates", body=body)["results"]

    def invoke_many(
        self, calls: Iterable[tuple[Id, Mapping[str, Any] | None]]
    ) -> list[dict[str, Any]]:
        body = {"invocations": [{"substrate_id": _id(i), "parameters": p} for i, p in calls]}
        return self._call("invoke_many", body=body)["results"]

    def search(
        self,
        name: str | None = None,
        expression_type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> list[dict[str, Any]]:
        """One page of matches (see :meth:`search_page` for ``count`` and
        ``next_cursor``, :meth:`iter_search` for all of them)."""
        return self.search_page(name, expression_type, limit, cursor)["substrates"]

    def search_page(
        self,
        name: str | None = None,
        expression_type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "search",
            query={"name": name, "type": expression_type, "limit": limit, "cursor": cursor},
        )

    def iter_search(
        self, name: str | None = None, expression_type: str | None = None, page: int = 1000
    ) -> Iterator[dict[str, Any]]:
        return _walk(lambda cursor: self.search_page(name, expression_type, page, cursor))

    def query(
        self,
        filters: Mapping[str, Any] | None = None,
        sort: str = "created_at",
        limit: int = 100,
        cursor: str | None = None,
    ) -> list[dict[str, Any]]:
        """One page of matches (see :meth:`query_page`, :meth:`iter_query`)."""
        return self.query_page(filters, sort, limit, cursor)["substrates"]

    def query_page(
        self,
        filters: Mapping[str, Any] | None = None,
        sort: str = "created_at",
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"filters": dict(filters or {}), "sort": sort, "limit": limit}
        if cursor is not None:
            body["cursor"] = cursor
        return self._call("query", body=body)

    def iter_query(
        self, filters: Mapping[str, Any] | None = None, sort: str = "created_at", page: int = 1000
    ) -> Iterator[dict[str, Any]]:
        return _walk(lambda cursor: self.query_page(filters, sort, page, cursor))

    def export(self, format: str = "json") -> bytes:
        """The raw export document (``json``) or lines (``ndjson``)."""
        return self._send_op("export", query={"format": format})[1]

    def import_(self, data: bytes, format: str = "json") -> dict[str, Any]:
        ctype = "application/x-ndjson" if format == "ndjson" else "application/json"
        return self._call("import_records", raw=data, content_type=ctype)

    # -- operators --------------------------------------------------------------------------

    def divide(self, substrate_id: Id) -> dict[str, Any]:
        return self._call("divide", substrate_id)

    def multiply(self, values: Iterable[int | float]) -> dict[str, Any]:
        return self._call("multiply", body={"dimension_values": list(values)})

    def _op(
        self, op: str, substrate_id: Id, field: str, arg: Any, parameters: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        body = {field: arg, "parameters": None if parameters is None else dict(parameters)}
        return self._call(op, substrate_id, body=body)

    def add(
        self, substrate_id: Id, value: int | float, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._op("add", substrate_id, "value", value, parameters)

    def subtract(
        self, substrate_id: Id, value: int | float, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._op("subtract", substrate_id, "value", value, parameters)

    def modulus(
        self, substrate_id: Id, modulus: int | float, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._op("modulus", substrate_id, "modulus", modulus, parameters)

    def power(
        self, substrate_id: Id, exponent: int | float, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._op("power", substrate_id, "exponent", exponent, parameters)

    def root(
        self, substrate_id: Id, degree: int, parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        return self._op("root", substrate_id, "degree", degree, parameters)

    # -- relationships ----------------------------------------------------------------------

    def relate(
        self,
        rel_type: str,
        source_id: Id,
        target_id: Id,
        bidirectional: bool = False,
        constraints: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "create_relationship",
            body={
                "rel_type": rel_type,
                "source_id": _id(source_id),
                "target_id": _id(target_id),
                "bidirectional": bidirectional,
                "constraints": None if constraints is None else dict(constraints),
            },
        )

    def relate_many(
        self, items: Iterable[Mapping[str, Any]], atomic: bool = False
    ) -> list[dict[str, Any]]:
        rels = [
            {**x, "source_id": _id(x["source_id"]), "target_id": _id(x["target_id"])} for x in items
        ]
        return self._call("create_relationships", body={"relationships": rels, "atomic": atomic})[
            "results"
        ]

    def get_relationship(self, relationship_id: Id) -> dict[str, Any]:
        return self._call("get_relationship", relationship_id)

    def delete_relationship(self, relationship_id: Id) -> None:
        self._call("delete_relationship", relationship_id)

    def outgoing(
        self,
        substrate_id: Id,
        rel_type: str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "outgoing",
            substrate_id,
            query={"rel_type": rel_type, "limit": limit, "offset": offset, "cursor": cursor},
        )

    def incoming(
        self,
        substrate_id: Id,
        rel_type: str | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "incoming",
            substrate_id,
            query={"rel_type": rel_type, "limit": limit, "offset": offset, "cursor": cursor},
        )

    def relationships(
        self,
        rel_type: str | None = None,
        source_id: Id | None = None,
        target_id: Id | None = None,
        limit: int = 100,
        offset: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return self._call(
            "list_relationships",
            query={
                "type": rel_type,
                "source_id": None if source_id is None else _id(source_id),
                "target_id": None if target_id is None else _id(target_id),
                "limit": limit,
                "offset": offset,
                "cursor": cursor,
            },
        )

    def iter_relationships(
        self,
        rel_type: str | None = None,
        source_id: Id | None = None,
        target_id: Id | None = None,
        page: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        return _walk(
            lambda cursor: self.relationships(rel_type, source_id, target_id, page, None, cursor),
            "relationships",
        )

    def relationship_stats(self) -> dict[str, Any]:
        return self._call("relationship_stats")
