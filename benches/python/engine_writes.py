"""Creates before/after the engine: ``Registry.create`` and ``Registry.create_many``
(1,000 items), in memory and on SQLite, and ``GET /substrates/{id}`` in process, for
two source trees side by side, interleaved round by round.

    git worktree add /tmp/eng-before <commit>
    cp python/bfx/_core.abi3.so /tmp/eng-before/python/bfx/
    python benches/python/engine_writes.py --before /tmp/eng-before/python \
        --after python --rounds 5

Each round runs every case once per tree, each in a fresh process (so neither tree
warms the other's caches); the table shows the median of the rounds, per item.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CASE = r"""
import json, sys, tempfile, time
from bfx import Registry

case, n = sys.argv[1], int(sys.argv[2])
tmp = tempfile.TemporaryDirectory()
storage = None if case.endswith("memory") else tmp.name
out = {}
with Registry(storage=storage) as reg:
    # Warm up the sandbox and the store (first statements compile, tables open).
    reg.create("lambda", "lambda x: x + 1")
    if case.startswith("create_many"):
        items = [{"expression_type": "constant", "expression_code": str(i + 10)} for i in range(n)]
        t = time.perf_counter()
        answers = reg.create_many(items)
        out["s"] = time.perf_counter() - t
        assert all(not isinstance(a, Exception) for a in answers)
    elif case.startswith("create"):
        t = time.perf_counter()
        for i in range(n):
            reg.create("constant", str(i + 10), {"i": i})
        out["s"] = time.perf_counter() - t
    elif case.startswith("get_http"):
        from bfx.asgi.app import App
        try:
            from bfx.settings import Settings
        except ImportError:  # a tree from before bfx.settings
            from bfx.asgi.config import Settings
        s = reg.create("constant", "7", {"name": "seven", "tags": ["a", "b"], "n": 1})
        app = App(Settings(access_log=False), registry_factory=lambda _settings: reg)
        app.registry = reg
        BASE = "/api/v1/substrates"
        path = f"{BASE}/{s.substrate_id}".encode()
        scope = {"type": "http", "method": "GET", "path": path.decode(), "raw_path": path,
                 "query_string": b"", "headers": [], "http_version": "1.1", "scheme": "http",
                 "server": ("t", 80), "client": ("t", 1), "root_path": "", "asgi": {"version": "3.0"}}
        import asyncio
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}
        sent = []
        async def send(m):
            sent.append(m)
        async def run():
            for _ in range(200):
                await app(dict(scope), receive, send)
            sent.clear()
            t = time.perf_counter()
            for _ in range(n):
                await app(dict(scope), receive, send)
            return time.perf_counter() - t
        out["s"] = asyncio.run(run())
        assert sent[0]["status"] == 200, sent[:2]
print(json.dumps(out))
"""

CASES = [
    ("create_memory", 2000),
    ("create_sqlite", 1000),
    ("create_many_memory", 1000),
    ("create_many_sqlite", 1000),
    ("get_http_memory", 20000),
]


def run(tree: str, case: str, n: int) -> float:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    out = subprocess.run(
        [sys.executable, "-c", CASE, case, str(n)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["s"] / n * 1e6


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--before", required=True, help="the old tree's python/ directory")
    p.add_argument("--after", required=True, help="the new tree's python/ directory")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cases", default=",".join(c for c, _ in CASES))
    args = p.parse_args()
    wanted = args.cases.split(",")
    figures: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for case, n in CASES:
            if case not in wanted:
                continue
            for label, tree in (("before", args.before), ("after", args.after)):
                figures.setdefault((case, label), []).append(run(tree, case, n))
    print(f"{'case':<22}{'before µs/item':>16}{'after µs/item':>16}{'after/before':>14}")
    for case, _n in CASES:
        if case not in wanted:
            continue
        b = statistics.median(figures[(case, "before")])
        a = statistics.median(figures[(case, "after")])
        print(f"{case:<22}{b:>16.2f}{a:>16.2f}{a / b:>14.2f}")


if __name__ == "__main__":
    main()
