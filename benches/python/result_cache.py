"""The result cache, measured: ``Registry.invoke`` of the same call repeated, with the
cache off and on, in one run; and what a shared Redis cache would cost instead (a GET
of a cached result over loopback, tests/redis_server.py's server).

    PYTHONPATH=python python benches/python/result_cache.py [--calls 2000] [--rounds 5]

Three expressions: light (a few arithmetic nodes), medium (sums over 10,000-item
lists) and heavy (a 3,000-choose-1,500 big-integer binomial). Each round times
``--calls`` invokes of one parameter set per case and mode; the table shows the
median of the rounds, per call, and the share of the cache-on calls that were hits (a
cheap expression is not cached: ``Substrates.result_min_ms``). Redis: ``--calls`` GETs of a result-sized value on one
kept-alive connection, and (for scale) a local hit, in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from bfx import Registry

CASES = (
    ("light", "expression", "x * y + 1", {"x": 6, "y": 7}),
    ("medium", "expression", "sum([x] * 10000) + sum([y * 0.5] * 10000)", {"x": 3, "y": 2}),
    ("heavy", "expression", "math.comb(x, x // 2) % 1000003", {"x": 3000}),
)
MIB = 1024 * 1024


def per_call(reg: Registry, sid: int, params: dict, calls: int) -> float:
    invoke = reg.invoke
    start = time.perf_counter()
    for _ in range(calls):
        invoke(sid, params)
    return (time.perf_counter() - start) / calls


def measure_invokes(calls: int, rounds: int) -> list[tuple[str, float, float, float]]:
    rows = []
    with Registry() as off, Registry(result_cache_size=64 * MIB) as on:
        for name, kind, code, params in CASES:
            a = off.create(kind, code).identity
            b = on.create(kind, code).identity
            off.invoke(a, params)  # compiled once, outside the timing
            on.invoke(b, params)  # and the one miss that fills the cache
            uncached, cached = [], []
            hits = on.substrates.results.hits
            for _ in range(rounds):
                uncached.append(per_call(off, a, params, calls))
                cached.append(per_call(on, b, params, calls))
            share = (on.substrates.results.hits - hits) / (calls * rounds)
            rows.append((name, statistics.median(uncached), statistics.median(cached), share))
    return rows


def measure_redis(calls: int, rounds: int) -> tuple[float, float] | None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    import redis_server

    try:
        server = redis_server.start()
    except redis_server.Unavailable as exc:
        print(f"Redis not measured: {exc}")
        return None
    try:
        client = server.client()
        value = b'{"substrate_id":"0x0D20BC49950301AD","result":424242}'
        client.set("bfx:result:0D20BC49950301AD:{}", value)
        get = client.get
        client.ping()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(calls):
                get("bfx:result:0D20BC49950301AD:{}")
            times.append((time.perf_counter() - start) / calls)
        client.close()
    finally:
        server.stop()
    from bfx.domain.results import ResultCache, canonical_parameters

    cache = ResultCache(MIB)
    key = canonical_parameters({"x": 6, "y": 7})
    cache.put(1, key, 424242)
    local = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            cache.get(1, canonical_parameters({"x": 6, "y": 7}))
        local.append((time.perf_counter() - start) / calls)
    return statistics.median(times), statistics.median(local)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    print(
        f"Registry.invoke, the same call repeated ({args.calls} calls x {args.rounds} rounds, median)"
    )
    print(f"{'case':<8} {'uncached µs':>12} {'cache on µs':>12} {'speed-up':>9} {'hits':>6}")
    for name, off, on, share in measure_invokes(args.calls, args.rounds):
        print(f"{name:<8} {off * 1e6:>12.2f} {on * 1e6:>12.2f} {off / on:>8.1f}x {share:>6.0%}")
    redis = measure_redis(args.calls, args.rounds)
    if redis is not None:
        remote, local = redis
        print(f"Redis GET on loopback (one kept-alive connection): {remote * 1e6:.2f} µs")
        print(f"local cache hit (key + lookup): {local * 1e6:.2f} µs")


if __name__ == "__main__":
    main()
