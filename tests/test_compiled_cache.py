"""The compiled-expression cache (``bfx.domain.substrates.CompiledCache``): least
recently used out first, hits and misses counted, and a lookup that races an
eviction answers what it found."""

from __future__ import annotations

from collections import OrderedDict

from bfx.domain.substrates import CompiledCache
from racing import race


def test_a_lookup_keeps_an_entry_and_the_least_recently_used_goes():
    cache = CompiledCache(2)
    a, b, c = object(), object(), object()
    cache.put(1, a)  # type: ignore[arg-type]
    cache.put(2, b)  # type: ignore[arg-type]
    assert cache.get(1) is a  # 1 is now the most recent
    cache.put(3, c)  # type: ignore[arg-type]
    assert cache.get(2) is None  # evicted
    assert cache.get(1) is a
    assert cache.get(3) is c
    assert (cache.hits, cache.misses) == (3, 1)
    assert len(cache) == 2


def test_a_lookup_racing_an_eviction_answers_what_it_found():
    class EvictedMeanwhile(OrderedDict):
        def move_to_end(self, key, last=True):  # another thread evicted it first
            self.pop(key)
            super().move_to_end(key, last)

    cache = CompiledCache(4)
    found = object()
    cache._items = EvictedMeanwhile({7: found})
    assert cache.get(7) is found
    assert cache.get(7) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_threads_looking_up_and_putting_lose_no_lookup():
    cache = CompiledCache(8)
    for key in range(16):
        cache.put(key, object())  # type: ignore[arg-type]
    rounds, threads = 2_000, 6

    def work(seed: int) -> None:
        for i in range(rounds):
            key = (seed * 7 + i) % 16
            if cache.get(key) is None:
                cache.put(key, object())  # type: ignore[arg-type]

    race(work, threads)
    assert cache.hits + cache.misses == rounds * threads
    assert len(cache) == 8
