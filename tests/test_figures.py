"""The whole-graph figures of the JSON metrics: depth, density, the most connected
substrates, the size distribution, and when the cache recomputes them."""

from __future__ import annotations

import itertools

import pytest

from bfx import Registry
from bfx.domain import figures as fig
from bfx.domain.figures import FiguresCache, compute
from bfx.services import local_services


def _chain(reg: Registry, codes: list[str]) -> list[int]:
    ids = [int(reg.create("constant", c).substrate_id, 16) for c in codes]
    for a, b in itertools.pairwise(ids):
        reg.relate("DEPENDENCY", a, b)
    return ids


def test_an_empty_registry_has_zero_figures():
    f = compute(Registry().arena)
    assert (f.depth, f.density, f.top) == (0, 0.0, [])
    assert set(f.sizes.values()) == {0}


def test_depth_density_top_and_sizes_of_a_known_graph():
    reg = Registry()
    a, b, c, _d = _chain(reg, ["1", "2", "3", "4"])  # a -> b -> c -> d
    e = int(reg.create("constant", "5" * 20).substrate_id, 16)  # 20 characters
    reg.relate("DEPENDENCY", e, c)
    reg.relate("COMPOSITION", c, a)  # a is no longer a root: e is the only one
    f = compute(reg.arena)
    assert f.depth == 3  # e -> c (1) -> a, d (2) -> b (3), each at its shortest
    assert f.density == pytest.approx(5 / (5 * 4))
    # c: b->c, c->d, e->c, c->a = 4 ends; a: a->b, c->a = 2; b 2; d 1; e 1.
    assert f.top[0] == (c, 4)
    assert f.top[1:3] == sorted([(a, 2), (b, 2)])
    assert len(f.top) == fig.TOP_CONNECTED
    assert f.sizes == {"0-16": 4, "17-64": 1, "65-256": 0, "257-1024": 0, ">1024": 0}


def test_a_graph_that_is_only_a_cycle_has_no_root_and_depth_0():
    reg = Registry()
    a, _b = _chain(reg, ["1", "2"])
    reg.relate("DEPENDENCY", _b, a)
    assert compute(reg.arena).depth == 0


def test_the_cache_recomputes_only_after_a_change_and_its_cost_interval(monkeypatch):
    reg = Registry()
    _chain(reg, ["1", "2"])
    store, arena = reg.store, reg.arena
    cache = FiguresCache(lambda: arena, lambda: (store.seq, len(arena), arena.relationship_count))
    first = cache.get()
    assert cache.get() is first  # nothing changed
    assert cache.computed == 1
    reg.create("constant", "3")
    # Changed, but too soon after a costly computation: the cached figures answer.
    monkeypatch.setattr(fig, "COST_FACTOR", 1e9)
    first.cost = 1.0
    assert cache.get() is first
    monkeypatch.setattr(fig, "COST_FACTOR", 10.0)
    first.cost = 0.0
    again = cache.get()
    assert again is not first
    assert cache.computed == 2
    assert again.sizes["0-16"] == 3


def test_the_json_metrics_carry_the_figures_and_the_compiled_cache_counts():
    reg = Registry()
    a, b = _chain(reg, ["1", "2"])
    from bfx.asgi.metrics import RequestMetrics

    counters = RequestMetrics()
    counters.cache = reg.substrates.cache
    svc = local_services(
        reg, max_answer_bytes=None, batch_time_budget=None, request_metrics=counters.snapshot
    )
    svc.substrates.invoke(a, None)
    svc.substrates.invoke(a, None)
    m = svc.system.metrics()
    assert m.graph_depth == 1
    assert m.graph_density == pytest.approx(0.5)
    assert {(c.substrate_id, c.connections) for c in m.most_connected_substrates} == {
        (f"0x{a:016X}", 1),
        (f"0x{b:016X}", 1),
    }
    assert m.substrate_size_distribution["0-16"] == 2
    assert m.graph_figures_age_seconds is not None
    assert m.graph_figures_age_seconds >= 0
    assert m.compiled_cache_hits + m.compiled_cache_misses == 2
    assert m.compiled_cache_hits >= 1
