"""Metadata update (``PATCH /substrates/{id}``, ``Registry.update``): JSON merge patch as
RFC 7396 defines it, over HTTP with its refusals, in every store and across processes
through the change log, and concurrent patches through two workers of a real ``bfx
serve`` that lose nothing."""

from __future__ import annotations

import threading

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_driver import finish, started
from bfx import Registry, errors
from bfx.domain.metadata import merge_patch
from bfx_server import Server, connections_to_each_worker, send_json

API = "/api/v1"

# RFC 7396, Appendix A: (target, patch, result).
RFC_7396_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]

LEAF = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
VALUE = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3),
    max_leaves=10,
)  # fmt: skip
OBJECT = st.dictionaries(st.sampled_from("abcd"), VALUE, max_size=4)


@pytest.mark.parametrize(("target", "patch", "result"), RFC_7396_EXAMPLES)
def test_rfc_7396_examples(target, patch, result):
    before = msgspec.json.encode(target)
    assert merge_patch(target, patch) == result
    assert msgspec.json.encode(target) == before  # the target is left as it was


@given(OBJECT, OBJECT)
def test_a_patch_applied_twice_changes_nothing_more(target, patch):
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once
    for name, value in patch.items():
        if value is None:
            assert name not in once
        elif not isinstance(value, dict):
            assert once[name] == value


def test_a_patch_nested_too_deep_is_refused_without_recursing_forever():
    patch: dict = {}
    inner = patch
    for _ in range(5000):
        inner["a"] = {}
        inner = inner["a"]
    with pytest.raises(errors.ValidationError) as info:
        merge_patch({}, patch)
    assert info.value.details["reason"] == "too_deep"


# --- over HTTP -------------------------------------------------------------------------


@pytest.fixture
def api():
    driver = started()
    yield driver
    finish(driver)


def _create(api, code: str, metadata=None) -> str:
    body = {"expression_type": "constant", "expression_code": code}
    if metadata is not None:
        body["metadata"] = metadata
    res = api.post(f"{API}/substrates", json=body)
    assert res.status == 201, res
    return res.json()["substrate_id"]


def _patch(api, sid: str, body, **kw):
    return api.request("PATCH", f"{API}/substrates/{sid}", json=body, **kw)


def _edges(api, sid: str) -> list:
    out = api.get(f"{API}/relationships/outgoing/{sid}").json()["relationships"]
    inc = api.get(f"{API}/relationships/incoming/{sid}").json()["relationships"]
    return sorted(out + inc, key=lambda e: e["relationship_id"])


def test_patch_merges_and_keeps_id_edges_and_counts(api):
    sid = _create(api, "21", {"name": "twenty-one", "tags": ["a"], "info": {"x": 1, "y": 2}})
    other = _create(api, "22")
    for body in (
        {"rel_type": "SIBLING", "source_id": sid, "target_id": other, "bidirectional": True,
         "constraints": {"why": "neighbours"}},
        {"rel_type": "DEPENDENCY", "source_id": other, "target_id": sid},
        {"rel_type": "CYCLE", "source_id": sid, "target_id": sid},
    ):  # fmt: skip
        assert api.post(f"{API}/relationships", json=body).status == 201
    for _ in range(3):
        api.post(f"{API}/substrates/{sid}/invoke", json={})
    before = api.get(f"{API}/substrates/{sid}").json()
    edges = _edges(api, sid)
    res = _patch(
        api, sid, {"metadata": {"name": "renamed", "info": {"x": None, "z": 3}, "tags": None}}
    )
    assert res.status == 200, res
    after = res.json()
    assert after["metadata"] == {"name": "renamed", "info": {"y": 2, "z": 3}}
    assert {k: v for k, v in after.items() if k != "metadata"} == {
        k: v for k, v in before.items() if k != "metadata"
    }  # the id, times, code and invocation count stay
    assert api.get(f"{API}/substrates/{sid}").json() == after
    assert _edges(api, sid) == edges  # every edge, its constraints and time, kept
    assert api.get(f"{API}/relationships/outgoing/{other}").json()["count"] == 2
    found = api.get(f"{API}/substrates/search?name=renamed").json()
    assert [s["substrate_id"] for s in found["substrates"]] == [sid]
    assert api.get(f"{API}/substrates/search?name=twenty").json()["count"] == 0
    # An empty patch changes nothing; removing every key leaves {}.
    assert _patch(api, sid, {"metadata": {}}).json() == after
    emptied = _patch(api, sid, {"metadata": {"name": None, "info": None}}).json()
    assert emptied["metadata"] == {}


@pytest.mark.parametrize(
    ("path_id", "body", "status", "error"),
    [
        ("0x1", {"metadata": {"a": 1}}, 404, "not_found"),
        ("xyz", {"metadata": {"a": 1}}, 400, "invalid_id"),
        ("SID", {"metadata": 5}, 422, "validation_error"),
        ("SID", {"metadata": [1]}, 422, "validation_error"),
        ("SID", {"metadata": None}, 422, "validation_error"),
        ("SID", {}, 422, "validation_error"),
        ("SID", {"metadata": {}, "name": "x"}, 422, "validation_error"),
        ("SID", {"metadata": {"big": "x" * 70_000}}, 422, "limit_exceeded"),
        ("SID", {"metadata": {"a": {}}}, 200, None),
    ],
)
def test_patch_refusals(api, path_id, body, status, error):
    sid = _create(api, "7")
    res = _patch(api, sid if path_id == "SID" else path_id, body)
    assert res.status == status, res
    if error is not None:
        assert set(res.json()) == {"error", "message", "details"}
        assert res.json()["error"] == error
        assert api.get(f"{API}/substrates/{sid}").json()["metadata"] == {}


def test_patch_bodies_the_server_refuses_before_the_domain(api):
    sid = _create(api, "8")
    deep: object = 1
    for _ in range(40):
        deep = {"a": deep}
    res = _patch(api, sid, {"metadata": deep})
    assert (res.status, res.json()["error"]) == (422, "validation_error")
    res = api.request(
        "PATCH", f"{API}/substrates/{sid}", body=b"{", content_type="application/json"
    )
    assert res.status == 400
    res = api.request("PATCH", f"{API}/substrates/{sid}", body=b"x", content_type="text/plain")
    assert res.status == 415
    # Growing past the bound one patch at a time is refused too, and keeps what was there.
    assert _patch(api, sid, {"metadata": {"a": "x" * 40_000}}).status == 200
    res = _patch(api, sid, {"metadata": {"b": "y" * 40_000}})
    assert (res.status, res.json()["error"]) == (422, "limit_exceeded")
    assert set(api.get(f"{API}/substrates/{sid}").json()["metadata"]) == {"a"}


# --- every store, and the change log ---------------------------------------------------


def test_memory_registry_update():
    with Registry() as reg:
        a = reg.create("constant", "1", {"n": 1})
        b = reg.create("constant", "2")
        reg.relate("LINEAGE", a.substrate_id, b.substrate_id, constraints={"k": 1})
        got = reg.update(a.substrate_id, {"n": None, "m": 2})
        assert got.metadata == {"m": 2}
        assert got.substrate_id == a.substrate_id
        assert reg.get(a.substrate_id).metadata == {"m": 2}
        assert [r.constraints for r in reg.outgoing(a.substrate_id)[1]] == [{"k": 1}]
        with pytest.raises(errors.NotFoundError):
            reg.update(12345, {"a": 1})
        with pytest.raises(errors.ValidationError):
            reg.update(a.substrate_id, ["not", "an", "object"])  # type: ignore[arg-type]


def test_every_durable_store_logs_the_update(store_locator):
    """SQLite and PostgreSQL: another process sees the update on its next refresh, with
    the substrate's relationships intact, and a restart keeps it."""
    a = Registry(storage=store_locator)
    b = Registry(storage=store_locator)
    try:
        one = a.create("constant", "1", {"name": "one"})
        two = a.create("constant", "2")
        a.relate("SIBLING", one.substrate_id, two.substrate_id, bidirectional=True)
        b.refresh()
        assert b.get(one.substrate_id).metadata == {"name": "one"}
        seq = a.store.seq
        a.update(one.substrate_id, {"name": "uno", "lang": "it"})
        assert a.store.seq == seq + 1  # one substrate_updated entry
        assert b.refresh() == 1
        assert b.get(one.substrate_id).metadata == {"name": "uno", "lang": "it"}
        assert b.outgoing(two.substrate_id)[0] == 1
        # An update, then a delete, both applied from the log in one catch-up.
        a.update(two.substrate_id, {"x": 1})
        a.delete(two.substrate_id)
        b.refresh()
        assert two.substrate_id not in b
        # Through b, seen by a: each process applies the other's update.
        b.update(one.substrate_id, {"lang": None})
        a.refresh()
        assert a.get(one.substrate_id).metadata == {"name": "uno"}
        # A patch that changes nothing writes nothing.
        seq = a.store.seq
        a.update(one.substrate_id, {"absent": None})
        assert a.store.seq == seq
    finally:
        a.close()
        b.close()
    with Registry(storage=store_locator) as again:
        assert again.get(one.substrate_id).metadata == {"name": "uno"}


def test_a_sqlite_restart_from_the_snapshot_replays_the_update(tmp_path):
    data = tmp_path / "d"
    with Registry(data_dir=data) as reg:
        sid = reg.create("constant", "3", {"v": 1}).substrate_id
    with Registry(data_dir=data) as reg:  # from the snapshot written at close
        reg.update(sid, {"v": 2})
        other = Registry(data_dir=data)
        try:
            other.refresh()
            assert other.get(sid).metadata == {"v": 2}
        finally:
            other.close()
    with Registry(data_dir=data) as reg:
        assert reg.get(sid).metadata == {"v": 2}


# --- two workers of a real server ----------------------------------------------------------


@pytest.mark.e2e
def test_concurrent_patches_through_two_workers_lose_nothing(tmp_path):
    rounds = 60
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "d"), "--workers", "2")
    try:
        conns = connections_to_each_worker(srv.port)
        status, rec = send_json(conns[0], "POST", "/substrates",
                            {"expression_type": "constant", "expression_code": "5"})  # fmt: skip
        assert status == 201, rec
        path = f"/substrates/{rec['substrate_id']}"
        failures: list = []

        def patch(worker: int) -> None:
            for i in range(rounds):
                status, body = send_json(conns[worker], "PATCH", path,
                                     {"metadata": {f"w{worker}-{i}": i, "last": worker}})  # fmt: skip
                if status != 200 or body["metadata"].get(f"w{worker}-{i}") != i:
                    failures.append((worker, i, status, body))

        threads = [threading.Thread(target=patch, args=(w,)) for w in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        want = {f"w{w}-{i}" for w in (0, 1) for i in range(rounds)}
        for conn in conns:  # each worker, on its very next request
            status, got = send_json(conn, "GET", path)
            assert status == 200
            assert set(got["metadata"]) - {"last"} == want
            assert got["substrate_id"] == rec["substrate_id"]
        # Read-your-writes: a patch through one worker is seen by the other at once.
        for i in range(20):
            writer, reader = conns[i % 2], conns[(i + 1) % 2]
            assert send_json(writer, "PATCH", path, {"metadata": {"seen": i}})[0] == 200
            assert send_json(reader, "GET", path)[1]["metadata"]["seen"] == i
        for conn in conns:
            conn.close()
    finally:
        srv.stop()


def test_the_service_answers_what_http_answers(api):
    from bfx.services import local_services

    svc = local_services(
        api.app.registry, max_answer_bytes=None, batch_time_budget=None, request_metrics=dict
    ).substrates
    sid = _create(api, "9", {"a": 1})
    answer = svc.update(int(sid, 16), {"b": 2})
    assert (
        msgspec.json.decode(msgspec.json.encode(answer))
        == api.get(f"{API}/substrates/{sid}").json()
    )
    http = _patch(api, sid, {"metadata": {"a": None}}).json()
    assert http["metadata"] == {"b": 2}
    with pytest.raises(errors.NotFoundError) as info:
        svc.update(1, {"a": 1})
    assert info.value.to_dict() == _patch(api, "0x1", {"metadata": {"a": 1}}).json()
