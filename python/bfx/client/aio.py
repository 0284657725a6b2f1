"""The asynchronous client: the same request layer (:mod:`bfx.client._wire`) and retry
policy as :class:`~bfx.client.Client`, over an ``httpx.AsyncClient``. Every operation is
a coroutine; every ``iter_*`` an async iterator."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import IO, Any

import httpx

from bfx import errors
from bfx.api.operations import BY_NAME, Operation
from bfx.client._retry import Retry
from bfx.client._surface import AsyncOperations
from bfx.client._wire import Prepared, Wire, error_from_answer, error_from_transport

__all__ = ["AsyncClient"]


class AsyncClient(AsyncOperations):
    """The asynchronous twin of :class:`~bfx.client.Client`: the same constructor, the
    same methods (awaited), the same answers and errors.

        async with AsyncClient("http://127.0.0.1:8000") as api:
            record = await api.create_substrate("constant", "42")
            async for s in api.iter_substrates():
                ...
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        timeout: float | httpx.Timeout = 30.0,
        *,
        api_key: str | None = None,
        token: str | None = None,
        retry: Retry | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._wire = Wire(base_url, api_key, token)
        self._retry = retry if retry is not None else Retry()
        self._http = httpx.AsyncClient(
            base_url=self._wire.base_url,
            headers=self._wire.headers,
            timeout=timeout,
            transport=transport,
        )

    @property
    def base_url(self) -> str:
        return self._wire.base_url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, req: Prepared, *, stream: bool = False) -> httpx.Response:
        retry = self._retry
        for attempt in range(1, retry.attempts + 1):
            request = self._http.build_request(
                req.method, req.path, params=req.params, content=req.content, headers=req.headers
            )
            try:
                resp = await self._http.send(request, stream=stream)
                if resp.status_code < 400:
                    return resp
                await resp.aread()
                await resp.aclose()
                error = error_from_answer(resp.status_code, resp.headers, resp.content)
            except httpx.RequestError as exc:  # transport, decoding, redirects
                error = error_from_transport(exc, self._wire.base_url)
                error.__cause__ = exc
            error.attempts = attempt  # type: ignore[attr-defined]
            delay = retry.delay(req.op, error, attempt)
            if delay is None:
                raise error
            await asyncio.sleep(delay)
        raise AssertionError("Retry.delay answers None on the last attempt")

    async def _call(self, op: Operation, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        resp = await self._send(self._wire.prepare(op, args, kwargs))
        return self._wire.result(op, resp.headers.get("content-type", ""), resp.content)

    async def _walk(
        self, op: Operation, field: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        given = self._wire.bind(op, args, kwargs)
        given.setdefault("limit", 1000)
        seen: set[str] = set()
        while True:  # bounded: each page must name a cursor not seen before
            page = await self._call(op, (), given)
            for item in getattr(page, field):
                yield item
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise errors.HttpError(f"{op.name}: the service repeated a cursor")
            seen.add(page.next_cursor)
            given = {**given, "cursor": page.next_cursor}
            given.pop("offset", None)  # the cursor goes on from here

    async def export_to(
        self, file: str | os.PathLike[str] | IO[bytes], format: str = "json"
    ) -> int:
        """Stream ``export`` into a file, as :meth:`bfx.client.Client.export_to` does
        (the writes are plain file writes, between awaited chunks)."""
        import tempfile

        req = self._wire.prepare(BY_NAME["export"], (), {"format": format})
        resp = await self._send(req, stream=True)
        try:
            if not isinstance(file, str | os.PathLike):
                return await _copy(resp, file, self._wire.base_url)
            folder = os.path.dirname(os.path.abspath(file))
            fd, tmp = tempfile.mkstemp(prefix=".bfx-export-", dir=folder)
            try:
                with os.fdopen(fd, "wb") as out:
                    size = await _copy(resp, out, self._wire.base_url)
                os.replace(tmp, file)
            except BaseException:
                os.unlink(tmp)
                raise
            return size
        finally:
            await resp.aclose()


async def _copy(resp: httpx.Response, out: IO[bytes], url: str) -> int:
    size = 0
    try:
        async for chunk in resp.aiter_bytes():
            out.write(chunk)
            size += len(chunk)
    except httpx.RequestError as exc:  # transport, decoding, redirects
        raise error_from_transport(exc, url) from exc
    return size
