"""The RSGI adapter's request object reads Granian's scope only for what the pipeline
asks: each read of ``scope.headers`` or ``scope.client`` builds a new Python object in
Granian, so a read nobody needs is per-request work for nothing (issue 18).

Driven in process through :class:`bfx.asgi.rsgi.RsgiApp` with a scope that counts its
reads; the same adapter over real Granian is covered by the end-to-end suites."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from bfx.asgi import App, Settings
from bfx.asgi.rsgi import RsgiApp, RsgiCall


class CountingScope:
    """Granian's RSGI scope as the adapter sees it, counting reads of each field."""

    def __init__(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        client: str = "127.0.0.1:50123",
    ) -> None:
        self.reads: Counter[str] = Counter()
        self._fields = {
            "proto": "http",
            "method": method,
            "path": path,
            "query_string": "",
            "client": client,
            "headers": headers or {},
        }

    def __getattr__(self, name: str) -> Any:
        fields = self.__dict__["_fields"]
        if name not in fields:
            raise AttributeError(name)
        self.reads[name] += 1
        return fields[name]


class Proto:
    """The body in one await; the answer kept."""

    def __init__(self, body: bytes = b"") -> None:
        self.body = body
        self.answer: tuple[int, list[tuple[str, str]], bytes] | None = None

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answer = (status, headers, body)

    @property
    def status(self) -> int | None:
        return None if self.answer is None else self.answer[0]


def _serve(
    settings: Settings,
    *requests: tuple[CountingScope, Proto],
    started: Callable[[App], None] | None = None,
) -> None:
    app = App(settings)
    rsgi = RsgiApp(app)

    async def main() -> None:
        app.startup(asyncio.get_running_loop())
        if started is not None:
            started(app)
        try:
            for scope, proto in requests:
                await rsgi.__rsgi__(scope, proto)
        finally:
            await app.stop()

    asyncio.run(main())


@pytest.fixture
def substrate_id() -> str:
    """The id of ``constant 7``: content identities are the same in every store."""
    from bfx import Registry

    return Registry().create("constant", "7").substrate_id


def _create(headers: dict[str, str] | None = None, code: str = "7") -> tuple[CountingScope, Proto]:
    body = b'{"expression_type": "constant", "expression_code": "%s"}' % code.encode()
    base = {"content-type": "application/json", "content-length": str(len(body))}
    return CountingScope("POST", "/api/v1/substrates", base | (headers or {})), Proto(body)


def test_a_get_without_auth_or_access_log_reads_neither_headers_nor_peer(substrate_id):
    create = _create()
    get = CountingScope("GET", f"/api/v1/substrates/{substrate_id}")
    proto = Proto()
    _serve(Settings(storage="memory", access_log=False), create, (get, proto))
    assert create[1].status == 201
    assert proto.status == 200
    assert proto.answer is not None
    assert msgspec.json.decode(proto.answer[2])["substrate_id"] == substrate_id
    assert get.reads["headers"] == 0
    assert get.reads["client"] == 0
    assert get.reads["query_string"] == 0  # the route has no query


def test_a_route_with_a_query_reads_the_query_string_once():
    scope = CountingScope("GET", "/api/v1/substrates")
    scope._fields["query_string"] = "limit=1"
    proto = Proto()
    _serve(
        Settings(storage="memory", access_log=False), _create(), _create(code="8"), (scope, proto)
    )
    assert proto.status == 200
    assert proto.answer is not None
    page = msgspec.json.decode(proto.answer[2])
    assert (len(page["substrates"]), page["count"]) == (1, 2)  # the limit was read
    assert scope.reads["query_string"] == 1


def test_the_access_log_reads_the_peer_once(substrate_id):
    get = CountingScope("GET", f"/api/v1/substrates/{substrate_id}")
    _serve(Settings(storage="memory", access_log=True), _create(), (get, Proto()))
    assert get.reads["client"] == 1


def test_a_create_with_an_api_key_reads_the_header_map_once():
    # The key and the body's two headers come from one read of the scope.
    from bfx.security.keys import KeyRecord, digest, new_key, now_us

    key_id, key = new_key()

    def add_key(app: App) -> None:
        store = app.registry.store
        secret = digest(store.key_secret, key)
        store.add_key(KeyRecord(key_id, "t", ("admin",), secret, now_us(), None))

    scope, proto = _create({"x-api-key": key})
    refused, refusal = _create({"x-api-key": "bfx_not_a_key"})
    settings = Settings(storage="memory", access_log=False, auth="required")
    _serve(settings, (scope, proto), (refused, refusal), started=add_key)
    assert proto.status == 201
    assert scope.reads["headers"] == 1
    assert refusal.status == 401
    assert refused.reads["headers"] == 1


def test_the_peer_is_split_as_asgi_gives_it():
    call = RsgiCall(CountingScope("GET", "/", client="[::1]:8443"), Proto())
    assert call.client == ("[::1]", "8443")
    assert call.client is call.client  # split once, kept
    ipv4 = RsgiCall(CountingScope("GET", "/", client="10.0.0.2:51000"), Proto())
    assert ipv4.client == ("10.0.0.2", "51000")


def test_headers_read_as_before():
    scope = CountingScope(
        "POST", "/", headers={"content-type": "application/json", "x-api-key": "k"}
    )
    call = RsgiCall(scope, Proto())
    assert call.header(b"content-type") == b"application/json"
    assert call.header(b"accept") is None
    assert call.header_text("x-api-key") == "k"
    assert call.body_headers() == (b"application/json", None)
    assert scope.reads["headers"] == 1


class StalledProto(Proto):
    """A client that declares a body and never sends it: Granian's read is a future
    that never completes (unless the deadline cancels it)."""

    def __call__(self) -> asyncio.Future[bytes]:  # type: ignore[override]
        self.read: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        return self.read


def test_a_stalled_body_is_cut_off_by_cancelling_its_read():
    scope, _ = _create()
    proto = StalledProto()
    _serve(Settings(storage="memory", access_log=False, body_timeout=0.2), (scope, proto))
    assert proto.status == 408
    assert proto.answer is not None
    assert msgspec.json.decode(proto.answer[2])["error"] == "request_timeout"
    assert proto.read.cancelled()


def test_a_read_that_completes_as_its_deadline_passes_is_not_cut_off():
    # The sweeper finds the read late but done: it is neither cancelled nor marked,
    # and the request goes on with its body.
    from bfx.asgi.middleware.body_deadline import BodyDeadlines

    async def main() -> tuple[bool, int]:
        deadlines = BodyDeadlines(0.05, tick=0.05)
        read = asyncio.get_running_loop().create_future()
        watched = deadlines.begin(read)
        read.set_result(b"{}")  # done, but the deadline entry is still there
        await asyncio.sleep(0.2)  # the sweeper passes
        timed_out = deadlines.timed_out(watched)
        deadlines.end(watched)
        await deadlines.close()
        return timed_out, len(deadlines._expired)

    assert asyncio.run(main()) == (False, 0)
