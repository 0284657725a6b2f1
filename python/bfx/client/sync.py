"""The synchronous client: the shared request layer (:mod:`bfx.client._wire`) over an
``httpx.Client``, with retries (:class:`~bfx.client.Retry`)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

import httpx

from bfx import errors
from bfx.api.operations import BY_NAME, PREFIX, Operation
from bfx.client._retry import NO_RETRY, Retry
from bfx.client._surface import Operations
from bfx.client._wire import Prepared, Wire, error_from_answer, error_from_transport

__all__ = ["Client"]


class Client(Operations):
    """Every operation of the v1 API, answering the API's types (:mod:`bfx.api.types`).

    ``base_url`` is the service's root, with or without ``/api/v1``; ``api_key=`` is
    sent as ``X-API-Key``, ``token=`` as ``Authorization: Bearer``; ``timeout`` (seconds
    or an ``httpx.Timeout``) bounds each attempt; ``retry`` is the policy
    (:class:`~bfx.client.Retry`). Failures raise :mod:`bfx.errors` classes, connection
    failures included. Connections are pooled and kept alive; one client may be shared
    by threads (httpx's client is thread-safe).
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout: float | httpx.Timeout = 30.0,
        *,
        api_key: str | None = None,
        token: str | None = None,
        retry: Retry | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._wire = Wire(base_url, api_key, token)
        self._retry = retry if retry is not None else Retry()
        self._http = httpx.Client(
            base_url=self._wire.base_url,
            headers=self._wire.headers,
            timeout=timeout,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self._wire.base_url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop: send, map, maybe wait and send again ----------------------------------

    def _send(self, req: Prepared, retry: Retry, *, stream: bool = False) -> httpx.Response:
        for attempt in range(1, retry.attempts + 1):
            request = self._http.build_request(
                req.method, req.path, params=req.params, content=req.content, headers=req.headers
            )
            try:
                resp = self._http.send(request, stream=stream)
                if resp.status_code < 400:
                    return resp
                resp.read()
                resp.close()
                error = error_from_answer(resp.status_code, resp.headers, resp.content)
            except httpx.RequestError as exc:  # transport, decoding, redirects
                error = error_from_transport(exc, self._wire.base_url)
                error.__cause__ = exc
            error.attempts = attempt  # type: ignore[attr-defined]
            delay = retry.delay(req.op, error, attempt)
            if delay is None:
                raise error
            time.sleep(delay)
        raise AssertionError("Retry.delay answers None on the last attempt")

    def _call(self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        resp = self._send(self._wire.prepare(op, args, kwargs), self._retry)
        return self._wire.result(op, resp.headers.get("content-type", ""), resp.content)

    def _walk(
        self, op: Operation, field: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        given = self._wire.bind(op, args, kwargs)
        given.setdefault("limit", 1000)
        seen: set[str] = set()
        while True:  # bounded: each page must name a cursor not seen before
            page = self._call(op, (), given)
            yield from getattr(page, field)
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise errors.HttpError(f"{op.name}: the service repeated a cursor")
            seen.add(page.next_cursor)
            given = {**given, "cursor": page.next_cursor}
            given.pop("offset", None)  # the cursor goes on from here

    # -- beyond the table ------------------------------------------------------------------

    def export_to(self, file: str | os.PathLike[str] | IO[bytes], format: str = "json") -> int:
        """Stream ``export`` into a file (a path: written whole or not at all, through a
        temporary file beside it; a binary file object: written as it comes). Returns
        the number of bytes written."""
        req = self._wire.prepare(BY_NAME["export"], (), {"format": format})
        resp = self._send(req, self._retry, stream=True)
        try:
            if not isinstance(file, str | os.PathLike):
                return _copy(resp.iter_bytes(), file, self._wire.base_url)
            folder = os.path.dirname(os.path.abspath(file))
            fd, tmp = tempfile.mkstemp(prefix=".bfx-export-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    size = _copy(resp.iter_bytes(), out, self._wire.base_url)
                os.replace(tmp, file)
            except BaseException:
                os.unlink(tmp)
                raise
            return size
        finally:
            resp.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
    ) -> tuple[int, bytes, str]:
        """One request to a path under ``/api/v1``, sent once: (status, body, content
        type), or the :mod:`bfx.errors` exception of an error answer."""
        import msgspec

        from bfx.api.operations import Operation as Op

        op = Op("request", method.upper(), PREFIX + path, "", "", None, idempotent=False)
        req = Prepared(
            op,
            op.method,
            op.path,
            {k: str(v) for k, v in (query or {}).items() if v is not None},
            None if body is None else msgspec.json.encode(body),
            {} if body is None else {"content-type": "application/json"},
        )
        resp = self._send(req, NO_RETRY)
        return resp.status_code, resp.content, resp.headers.get("content-type", "")


def _copy(chunks: Iterator[bytes], out: IO[bytes], url: str) -> int:
    size = 0
    try:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
    except httpx.RequestError as exc:  # transport, decoding, redirects
        raise error_from_transport(exc, url) from exc
    return size
