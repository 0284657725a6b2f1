"""The result cache (bfx.domain.results): keys, the byte-bounded LRU, counters, and
never serving a result for a deleted substrate — deleted here, through another
process's registry, or through the other worker of a real ``bfx serve``."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from asgi_driver import finish, started
from bfx import Registry, errors
from bfx.domain import substrates as domain_substrates
from bfx.domain.results import ENTRY_OVERHEAD, MISS, ResultCache, canonical_parameters
from bfx.domain.substrates import RESULT_RECHECK_FIRST
from bfx_server import Server, connections_to_each_worker, send_json

API = "/api/v1"
MIB = 1024 * 1024
#: ~1 ms a call (big-integer binomial): well above the caching threshold on any machine.
HEAVY = "lambda **kw: math.comb(kw['n'], kw['n'] // 2) % kw['m']"


def registry(**kw) -> Registry:
    """A registry caching every result, however cheap (the threshold at 0)."""
    reg = Registry(**kw)
    reg.substrates.result_min_ms = 0.0
    return reg


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10)  # fmt: skip
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)  # fmt: skip
PARAMS = st.dictionaries(st.text(max_size=8), JSON, max_size=6)


# --- keys -------------------------------------------------------------------------------


@given(PARAMS)
def test_a_key_is_the_parameters_in_any_key_order(params):
    key = canonical_parameters(params)
    assert key is not None
    shuffled = dict(reversed(list(params.items())))
    assert canonical_parameters(shuffled) == key
    assert msgspec.json.decode(key) == params  # nothing lost: equal keys mean equal inputs


def test_keys_that_must_differ_and_inputs_not_cached():
    assert canonical_parameters(None) == canonical_parameters({}) == b"{}"
    assert canonical_parameters({"x": 1}) != canonical_parameters({"x": 1.0})
    assert canonical_parameters({"x": 1}) != canonical_parameters({"x": True})
    assert canonical_parameters({"x": 0.0}) != canonical_parameters({"x": -0.0})
    # Inputs whose JSON would be shared by a different input are not cached.
    assert canonical_parameters({"x": (1, 2)}) is None  # a tuple encodes like a list
    assert canonical_parameters({"x": math.nan}) is None  # NaN encodes like null
    assert canonical_parameters({"x": math.inf}) is None
    assert canonical_parameters({"x": "\ud800"}) is None  # not UTF-8
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    assert canonical_parameters({"x": deep}) is None  # deeper than MAX_KEY_DEPTH, no recursion


# --- the LRU ----------------------------------------------------------------------------


def test_lru_by_bytes_counts_and_discard():
    cache = ResultCache(10 * (ENTRY_OVERHEAD + 64))
    for i in range(20):
        cache.put(1, f'{{"i":{i}}}'.encode(), i)
    assert cache.bytes <= cache.max_bytes
    assert len(cache) < 20
    assert cache.get(1, b'{"i":0}') is MISS  # the oldest went first
    assert cache.get(1, b'{"i":19}') == 19
    cache.put(2, b"{}", "two")
    assert cache.stats() == {**cache.stats(), "hits": 1, "misses": 1}
    cache.discard(1)
    assert cache.get(1, b'{"i":19}') is MISS
    assert cache.get(2, b"{}") == "two"
    assert cache.bytes == cache.stats()["bytes"] > 0
    cache.discard(2)
    assert (len(cache), cache.bytes) == (0, 0)


def test_a_result_too_large_for_the_cache_is_not_kept():
    cache = ResultCache(8 * 1024)
    cache.put(1, b"{}", list(range(1000)))  # ~4 KB: more than an eighth of the cache
    assert cache.get(1, b"{}") is MISS
    cache.put(1, b"{}", list(range(10)))
    assert cache.get(1, b"{}") == list(range(10))


def test_a_caller_mutating_its_answer_does_not_change_the_cache():
    cache = ResultCache(MIB)
    cache.put(1, b"{}", {"a": [1, 2]})
    got = cache.get(1, b"{}")
    got["a"].append(3)
    assert cache.get(1, b"{}") == {"a": [1, 2]}


# --- through the Registry -----------------------------------------------------------------


@given(PARAMS)
def test_cached_answers_equal_computed_ones(params):
    code = "lambda **kw: [kw, len(kw)]"
    with registry(result_cache_size=MIB) as cached, Registry() as plain:
        a = cached.create("lambda", code).substrate_id
        plain.create("lambda", code)
        want = plain.invoke(a, params).result
        assert cached.invoke(a, params).result == want  # the first call: computed
        assert cached.invoke(a, params).result == want  # slow once
        assert cached.invoke(a, params).result == want  # slow twice in a row: kept
        assert cached.invoke(a, params).result == want  # a hit
        assert cached.invoke(a, {**params, "longer-than-8": 0}).result != want  # a miss
        stats = cached.substrates.results.stats()
        assert (stats["hits"], stats["misses"]) == (1, 1)


class _Clock:
    """``perf_counter`` for :mod:`bfx.domain.substrates`: whatever runs between a pair
    of its reads (an evaluation, a lookup) takes ``took`` seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.took = 0.0
        self._started = False

    def perf_counter(self) -> float:
        if self._started:
            self.now += self.took
        self._started = not self._started
        return self.now


def _invoke_n(reg: Registry, sid: str, n: int) -> None:
    for _ in range(n):
        assert reg.invoke(sid, {"x": 1}).result == 2


def test_a_cheap_substrate_taken_for_costly_is_set_right(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(domain_substrates, "perf_counter", clock.perf_counter)
    with Registry(result_cache_size=MIB) as reg:  # the default 20 µs threshold
        sid = reg.create("expression", "x + 1").substrate_id
        results = reg.substrates.results
        clock.took = 0.000_001
        _invoke_n(reg, sid, 1)  # the first call
        clock.took = 0.001  # two calls slowed by noise, in a row: taken for costly
        _invoke_n(reg, sid, 2)
        assert len(results) == 1
        clock.took = 0.000_001  # cheap again: hits until the re-check, which runs fast
        _invoke_n(reg, sid, RESULT_RECHECK_FIRST)
        assert (results.hits, results.misses) == (RESULT_RECHECK_FIRST - 1, 0)
        assert len(results) == 0  # its results dropped, and no lookups from now on
        _invoke_n(reg, sid, 10)
        assert (results.hits, results.misses) == (RESULT_RECHECK_FIRST - 1, 0)


def test_a_costly_substrate_is_rechecked_ever_more_rarely(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(domain_substrates, "perf_counter", clock.perf_counter)
    clock.took = 0.001  # every evaluation (and, here, every lookup) takes 1 ms
    with Registry(result_cache_size=MIB) as reg:
        sid = reg.create("expression", "x + 1").substrate_id
        results = reg.substrates.results
        _invoke_n(reg, sid, 3)  # the first call, two slow ones: costly and kept
        evaluated = 3
        for interval in (RESULT_RECHECK_FIRST, 2 * RESULT_RECHECK_FIRST):
            _invoke_n(reg, sid, interval)  # hits, then one call evaluated: still slow
            evaluated += 1
        calls = 3 + 3 * RESULT_RECHECK_FIRST
        assert results.hits == calls - evaluated
        assert len(results) == 1
        assert reg.get(sid).invocations == calls


def test_hits_count_as_invocations_and_failures_are_not_cached():
    with registry(result_cache_size=MIB) as reg:
        sid = reg.create("expression", "x * 2").substrate_id
        assert [reg.invoke(sid, {"x": 21}).result for _ in range(3)] == [42, 42, 42]
        assert reg.get(sid).invocations == 3
        for _ in range(2):
            with pytest.raises(errors.InvocationError):
                reg.invoke(sid, {"x": "a" * 10_000})  # string repetition past the guard
        assert len(reg.substrates.results) == 1


def test_a_deleted_substrate_is_never_served():
    with registry(result_cache_size=MIB) as reg:
        sid = reg.create("expression", "x + 1").substrate_id
        assert [reg.invoke(sid, {"x": 1}).result for _ in range(4)] == [2, 2, 2, 2]
        assert reg.substrates.results.hits == 1
        reg.delete(sid)
        with pytest.raises(errors.NotFoundError):
            reg.invoke(sid, {"x": 1})
        assert len(reg.substrates.results) == 0
        # The same content again is the same id and computes the same result.
        assert reg.create("expression", "x + 1").substrate_id == sid
        assert reg.invoke(sid, {"x": 1}).result == 2


@pytest.mark.parametrize("result_cache_size", [MIB, 0])
def test_deleted_through_another_process_is_never_served(tmp_path, result_cache_size):
    """Registry ``b`` deletes on the shared SQLite store; ``a`` follows the change log on
    its next refresh and must answer 404 — from its result cache and from its compiled
    cache alike (``0``: the result cache off)."""
    a = registry(data_dir=tmp_path / "d", result_cache_size=result_cache_size)
    b = Registry(data_dir=tmp_path / "d")
    try:
        sid = a.create("expression", "x * 3").substrate_id
        for _ in range(4):  # the last from the result cache when on
            assert a.invoke(sid, {"x": 2}).result == 6
        assert a.invoke_many([(sid, {"x": 2})])[0].result == 6
        b.refresh()
        b.delete(sid)
        a.refresh()
        with pytest.raises(errors.NotFoundError):
            a.invoke(sid, {"x": 2})
        assert isinstance(a.invoke_many([(sid, {"x": 2})])[0], errors.NotFoundError)
        with pytest.raises(errors.NotFoundError):
            a.add(sid, 1, {"x": 2})
    finally:
        a.close()
        b.close()


# --- over HTTP ------------------------------------------------------------------------------


def test_metrics_count_hits_and_misses_over_http():
    api = started()
    try:
        before = api.get(f"{API}/metrics").json()["result_cache"]
        assert before["max_bytes"] == 64 * MIB  # the server's default
        sid = api.post(
            f"{API}/substrates", json={"expression_type": "lambda", "expression_code": HEAVY}
        ).json()["substrate_id"]
        want = math.comb(3000, 1500) % 1000003
        for params in ({"n": 3000, "m": 1000003}, {"n": 3000, "m": 1000003}, {"n": 3000, "m": 1000003}, {"m": 1000003, "n": 3000}, {"n": 3000, "m": 1000003}):  # fmt: skip
            res = api.post(f"{API}/substrates/{sid}/invoke", json={"parameters": params})
            assert res.json()["result"] == want
        after = api.get(f"{API}/metrics").json()["result_cache"]
        # The first call computes (and builds the function); the second and third, both
        # slow, make it costly and keep the result; the next two, in either key order,
        # are hits.
        assert after["misses"] - before["misses"] == 0
        assert after["hits"] - before["hits"] == 2
        assert after["entries"] == before["entries"] + 1
        assert api.delete(f"{API}/substrates/{sid}").status == 204
        res = api.post(f"{API}/substrates/{sid}/invoke", json={"parameters": {"n": 3000, "m": 1000003}})  # fmt: skip
        assert res.status == 404
        assert api.get(f"{API}/metrics").json()["result_cache"]["entries"] == before["entries"]
    finally:
        finish(api)


def test_the_cache_can_be_turned_off():
    from bfx.settings import Settings

    api = started(Settings(result_cache_size=0))
    try:
        sid = api.post(
            f"{API}/substrates", json={"expression_type": "lambda", "expression_code": HEAVY}
        ).json()["substrate_id"]
        for _ in range(2):
            res = api.post(f"{API}/substrates/{sid}/invoke", json={"parameters": {"n": 30, "m": 7}})
            assert res.status == 200
        stats = api.get(f"{API}/metrics").json()["result_cache"]
        assert stats == {"entries": 0, "bytes": 0, "max_bytes": 0, "hits": 0, "misses": 0}
    finally:
        finish(api)


@pytest.mark.e2e
def test_deleted_through_the_other_worker_is_never_served(tmp_path):
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "d"), "--workers", "2")
    try:
        first, second = connections_to_each_worker(srv.port)
        status, rec = send_json(first, "POST", "/substrates",
                            {"expression_type": "lambda", "expression_code": HEAVY})  # fmt: skip
        assert status == 201, rec
        path = f"/substrates/{rec['substrate_id']}/invoke"
        params = {"parameters": {"n": 3000, "m": 1000003}}
        for conn in (first, second, second, second, second):
            status, body = send_json(conn, "POST", path, params)
            assert (status, body["result"]) == (200, math.comb(3000, 1500) % 1000003)
        _, metrics = send_json(second, "GET", "/metrics")
        assert metrics["result_cache"]["hits"] >= 1
        assert send_json(first, "DELETE", f"/substrates/{rec['substrate_id']}")[0] == 204
        status, err = send_json(second, "POST", path, params)
        assert status == 404, err
        assert err["error"] == "not_found"
        first.close()
        second.close()
    finally:
        srv.stop()
