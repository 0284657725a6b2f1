"""The service interface (bfx.services): every method against a real in-memory Registry,
its answer equal to what the HTTP API answers for the same operation.

Two ways to compare: ``shared`` services run over the HTTP app's own registry, so a
read must answer exactly what the HTTP route answers; ``twin`` services run over a
second registry that receives the same writes, so a write's answer must equal the HTTP
one but for the clock (``created_at``) and timings (``invocation_time_ms``).
"""

from __future__ import annotations

import inspect
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_driver import finish, started
from bfx import Registry, errors
from bfx.api import types as s
from bfx.api.operations import BY_NAME, OPERATIONS
from bfx.budget import Cancelled
from bfx.errors import UnsupportedMediaTypeError
from bfx.errors import UrlIdError as QueryIdError
from bfx.services import (
    AWAITED_METHODS,
    ENCODED_METHODS,
    LIVE_METHODS,
    OPERATION_METHODS,
    AliasService,
    AuthService,
    ChangeService,
    GraphService,
    KeyService,
    LensService,
    OperatorService,
    RelationshipService,
    Services,
    SubstrateService,
    SystemService,
    TransferService,
    VersionService,
    local_services,
)

API = "/api/v1"
PROTOCOLS = {
    "substrates": SubstrateService,
    "operators": OperatorService,
    "relationships": RelationshipService,
    "graph": GraphService,
    "transfer": TransferService,
    "system": SystemService,
    "keys": KeyService,
    "auth": AuthService,
    "versions": VersionService,
    "aliases": AliasService,
    "lenses": LensService,
    "changes": ChangeService,
}
CLOCK = frozenset({"created_at", "invocation_time_ms", "timestamp"})


def services_over(registry: Any, driver: Any = None, **kw: Any) -> Services:
    settings = driver.app.settings if driver is not None else None
    return local_services(
        registry,
        max_answer_bytes=kw.get("max_answer_bytes", getattr(settings, "max_answer_bytes", None)),
        batch_time_budget=kw.get("batch_time_budget", getattr(settings, "batch_time_budget", 5.0)),
        request_metrics=driver.app.metrics.snapshot if driver is not None else _no_requests,
    )


def _no_requests() -> dict[str, Any]:
    from bfx.asgi.metrics import RequestMetrics

    return RequestMetrics().snapshot()


class World:
    """An HTTP app, services over its registry, and services over a twin registry."""

    def __init__(self, **settings: Any) -> None:
        self.api = started(**settings)
        self.shared = services_over(self.api.app.registry, self.api)
        self.twin_registry = Registry()
        self.twin = services_over(self.twin_registry, self.api)

    def close(self) -> None:
        self.twin_registry.close()
        finish(self.api)


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


# --- comparing --------------------------------------------------------------------------


def plain(answer: Any) -> Any:
    # As a client reads it: stored metadata is embedded as raw JSON (msgspec.Raw), which
    # only an encoder can write.
    return msgspec.json.decode(msgspec.json.encode(answer))


def without_clock(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_clock(v) for k, v in value.items() if k not in CLOCK}
    if isinstance(value, list):
        return [without_clock(v) for v in value]
    return value


def same(res: Any, answer: Any, status: int = 200, clock: bool = True) -> Any:
    """The HTTP result and the service answer agree (``clock=False``: but for times)."""
    assert res.status == status, res
    http, svc = res.json(), plain(answer)
    if not clock:
        http, svc = without_clock(http), without_clock(svc)
    assert http == svc
    return svc


def same_error(res: Any, call: Any, kind: type[errors.BfxError]) -> errors.BfxError:
    with pytest.raises(kind) as info:
        call()
    exc = info.value
    assert res.status == exc.status, res
    assert res.json() == {"error": exc.code, "message": exc.message, "details": exc.details}
    return exc


def agree(res: Any, call: Any, status: int) -> Any:
    """The service answers as HTTP did, or fails as HTTP did (times aside); its answer."""
    failed: errors.BfxError | None = None
    try:
        answer = call()
    except errors.BfxError as exc:
        failed = exc
    if failed is not None:
        body = {"error": failed.code, "message": failed.message, "details": failed.details}
        assert (res.status, res.json()) == (failed.status, body)
        return None
    if answer is None:
        assert (res.status, res.body) == (status, b"")
        return None
    return same(res, answer, status, clock=False)


def query(q: Any) -> str:
    return urlencode({k: v for k, v in plain(q).items() if v is not None})


def create(w: World, code: str, kind: str = "constant", metadata: Any = None) -> str:
    body: dict[str, Any] = {"expression_type": kind, "expression_code": code}
    if metadata is not None:
        body["metadata"] = metadata
    res = w.api.post(f"{API}/substrates", json=body)
    rec = same(res, w.twin.substrates.create(kind, code, metadata), 201, clock=False)
    return rec["substrate_id"]


def relate(w: World, rel_type: str, src: str, dst: str, **extra: Any) -> str:
    body = {"rel_type": rel_type, "source_id": src, "target_id": dst, **extra}
    res = w.api.post(f"{API}/relationships", json=body)
    rec = same(
        res, w.twin.relationships.create(msgspec.convert(body, s.CreateRelationship)), 201, False
    )
    return rec["relationship_id"]


def sid(text: str) -> int:
    return int(text, 16)


# --- the interface ----------------------------------------------------------------------


def test_operation_methods_cover_every_client_operation():
    assert set(OPERATION_METHODS) == {op.name for op in OPERATIONS if op.client}
    assert {f.name for f in Services.__dataclass_fields__.values()} == set(PROTOCOLS)
    services = services_over(Registry())
    for name, (noun, method) in OPERATION_METHODS.items():
        assert name in BY_NAME
        assert callable(getattr(PROTOCOLS[noun], method, None)), (name, noun, method)
        assert callable(getattr(getattr(services, noun), method, None)), (name, noun, method)


def test_every_protocol_method_is_an_operation_and_the_local_one_has_its_signature():
    # The live streams' methods feed operations the clients do not call (Operation.live).
    assert set(LIVE_METHODS) == {op.name for op in OPERATIONS if op.live is not None}
    assert set(AWAITED_METHODS) == {op.name for op in OPERATIONS if op.runs == "write"}
    mapped = (
        set(OPERATION_METHODS.values())
        | set(LIVE_METHODS.values())
        | set(AWAITED_METHODS.values())
        | set(ENCODED_METHODS.values())
    )
    services = services_over(Registry())
    for noun, proto in PROTOCOLS.items():
        local = getattr(services, noun)
        for method, fn in vars(proto).items():
            if method.startswith("_") or not inspect.isfunction(fn):
                continue
            assert (noun, method) in mapped, (noun, method)
            want = inspect.signature(fn)
            got = inspect.signature(getattr(local, method))
            assert list(got.parameters)[: len(want.parameters) - 1] == list(want.parameters)[1:]
            for p in list(want.parameters.values())[1:]:
                q = got.parameters[p.name]
                assert (q.kind, q.default) == (p.kind, p.default), (noun, method, p.name)


# --- substrates ------------------------------------------------------------------------


def test_create_get_list_delete(world):
    w = world
    ids = [create(w, str(i), metadata={"name": f"n{i}"}) for i in range(5)]
    ids.append(create(w, "lambda x: x * 2", "lambda"))
    for x in ids:
        same(w.api.get(f"{API}/substrates/{x}"), w.shared.substrates.get(sid(x)))
        same(w.api.get(f"{API}/substrates/{x}"), w.twin.substrates.get(sid(x)), clock=False)
    same(w.api.get(f"{API}/substrates"), w.shared.substrates.list())
    page = s.ListQuery(limit=2, cursor=ids[0])
    same(w.api.get(f"{API}/substrates?{query(page)}"), w.shared.substrates.list(page))
    last = same(
        w.api.get(f"{API}/substrates?limit=2"), w.shared.substrates.list(s.ListQuery(limit=2))
    )
    assert last["count"] == 6
    assert w.shared.substrates.delete(sid(ids[0])) is None
    same_error(
        w.api.get(f"{API}/substrates/{ids[0]}"),
        lambda: w.shared.substrates.get(sid(ids[0])),
        errors.NotFoundError,
    )
    same_error(
        w.api.delete(f"{API}/substrates/{ids[0]}"),
        lambda: w.shared.substrates.delete(sid(ids[0])),
        errors.NotFoundError,
    )


def test_a_malformed_cursor_is_a_400_like_in_the_url(world):
    w = world
    exc = same_error(
        w.api.get(f"{API}/substrates?cursor=xyz"),
        lambda: w.shared.substrates.list(s.ListQuery(cursor="xyz")),
        QueryIdError,
    )
    assert exc.status == 400
    assert isinstance(exc, errors.InvalidIdError)


def test_create_refusals(world):
    w = world
    body = {"expression_type": "lambda", "expression_code": "lambda: __import__('os')"}
    same_error(
        w.api.post(f"{API}/substrates", json=body),
        lambda: w.twin.substrates.create(**body),
        errors.ValidationError,
    )
    a = create(w, "7")
    body = {"expression_type": "constant", "expression_code": "7"}
    exc = same_error(
        w.api.post(f"{API}/substrates", json=body),
        lambda: w.twin.substrates.create(**body),
        errors.DuplicateError,
    )
    assert exc.details["substrate_id"] == a


def test_search_and_query(world):
    w = world
    for i in range(6):
        create(w, str(i), metadata={"name": f"alpha{i % 2}", "k": i % 3})
    create(w, "lambda: 1", "lambda", {"name": "Alpha-l"})
    for q in (
        s.SearchQuery(),
        s.SearchQuery(name="ALPHA1"),
        s.SearchQuery(type="lambda"),
        s.SearchQuery(name="alpha", limit=2),
    ):
        ans = same(w.api.get(f"{API}/substrates/search?{query(q)}"), w.shared.substrates.search(q))
        if ans["next_cursor"]:
            nxt = s.SearchQuery(name=q.name, limit=q.limit, cursor=ans["next_cursor"])
            same(
                w.api.get(f"{API}/substrates/search?{query(nxt)}"),
                w.shared.substrates.search(nxt),
            )
    for body in (
        {},
        {"filters": {"metadata.k": 1}},
        {"filters": {"expression_type": "constant"}, "sort": "-created_at", "limit": 2},
    ):
        req = msgspec.convert(body, s.QueryRequest)
        same(w.api.post(f"{API}/substrates/query", json=body), w.shared.substrates.query(req))
    bad = s.QueryRequest(filters={"colour": "red"})
    same_error(
        w.api.post(f"{API}/substrates/query", json={"filters": {"colour": "red"}}),
        lambda: w.shared.substrates.query(bad),
        errors.ValidationError,
    )


def test_create_many(world):
    w = world
    body = {
        "substrates": [
            {"expression_type": "constant", "expression_code": "1"},
            {"expression_type": "lambda", "expression_code": "lambda: (", "metadata": None},
            {"expression_type": "constant", "expression_code": "1"},
            {"expression_type": "constant", "expression_code": "2", "metadata": {"a": 1}},
        ]
    }
    req = msgspec.convert(body, s.BatchCreate)
    ans = same(w.api.post(f"{API}/substrates/batch", json=body), w.twin.substrates.create_many(req))
    assert [r["status"] for r in ans["results"]] == [201, 422, 409, 201]
    atomic = msgspec.convert({**body, "atomic": True}, s.BatchCreate)
    same_error(
        w.api.post(f"{API}/substrates/batch", json={**body, "atomic": True}),
        lambda: w.twin.substrates.create_many(atomic),
        errors.BatchError,
    )


def test_invoke(world):
    w = world
    f = create(w, "lambda x: x * 3", "lambda")
    c = create(w, "12345678901234567890123", "constant")
    for x, params in ((f, {"x": 7}), (c, None)):
        body = {} if params is None else {"parameters": params}
        http = w.api.post(f"{API}/substrates/{x}/invoke", json=body)
        same(http, w.shared.substrates.invoke(sid(x), params), clock=False)
        same(http, w.twin.substrates.invoke(sid(x), params), clock=False)
    same_error(
        w.api.post(f"{API}/substrates/{f}/invoke", json={"parameters": {"x": None}}),
        lambda: w.shared.substrates.invoke(sid(f), {"x": None}),
        errors.InvocationError,
    )
    same_error(
        w.api.post(f"{API}/substrates/0x1/invoke", json={}),
        lambda: w.shared.substrates.invoke(1),
        errors.NotFoundError,
    )
    # Invocations are counted on the record, as over HTTP.
    same(w.api.get(f"{API}/substrates/{f}"), w.shared.substrates.get(sid(f)))


def test_invoke_many(world):
    w = world
    f = create(w, "lambda x: x + 1", "lambda")
    body = {
        "invocations": [
            {"substrate_id": f, "parameters": {"x": 1}},
            {"substrate_id": "nope"},
            {"substrate_id": "0x1"},
            {"substrate_id": f, "parameters": {"x": "a"}},
            {"substrate_id": f, "parameters": {"x": 41}},
        ]
    }
    req = msgspec.convert(body, s.BatchInvoke)
    http = w.api.post(f"{API}/substrates/batch/invoke", json=body)
    ans = same(http, w.twin.substrates.invoke_many(req), clock=False)
    assert [r["status"] for r in ans["results"]] == [200, 422, 404, 422, 200]
    assert ans["results"][1]["error"]["details"]["field"] == "invocations[1].substrate_id"
    same(
        w.api.post(f"{API}/substrates/batch/invoke", json={"invocations": []}),
        w.twin.substrates.invoke_many(s.BatchInvoke(invocations=[])),
    )


def test_invoke_many_stops_when_cancelled(world):
    w = world
    f = create(w, "lambda x: x + 1", "lambda")
    req = s.BatchInvoke(invocations=[s.InvocationItem(substrate_id=f, parameters={"x": 1})])
    with pytest.raises(Cancelled):
        w.twin.substrates.invoke_many(req, cancelled=lambda: True)
    assert w.twin.substrates.get(sid(f)).invocations == 0
    ans = w.twin.substrates.invoke_many(req, cancelled=lambda: False)
    assert ans.results[0].result == 2


BIG = "lambda: ['a' * 10000] * 10"


def test_invoke_many_answer_size_is_bounded_like_over_http():
    w = World(max_answer_bytes=1 << 20)
    try:
        big = create(w, BIG, "lambda")
        body = {"invocations": [{"substrate_id": big}] * 1000}
        req = msgspec.convert(body, s.BatchInvoke)
        exc = same_error(
            w.api.post(f"{API}/substrates/batch/invoke", json=body),
            lambda: w.twin.substrates.invoke_many(req),
            errors.ResultTooLargeError,
        )
        assert exc.details == {"limit": 1 << 20}
        small = msgspec.convert({"invocations": [{"substrate_id": big}] * 5}, s.BatchInvoke)
        assert all(r.status == 200 for r in w.twin.substrates.invoke_many(small).results)
    finally:
        w.close()


def test_invoke_many_time_budget_comes_from_the_constructor():
    reg = Registry()
    svc = services_over(reg, batch_time_budget=0.0)
    f = svc.substrates.create("lambda", "lambda x: x", None)
    req = s.BatchInvoke(
        invocations=[s.InvocationItem(substrate_id=f.substrate_id, parameters={"x": 1})]
    )
    (item,) = svc.substrates.invoke_many(req).results
    assert item.status == 422
    assert item.error.details == {"reason": "batch_time_budget", "limit_ms": 0.0}
    unbounded = services_over(reg, batch_time_budget=None, max_answer_bytes=None)
    assert unbounded.substrates.invoke_many(req).results[0].result == 1
    reg.close()


# --- operators --------------------------------------------------------------------------


def test_operators(world):
    w = world
    c = create(w, "21")
    f = create(w, "lambda x: x * 2", "lambda")
    op = w.shared.operators
    same(w.api.post(f"{API}/substrates/{c}/divide"), op.divide(sid(c)))
    for values in ([1, 2, 3], [2.5, 4], [2**70, 3]):
        same(
            w.api.post(f"{API}/substrates/multiply", json={"dimension_values": values}),
            op.multiply(values),
        )
    same_error(
        w.api.post(f"{API}/substrates/multiply", json={"dimension_values": []}),
        lambda: op.multiply([]),
        errors.ValidationError,
    )
    for name in ("add", "subtract"):
        same(
            w.api.post(f"{API}/substrates/{c}/{name}", json={"value": 4}),
            getattr(op, name)(sid(c), 4),
        )
        same(
            w.api.post(f"{API}/substrates/{f}/{name}", json={"value": 1.5, "parameters": {"x": 3}}),
            getattr(op, name)(sid(f), 1.5, {"x": 3}),
        )
    same(
        w.api.post(f"{API}/substrates/{c}/modulus", json={"modulus": 5}),
        op.modulus(sid(c), 5),
    )
    same(w.api.post(f"{API}/substrates/{c}/power", json={"exponent": 3}), op.power(sid(c), 3))
    same(w.api.post(f"{API}/substrates/{c}/root", json={"degree": 2}), op.root(sid(c), 2))
    same_error(
        w.api.post(f"{API}/substrates/{c}/modulus", json={"modulus": 0}),
        lambda: op.modulus(sid(c), 0),
        errors.BfxError,
    )
    same_error(
        w.api.post(f"{API}/substrates/0x2/add", json={"value": 1}),
        lambda: op.add(2, 1),
        errors.NotFoundError,
    )


# --- relationships ----------------------------------------------------------------------


def test_relationships(world):
    w = world
    a, b, c = (create(w, str(i)) for i in range(3))
    r1 = relate(w, "dependency", a, b, constraints={"weight": 2})
    relate(w, "composition", b, c, bidirectional=True)
    relate(w, "DEPENDENCY", a.lower(), c[2:])
    rel = w.shared.relationships
    same(w.api.get(f"{API}/relationships/{r1}"), rel.get(sid(r1)))
    for x in (a, b, c):
        for q in (s.EdgeQuery(), s.EdgeQuery(type="dependency"), s.EdgeQuery(limit=1, offset=1)):
            for way in ("outgoing", "incoming"):
                same(
                    w.api.get(f"{API}/relationships/{way}/{x}?{query(q)}"),
                    getattr(rel, way)(sid(x), q),
                )
    for q in (
        s.RelationshipQuery(),
        s.RelationshipQuery(rel_type="dependency", source_id=a),
        s.RelationshipQuery(type="composition", target_id=c.lower()),
        s.RelationshipQuery(limit=1),
    ):
        ans = same(w.api.get(f"{API}/relationships?{query(q)}"), rel.list(q))
        if ans["next_cursor"]:
            nxt = s.RelationshipQuery(limit=1, cursor=ans["next_cursor"])
            same(w.api.get(f"{API}/relationships?{query(nxt)}"), rel.list(nxt))
    same(w.api.get(f"{API}/relationships/stats"), rel.stats())
    same(w.api.get(f"{API}/relationships/stats"), w.twin.relationships.stats())
    # Refusals: aliases that disagree, a malformed id in the query, in the body, unknown.
    q = s.EdgeQuery(rel_type="dependency", type="composition")
    same_error(
        w.api.get(f"{API}/relationships/outgoing/{a}?{query(q)}"),
        lambda: rel.outgoing(sid(a), q),
        errors.ValidationError,
    )
    q2 = s.RelationshipQuery(source_id="zz")
    same_error(w.api.get(f"{API}/relationships?{query(q2)}"), lambda: rel.list(q2), QueryIdError)
    body = {"rel_type": "dependency", "source_id": "zz", "target_id": b}
    same_error(
        w.api.post(f"{API}/relationships", json=body),
        lambda: rel.create(msgspec.convert(body, s.CreateRelationship)),
        errors.InvalidIdError,
    )
    body = {"rel_type": "no-such-type", "source_id": a, "target_id": b}
    same_error(
        w.api.post(f"{API}/relationships", json=body),
        lambda: rel.create(msgspec.convert(body, s.CreateRelationship)),
        errors.InvalidRelationshipTypeError,
    )
    assert rel.delete(sid(r1)) is None
    same_error(
        w.api.get(f"{API}/relationships/{r1}"), lambda: rel.get(sid(r1)), errors.NotFoundError
    )


def test_create_many_relationships(world):
    w = world
    a, b = create(w, "1"), create(w, "2")
    body = {
        "relationships": [
            {"rel_type": "dependency", "source_id": a, "target_id": b},
            {"rel_type": "dependency", "source_id": "zz", "target_id": b},
            {"rel_type": "nope", "source_id": a, "target_id": b},
            {"rel_type": "dependency", "source_id": a, "target_id": b},
            {"rel_type": "sibling", "source_id": b, "target_id": "0x1"},
        ]
    }
    req = msgspec.convert(body, s.BatchRelate)
    http = w.api.post(f"{API}/relationships/batch", json=body)
    ans = same(http, w.twin.relationships.create_many(req))
    assert [r["status"] for r in ans["results"]] == [201, 422, 422, 409, 404]


# --- graph --------------------------------------------------------------------------------


def build_graph(w: World) -> list[str]:
    ids = [create(w, str(i), metadata={"name": f"v{i}"}) for i in range(6)]
    for x, y in ((0, 1), (1, 2), (2, 0), (2, 3), (4, 5)):
        relate(w, "dependency", ids[x], ids[y])
    relate(w, "sibling", ids[3], ids[4], bidirectional=True)
    return ids


def test_graph(world):
    w = world
    ids = build_graph(w)
    g = w.shared.graph
    for body in (
        {"start_substrate_id": ids[0]},
        {"start_substrate_id": ids[0], "direction": "both", "include_substrates": True},
        {"start_substrate_id": ids[2], "max_depth": 1, "relationship_types": ["DEPENDENCY"]},
        {"start_substrate_id": ids[0], "max_nodes": 2},
    ):
        req = msgspec.convert(body, s.TraverseRequest)
        same(w.api.post(f"{API}/relationships/traverse", json=body), g.traverse(req))
    too_many = {"start_substrate_id": ids[0], "max_nodes": s.HTTP_MAX_NODES + 1}
    same_error(
        w.api.post(f"{API}/relationships/traverse", json=too_many),
        lambda: g.traverse(msgspec.convert(too_many, s.TraverseRequest)),
        errors.LimitExceededError,
    )
    bad = {"start_substrate_id": "q"}
    same_error(
        w.api.post(f"{API}/relationships/traverse", json=bad),
        lambda: g.traverse(msgspec.convert(bad, s.TraverseRequest)),
        errors.InvalidIdError,
    )
    for q in (
        s.PathQuery(),
        s.PathQuery(direction="both"),
        s.PathQuery(relationship_types="dependency, sibling"),
    ):
        same(
            w.api.get(f"{API}/relationships/path/{ids[0]}/{ids[3]}?{query(q)}"),
            g.shortest_path(sid(ids[0]), sid(ids[3]), q),
        )
    same_error(
        w.api.get(f"{API}/relationships/path/{ids[5]}/{ids[0]}"),
        lambda: g.shortest_path(sid(ids[5]), sid(ids[0])),
        errors.NoPathError,
    )
    for q in (s.CyclesQuery(), s.CyclesQuery(limit=1, max_length=2)):
        same(w.api.get(f"{API}/relationships/cycles?{query(q)}"), g.cycles(q))
    for q in (s.ComponentsQuery(), s.ComponentsQuery(limit=1, member_limit=1)):
        ans = same(w.api.get(f"{API}/relationships/components?{query(q)}"), g.components(q))
        if ans["next_cursor"]:
            nxt = s.ComponentsQuery(limit=1, cursor=ans["next_cursor"])
            same(w.api.get(f"{API}/relationships/components?{query(nxt)}"), g.components(nxt))
    for q in (s.PageRankQuery(), s.PageRankQuery(limit=2, relationship_types="dependency")):
        same(w.api.get(f"{API}/relationships/pagerank?{query(q)}"), g.pagerank(q))
    bad_cursor = s.PageRankQuery(cursor="not-a-cursor")
    same_error(
        w.api.get(f"{API}/relationships/pagerank?{query(bad_cursor)}"),
        lambda: g.pagerank(bad_cursor),
        errors.ValidationError,
    )


# --- transfer ---------------------------------------------------------------------------


def test_export(world):
    w = world
    build_graph(w)
    for fmt in ("json", "ndjson"):
        res = w.api.get(f"{API}/substrates/export?format={fmt}")
        assert res.status == 200
        assert res.body == b"".join(w.shared.transfer.export(fmt))
    assert b"".join(w.shared.transfer.export()) == w.api.get(f"{API}/substrates/export").body


def test_import(world):
    w = world
    source = World()
    try:
        build_graph(source)
        doc = b"".join(source.shared.transfer.export("json"))
        lines = b"".join(source.shared.transfer.export("ndjson"))
    finally:
        source.close()
    same(
        w.api.post(f"{API}/substrates/import", body=doc, content_type="application/json"),
        w.twin.transfer.import_records(doc, b"application/json"),
    )
    # Again, as NDJSON: everything exists, everything skipped.
    same(
        w.api.post(f"{API}/substrates/import", body=lines, content_type="application/x-ndjson"),
        w.twin.transfer.import_records(lines, b"application/x-ndjson"),
    )
    assert b"".join(w.twin.transfer.export()) == b"".join(w.shared.transfer.export())
    # Over HTTP the body's media type is checked before the service is called; called
    # directly, the service refuses it alike.
    res = w.api.post(f"{API}/substrates/import", body=doc, content_type="text/csv")
    with pytest.raises(UnsupportedMediaTypeError) as info:
        w.twin.transfer.import_records(doc, b"text/csv")
    assert (res.status, res.json()["error"]) == (info.value.status, info.value.code)
    assert res.json()["details"] == info.value.details
    broken = lines.replace(b'"expression_code":"3"', b'"expression_code":"3 +"', 1)
    assert broken != lines
    w2 = World()
    try:
        exc = same_error(
            w2.api.post(
                f"{API}/substrates/import", body=broken, content_type="application/x-ndjson"
            ),
            lambda: w2.twin.transfer.import_records(broken, b"application/x-ndjson"),
            errors.ValidationError,
        )
        assert "line" in exc.details
        assert "index" in exc.details
        assert len(w2.twin_registry) == len(w2.api.app.registry) == 3
    finally:
        w2.close()


# --- system -----------------------------------------------------------------------------

REQUEST_FIELDS = {
    "uptime_seconds",
    "total_requests",
    "requests_per_second",
    "requests_per_second_1m",
    "avg_response_time_ms",
    "p50_response_time_ms",
    "p95_response_time_ms",
    "p99_response_time_ms",
    "total_errors",
    "error_rate",
    "errors_by_status_class",
    "error_rate_by_status_class",
    "responses_by_status",
    "memory_usage_mb",
    "cpu_usage_percent",
    "active_requests",
}


def test_health_and_metrics(world):
    w = world
    same(w.api.get(f"{API}/health"), w.shared.system.health(), clock=False)
    f = create(w, "lambda x: x", "lambda")
    c = create(w, "8")
    for i in range(3):
        w.api.post(f"{API}/substrates/{f}/invoke", json={"parameters": {"x": i}})
    w.api.post(f"{API}/substrates/{c}/divide")
    relate(w, "dependency", f, c)
    http = w.api.get(f"{API}/metrics")
    assert http.status == 200
    got, want = plain(w.shared.system.metrics()), http.json()
    assert set(got) == set(want)
    for key in set(want) - REQUEST_FIELDS:
        assert got[key] == want[key], key
    assert got["total_substrates"] == 2
    assert got["most_invoked_substrates"] == [{"substrate_id": f, "invocations": 3}]


# --- random sequences -------------------------------------------------------------------

TYPES = ["dependency", "composition", "sibling", "Lineage", "nope"]


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("create"), st.integers(0, 8)),
            st.tuples(
                st.just("relate"),
                st.integers(0, 8),
                st.integers(0, 8),
                st.sampled_from(TYPES),
                st.booleans(),
            ),
            st.tuples(st.just("delete"), st.integers(0, 8)),
        ),
        max_size=25,
    )
)
def test_random_sequences_answer_as_over_http(ops):
    w = World()
    try:
        ids = [f"0x{(i + 1) * 0x1111:016X}" for i in range(9)]
        made: dict[int, str] = {}
        for op in ops:
            if op[0] == "create":
                body = {"expression_type": "constant", "expression_code": str(op[1])}
                res = w.api.post(f"{API}/substrates", json=body)
                ans = agree(res, lambda b=body: w.twin.substrates.create(**b), 201)
                if ans is not None:
                    made[op[1]] = ans["substrate_id"]
            elif op[0] == "relate":
                _, x, y, kind, bi = op
                body = {
                    "rel_type": kind,
                    "source_id": made.get(x, ids[x]),
                    "target_id": made.get(y, ids[y]),
                    "bidirectional": bi,
                }
                req = msgspec.convert(body, s.CreateRelationship)
                res = w.api.post(f"{API}/relationships", json=body)
                agree(res, lambda r=req: w.twin.relationships.create(r), 201)
            else:
                target = made.pop(op[1], ids[op[1]])
                res = w.api.delete(f"{API}/substrates/{target}")
                agree(res, lambda t=target: w.twin.substrates.delete(sid(t)), 204)
        for svc, clock in ((w.shared, True), (w.twin, False)):
            same(w.api.get(f"{API}/substrates"), svc.substrates.list(), clock=clock)
            same(w.api.get(f"{API}/relationships"), svc.relationships.list(), clock=clock)
            same(w.api.get(f"{API}/relationships/stats"), svc.relationships.stats())
            same(w.api.get(f"{API}/relationships/components"), svc.graph.components())
            for x in made.values():
                same(
                    w.api.get(f"{API}/relationships/outgoing/{x}"),
                    svc.relationships.outgoing(sid(x)),
                    clock=clock,
                )
    finally:
        w.close()
