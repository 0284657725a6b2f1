"""Both Python clients (``Client``, ``AsyncClient``) run the same scenario list against a
real ``bfx serve`` (Granian, started here): created ids, results, errors, every graph
operation, export and import, paging to the end of 2,500 records; retries against a
scripted loopback server (tests/scripted_server.py); API keys against ``bfx serve
--auth required``; and every operation of ``openapi.json`` is a method of both."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest

from bfx import errors
from bfx.api import types as t
from bfx.api.operations import OPERATIONS
from bfx.client import PAGED, AsyncClient, Client, Retry, iterator_name
from bfx_server import HOST, Server, free_port
from scripted_server import HEALTH, ScriptedServer

pytestmark = pytest.mark.e2e

KINDS = ("sync", "async")
#: Short waits: the tests observe retries, not wait for them.
FAST = Retry(attempts=4, backoff=0.01, max_backoff=0.05, max_retry_after=5)
#: The README's identity vector: the same id on every machine.
MUL_CODE, MUL_ID = "lambda x, y=2: x * y", "0x0D20BC49950301AD"


class Synced:
    """The sync client behind the async scenario interface: each method awaited, each
    ``iter_*`` an async iterator over the sync generator. The scenario text is then the
    same for both clients, and the sync calls are really the sync client's."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if name.startswith("iter_"):

            async def walk(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                for item in attr(*args, **kwargs):
                    yield item

            return walk

        async def call(*args: Any, **kwargs: Any) -> Any:
            return attr(*args, **kwargs)

        return call


def run(kind: str, url: str, scenario: Callable[[Any], Awaitable[None]], **kw: Any) -> None:
    async def main() -> None:
        if kind == "sync":
            with Client(url, **kw) as client:
                await scenario(Synced(client))
        else:
            async with AsyncClient(url, **kw) as client:
                await scenario(client)

    asyncio.run(main())


async def collect(items: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in items]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = Server(tmp_path_factory.mktemp("clients"), "--memory")
    yield srv
    srv.stop()


# --- the scenarios ---------------------------------------------------------------------


async def create_and_read(api: Any, tag: str) -> None:
    made = await api.create_substrate("lambda", MUL_CODE, metadata={"name": f"mul-{tag}"})
    assert made.substrate_id == MUL_ID
    assert made.identity == int(MUL_ID, 16)
    assert msgspec.json.decode(made.metadata) == {"name": f"mul-{tag}"}
    assert await api.get_substrate(made.identity) == made
    assert await api.get(MUL_ID.lower()) == made  # the first client's name, any case
    # An int named like an id inside stored JSON is data, not an id to format.
    kept = await api.create_substrate("constant", f"{len(tag)}", {"source_id": 5})
    assert msgspec.json.decode(kept.metadata) == {"source_id": 5}
    await api.delete_substrate(kept.identity)
    with pytest.raises(errors.DuplicateError) as dup:
        await api.create_substrate("lambda", "lambda x,y=2:x*y")  # same canonical form
    assert (dup.value.status, dup.value.details["substrate_id"]) == (409, MUL_ID)
    assert dup.value.attempts == 1
    await api.delete_substrate(made.identity)
    with pytest.raises(errors.NotFoundError):
        await api.get_substrate(made.identity)


async def invoke_and_operators(api: Any, tag: str) -> None:
    s = await api.create_substrate("expression", f"x * 3 + {len(tag)}")
    assert (await api.invoke(s.substrate_id, {"x": 2})).result == 6 + len(tag)
    assert (await api.invoke(s.identity, parameters={"x": 0})).result == len(tag)
    assert (await api.add(s.identity, 10, {"x": 0})).new_value == 10 + len(tag)
    assert (await api.subtract(s.identity, value=1, parameters={"x": 0})).new_value == len(tag) - 1
    assert (await api.modulus(s.identity, 3, {"x": 3})).expressed == (9 + len(tag)) % 3
    assert (await api.power(s.identity, 2, {"x": 1})).result_value == (3 + len(tag)) ** 2
    assert (await api.root(s.identity, 2, {"x": 0})).operation == "root"
    assert (await api.multiply([1, 1, 2, 3, 5, 8, 13, 21, 34])).unity_value == 2227680
    divided = await api.divide(s.identity)
    assert [d.level for d in divided.dimensions] == [0, 1, 1, 2, 3, 5, 8, 13, 21]
    many = await api.invoke_many(
        [{"substrate_id": s.identity, "parameters": {"x": 1}}, {"substrate_id": "0x1"}]
    )
    assert [(r.status, r.result) for r in many.results[:1]] == [(200, 3 + len(tag))]
    assert many.results[1].status == 404
    assert isinstance(many.results[1].error, t.ErrorBody)


async def error_answers(api: Any, tag: str) -> None:
    with pytest.raises(errors.InvalidIdError) as bad:
        await api.get_substrate("zz")
    assert bad.value.status == 400
    with pytest.raises(errors.SandboxError) as rejected:
        await api.create_substrate("expression", "__import__('os')")
    assert rejected.value.status == 422
    boom = await api.create_substrate("expression", f"1 / x + {len(tag)}")
    with pytest.raises(errors.InvocationError):
        await api.invoke(boom.identity, {"x": 0})
    with pytest.raises(errors.ValidationError) as limit:
        await api.list_substrates(limit=0)
    assert limit.value.status == 422
    with pytest.raises(TypeError):
        await api.get_substrate()  # a missing id: Python's own TypeError, nothing sent
    with pytest.raises(TypeError):
        await api.invoke(boom.identity, paramters={})  # a misspelt field


async def graph(api: Any, tag: str) -> None:
    base = 10_000 * (KINDS.index(tag) + 1)
    a, b, c, d = [
        (await api.create_substrate("constant", str(base + i))).identity for i in range(4)
    ]
    ab = await api.create_relationship("dependency", a, b, constraints={"w": 1})
    assert ab.rel_type == "DEPENDENCY"
    assert msgspec.json.decode(ab.constraints) == {"w": 1}
    assert await api.get_relationship(ab.relationship_id) == ab
    await api.relate("DEPENDENCY", b, c)  # the first client's name
    batch = await api.create_relationships(
        [
            {"rel_type": "dependency", "source_id": c, "target_id": a},
            {"rel_type": "dependency", "source_id": a, "target_id": 1},
        ]
    )
    assert [r.status for r in batch.results] == [201, 404]
    out = await api.outgoing(a)
    assert (out.count, [r.target_id for r in out.relationships]) == (1, [f"0x{b:016X}"])
    assert (await api.incoming(a)).count == 1
    assert (await api.list_relationships(source_id=a)).count == 1
    walked = await api.traverse(a, max_depth=3)
    assert walked.paths[-1] == [f"0x{x:016X}" for x in (a, b, c)]
    path = await api.shortest_path(a, c)
    assert path.length == 2
    with pytest.raises(errors.NoPathError):
        await api.shortest_path(a, d)
    cycles = await api.cycles(relationship_types=["dependency"])
    assert cycles.has_cycle
    comps = await collect(api.iter_components(limit=1))
    assert any(comp.size == 3 for comp in comps)
    scores = await collect(api.iter_pagerank(limit=2))
    assert abs(sum(x.score for x in scores) - 1.0) < 1e-6
    assert (await api.relationship_stats()).total_relationships >= 3
    await api.delete_relationship(ab.relationship_id)
    with pytest.raises(errors.NotFoundError):
        await api.get_relationship(ab.relationship_id)
    assert [r.relationship_id async for r in api.iter_outgoing(a, limit=1)] == []


async def transfer(api: Any, tag: str, folder: Any) -> None:
    mine = await api.create_substrate("constant", str(500 + KINDS.index(tag)))
    doc = await api.export()
    assert mine.substrate_id in {s.substrate_id for s in doc.substrates}
    target = folder / f"export-{tag}.ndjson"
    written = await api.export_to(target, format="ndjson")
    assert written == target.stat().st_size > 0
    kinds = {json.loads(line)["kind"] for line in target.read_text().splitlines()}
    assert "substrate" in kinds
    buffer = io.BytesIO()  # a binary file object is written as the chunks come
    assert await api.export_to(buffer) == len(buffer.getvalue())
    assert {s.substrate_id for s in doc.substrates} <= {
        s["substrate_id"] for s in json.loads(buffer.getvalue())["substrates"]
    }
    again = await api.import_records(target, format="ndjson")
    assert again.imported_substrates == 0
    assert again.skipped == len(target.read_text().splitlines())
    assert (await api.import_records(doc)).imported_substrates == 0


async def paging(api: Any, tag: str) -> None:
    """2,500 records made in batches, then read back to the end by every paged walk."""
    base = 1_000_000 * (KINDS.index(tag) + 1)
    made: list[str] = []
    for start in range(0, 2500, 1000):
        batch = await api.create_substrates(
            [
                {
                    "expression_type": "constant",
                    "expression_code": str(base + i),
                    "metadata": {"name": f"page-{tag}", "tag": f"page-{tag}"},
                }
                for i in range(start, min(start + 1000, 2500))
            ]
        )
        assert {r.status for r in batch.results} == {201}
        made += [r.substrate_id for r in batch.results]
    every = await collect(api.iter_substrates(limit=300))
    ids = [s.substrate_id for s in every]
    assert len(ids) == len(set(ids)) == (await api.list_substrates(limit=1)).count
    assert set(made) <= set(ids)
    found = await collect(api.iter_search(name=f"page-{tag}", limit=700))
    assert sorted(s.substrate_id for s in found) == sorted(made)
    queried = await collect(api.iter_query({"metadata.tag": f"page-{tag}"}, limit=1000))
    assert len(queried) == 2500
    first = await api.search(f"page-{tag}", limit=1000)
    assert (first.count, len(first.substrates)) == (2500, 1000)
    assert first.next_cursor is not None


SCENARIOS: dict[str, Callable[..., Awaitable[None]]] = {
    "create_and_read": create_and_read,
    "invoke_and_operators": invoke_and_operators,
    "error_answers": error_answers,
    "graph": graph,
    "paging": paging,
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(server, kind, name):
    # Each client runs against its own part of one server: ids and tags differ by kind.
    # create_and_read deletes what it made, so the two kinds can use the same vector.
    url = f"http://{HOST}:{server.port}"
    run(kind, url, lambda api: SCENARIOS[name](api, kind))


@pytest.mark.parametrize("kind", KINDS)
def test_transfer(server, kind, tmp_path):
    run(kind, f"http://{HOST}:{server.port}", lambda api: transfer(api, kind, tmp_path))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("suffix", ["", "/", "/api/v1", "/api/v1/"])
def test_base_url_with_or_without_the_prefix(server, kind, suffix):
    async def scenario(api: Any) -> None:
        assert (await api.health()).status == "healthy"

    run(kind, f"http://{HOST}:{server.port}{suffix}", scenario)


# --- retries, against a scripted loopback server --------------------------------------


def _health_via(kind: str, url: str, retry: Retry = FAST) -> Any:
    out: list[Any] = []

    async def scenario(api: Any) -> None:
        out.append(await api.health())

    run(kind, url, scenario, retry=retry)
    return out[0]


@pytest.mark.parametrize("kind", KINDS)
def test_retries_503_then_200(kind):
    with ScriptedServer([(503, {"retry-after": "0"}), (503, {"retry-after": "0"}), 200]) as srv:
        assert _health_via(kind, srv.url).version == HEALTH["version"]
    assert srv.requests == [("GET", "/api/v1/health")] * 3


@pytest.mark.parametrize("kind", KINDS)
def test_retries_429_and_honours_retry_after(kind):
    import time

    with ScriptedServer([(429, {"retry-after": "1"}), 200]) as srv:
        started = time.monotonic()
        _health_via(kind, srv.url)
        waited = time.monotonic() - started
    assert len(srv.requests) == 2
    assert waited >= 1.0  # Retry-After is waited in full (plus jitter)


@pytest.mark.parametrize("kind", KINDS)
def test_gives_up_after_the_last_attempt(kind):
    with ScriptedServer([503] * 4) as srv, pytest.raises(errors.OverloadedError) as err:
        _health_via(kind, srv.url)
    assert (err.value.status, err.value.attempts, len(srv.requests)) == (503, 4, 4)


@pytest.mark.parametrize("kind", KINDS)
def test_a_retry_after_beyond_the_bound_is_not_waited_for(kind):
    with (
        ScriptedServer([(429, {"retry-after": "3600"}), 200]) as srv,
        pytest.raises(errors.RateLimitedError) as err,
    ):
        _health_via(kind, srv.url)
    assert (err.value.retry_after, len(srv.requests)) == (3600, 1)


@pytest.mark.parametrize("kind", KINDS)
def test_a_dropped_connection_repeats_only_idempotent_operations(kind):
    """After a connection that broke once the request was out, a read is sent again, a
    batch create (not idempotent: its answer would misreport) is not."""
    record = {"results": [{"index": 0, "status": 201, "substrate_id": "0x1"}]}

    async def batch(api: Any) -> None:
        await api.create_substrates([{"expression_type": "constant", "expression_code": "1"}])

    with ScriptedServer(["drop", 200], ok_body=record) as srv:
        with pytest.raises(errors.ConnectionFailedError) as err:
            run(kind, srv.url, batch, retry=FAST)
        assert (err.value.attempts, len(srv.requests)) == (1, 1)
    with ScriptedServer(["drop", "drop", 200]) as srv:
        assert _health_via(kind, srv.url).status == "healthy"
        assert len(srv.requests) == 3


@pytest.mark.parametrize("kind", KINDS)
def test_a_timeout_is_a_bfx_error_and_retried_for_a_read(kind):
    out: list[Any] = []

    async def scenario(api: Any) -> None:
        out.append(await api.health())

    with ScriptedServer([("slow", 1.0), 200]) as srv:
        run(kind, srv.url, scenario, timeout=0.2, retry=FAST)
        assert out[0].status == "healthy"
        assert len(srv.requests) == 2
    with ScriptedServer([("slow", 1.0)]) as srv, pytest.raises(errors.RequestTimeoutError) as err:
        run(kind, srv.url, scenario, timeout=0.2, retry=Retry(attempts=1))
    assert (err.value.status, err.value.code, err.value.attempts) == (504, "request_timeout", 1)


@pytest.mark.parametrize("kind", KINDS)
def test_connection_refused_is_a_bfx_error(kind):
    url = f"http://{HOST}:{free_port()}"  # nothing listens there
    with pytest.raises(errors.ConnectionFailedError) as err:
        _health_via(kind, url)
    assert err.value.attempts == FAST.attempts
    assert err.value.status == 503
    assert "cannot connect" in err.value.message


def test_a_bad_retry_policy_or_url_is_refused():
    with pytest.raises(ValueError, match="attempts"):
        Retry(attempts=0)
    with pytest.raises(ValueError, match="http"):
        Client("ftp://example")
    with pytest.raises(ValueError, match="not both"):
        Client(api_key="a", token="b")


# --- authentication --------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("clients-auth")
    data = tmp / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    made = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "keys", "create", "--data-dir", str(data),
         "--name", "clients", "--scopes", "admin", "--json"],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    srv = Server(tmp, "--data-dir", str(data), "--auth", "required")
    yield srv, json.loads(made.stdout)["secret"]
    srv.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_api_key_and_token(secured, kind):
    srv, secret = secured
    url = f"http://{HOST}:{srv.port}"

    async def anonymous(api: Any) -> None:
        assert (await api.health()).status == "healthy"  # public
        with pytest.raises(errors.UnauthorizedError) as err:
            await api.list_substrates()
        assert err.value.status == 401

    async def admin(api: Any) -> None:
        made = await api.create_substrate("constant", f"{KINDS.index(kind) + 7}")
        reader = await api.create_key(f"reader-{kind}", ["substrates:read"])
        assert reader.secret
        assert reader.key_id in {k.key_id for k in (await api.list_keys()).keys}
        box.update(reader=reader.secret, key_id=reader.key_id, made=made.substrate_id)

    async def reader(api: Any) -> None:
        assert (await api.get_substrate(box["made"])).substrate_id == box["made"]
        with pytest.raises(errors.ForbiddenError) as err:
            await api.create_substrate("constant", "1")
        assert err.value.details["required_scope"] == "substrates:write"

    async def revoke(api: Any) -> None:
        await api.revoke_key(box["key_id"])

    box: dict[str, str] = {}
    run(kind, url, anonymous)
    run(kind, url, admin, api_key=secret)
    run(kind, url, reader, api_key=box["reader"])
    run(kind, url, reader, token=box["reader"])  # the same key as a Bearer token
    run(kind, url, revoke, token=secret)
    with pytest.raises(errors.UnauthorizedError):
        run(kind, url, reader, api_key=box["reader"])


# --- the surface is the table ----------------------------------------------------------


def test_every_operation_of_openapi_is_a_method_of_both_clients(server):
    status, document = server.json("GET", "/api/v1/openapi.json")
    assert status == 200
    named = {
        op["operationId"]
        for path in document["paths"].values()
        for op in path.values()
        if isinstance(op, dict) and "operationId" in op
    }
    not_for_clients = {op.name for op in OPERATIONS if not op.client}
    wanted = named - not_for_clients
    assert {"traverse", "shortest_path", "pagerank", "create_key"} <= wanted
    for cls in (Client, AsyncClient):
        missing = sorted(name for name in wanted if not callable(getattr(cls, name, None)))
        assert missing == [], f"{cls.__name__} lacks {missing}"
    for name in wanted:
        assert inspect.iscoroutinefunction(getattr(AsyncClient, name)), name
        assert not inspect.iscoroutinefunction(getattr(Client, name)), name


def test_every_paged_list_has_an_iterator():
    paged = {
        op.name
        for op in OPERATIONS
        if op.client
        and op.response is not None
        and "next_cursor" in getattr(op.response, "__struct_fields__", ())
    }
    assert set(PAGED) == paged
    assert {iterator_name(n) for n in paged} >= {"iter_substrates", "iter_relationships"}
    for name in paged:
        for cls in (Client, AsyncClient):
            assert callable(getattr(cls, iterator_name(name))), (cls, name)


def test_method_signatures_follow_the_table():
    """Path ids in path order, then the body or query fields (DESIGN.md §10)."""
    for op in OPERATIONS:
        if not op.client:
            continue
        params = list(inspect.signature(getattr(Client, op.name)).parameters)[1:]
        assert params[: len(op.param_names)] == list(op.param_names), op.name
        kind = op.body if op.body not in (None, bytes) else op.query
        fields = list(getattr(kind, "__struct_fields__", ()))
        if op.body is bytes:
            fields = ["data", "format"]
        assert params[len(op.param_names) :] == fields, op.name


def test_signatures_of_operations_the_table_may_gain():
    """A required field after an optional one becomes keyword-only (a valid signature,
    not an import error); a field named like a path parameter is refused by name."""
    from bfx.api.operations import Operation
    from bfx.client._wire import signature

    class Body(msgspec.Struct, kw_only=True):
        a: int = 1
        b: str
        c: int = 2

    sig = signature(Operation("x", "POST", "/api/v1/x/{id}", "x", "x", None, body=Body))
    assert str(sig) == "(self, id, a=1, *, b, c=2)"

    class Clash(msgspec.Struct):
        id: int

    with pytest.raises(RuntimeError, match="also a path parameter"):
        signature(Operation("y", "POST", "/api/v1/y/{id}", "y", "y", None, body=Clash))
