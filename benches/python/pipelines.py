"""Pipelines, measured: one ``Registry.invoke`` of a k-step pipeline against the same k
steps composed by hand (k ``Registry.invoke`` calls, each result passed to the next) and
against the floor (k calls of the step's compiled function), in one run.

    PYTHONPATH=python python benches/python/pipelines.py [--calls 2000] [--rounds 5]

The step is ``x + 1`` (an ``expression``): cheap on purpose, so the table shows what
running a step costs a pipeline beyond the step itself. The pipeline's plan is built
once, outside the timing (as the compiled cache keeps it). The result cache is off.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bfx import Registry

STEPS = (1, 10, 100)


def timed(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(calls: int, rounds: int) -> list[tuple[int, float, float, float]]:
    rows = []
    with Registry() as reg:
        step = reg.create("expression", "x + 1").substrate_id
        compiled = reg.compiled(step)
        invoke = reg.invoke
        for k in STEPS:
            steps = [{"substrate_id": step}] + [{"substrate_id": step, "as": "x"}] * (k - 1)
            pid = reg.create("pipeline", json.dumps({"steps": steps})).substrate_id
            assert invoke(pid, {"x": 0}).result == k  # planned once, outside the timing

            def pipeline(pid=pid):
                return invoke(pid, {"x": 0})

            def by_hand(k=k):
                v = 0
                for _ in range(k):
                    v = invoke(step, {"x": v}).result
                return v

            def floor(k=k):
                v = 0
                for _ in range(k):
                    v = compiled.invoke({"x": v})
                return v

            n = max(calls // k, 20)
            a, b, c = [], [], []
            for _ in range(rounds):
                a.append(timed(pipeline, n))
                b.append(timed(by_hand, n))
                c.append(timed(floor, n))
            rows.append((k, statistics.median(a), statistics.median(b), statistics.median(c)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="steps run per round and case")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"{'steps':>5} | {'pipeline µs':>11} | {'by hand µs':>10} | {'floor µs':>8} | "
          f"{'per step: pipeline / by hand / floor µs':>40}")  # fmt: skip
    for k, pipe, hand, floor in measure(args.calls, args.rounds):
        print(
            f"{k:>5} | {pipe * 1e6:>11.1f} | {hand * 1e6:>10.1f} | {floor * 1e6:>8.1f} | "
            f"{pipe * 1e6 / k:>12.2f} / {hand * 1e6 / k:.2f} / {floor * 1e6 / k:.2f}"
        )


if __name__ == "__main__":
    main()
