"""Graph algorithms: bfx against rustworkx and NetworkX on the same generated graph.

    python benches/python/graph_compare.py                       # 1M substrates, 5M edges
    python benches/python/graph_compare.py --nodes 100000 --edges 500000
    python benches/python/graph_compare.py --nx-nodes 200000 --nx-edges 1000000

Each library runs in its own subprocess (one after the other, in the same run) so that
its peak memory (``ru_maxrss``) is its own. Every worker generates the same graph from
the same seed with numpy:

* sources skewed towards small indices (``src = n * u**2``), so node 0 is a hub with
  about ``edges / sqrt(n)`` outgoing relationships; targets uniform;
* one of the 17 relationship types each; 10% bidirectional; repeats of
  ``(source, target, type)`` dropped (the registry refuses them).

bfx stores the typed relationships; rustworkx and NetworkX get the equivalent simple
digraph (a bidirectional relationship as both directions, parallel links once), which is
what bfx's algorithms compute on (``docs/graph.md``). Timed, best of ``--repeat``:

* BFS to depth 3 from the hub (outgoing). bfx: ``graph_bfs`` (ids by layer) and
  ``graph_traverse`` (the full answer: depths, crossed edges, parents for paths, capped at
  100,000 nodes). rustworkx has no depth cut-off: ``bfs_layers`` (every layer) and a
  frontier loop over ``successor_indices`` for three levels. NetworkX:
  ``single_source_shortest_path_length(cutoff=3)``.
* SCC. bfx: ``graph_components`` (snapshot + Tarjan + grouping + sorting, first page);
  rustworkx: ``strongly_connected_components``; NetworkX: ``strongly_connected_components``.
* PageRank, damping 0.85, tol 1e-6, max_iter 100, and again with tol 1e-10. bfx:
  ``graph_pagerank`` (snapshot + iteration + top 10); rustworkx: ``pagerank``; NetworkX:
  ``pagerank`` (needs scipy).

Each worker also reports answers (nodes reached, component count, top-ranked node) so the
libraries can be checked against one another.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

TYPES = (
    "PART_TO_WHOLE", "WHOLE_TO_PART", "SIBLING", "CONTAINMENT", "ATTRIBUTE", "DEPENDENCY",
    "ADJACENCY", "AGGREGATION", "BOUNDARY", "CYCLE", "RECURSION", "LINEAGE", "EMBEDDING",
    "EXTRACTION", "ORTHOGONAL", "COMPOSITION", "INHERITANCE",
)  # fmt: skip


#: The stopping rule is "L1 change < n * tol": on a million nodes tol 1e-6 stops after one
#: iteration, so PageRank is also timed with this tighter tolerance (~60 iterations).
TIGHT = 1e-10


def generate(n: int, e: int, seed: int) -> tuple[Any, Any, Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    src = (n * rng.random(e) ** 2).astype(np.int64)
    dst = rng.integers(0, n, e, dtype=np.int64)
    rel = rng.integers(0, len(TYPES), e, dtype=np.int64)
    bidi = rng.random(e) < 0.1
    key = (src * n + dst) * len(TYPES) + rel
    _, first = np.unique(key, return_index=True)
    first.sort()
    return src[first], dst[first], rel[first], bidi[first]


def simple_pairs(n: int, src: Any, dst: Any, bidi: Any) -> tuple[Any, Any]:
    """The unique directed links: each relationship forwards, bidirectional ones back too."""
    import numpy as np

    u = np.concatenate([src, dst[bidi]])
    v = np.concatenate([dst, src[bidi]])
    # First occurrences in generation order: the libraries get their links in the
    # order bfx got its relationships (sorting by source would hand them
    # cache-friendly adjacency for free).
    _, first = np.unique(u * n + v, return_index=True)
    first.sort()
    return u[first], v[first]


class RssSampler:
    """Samples this process's RSS every 2 ms in a thread: the peak of each timed call
    above the RSS it started from is the memory that call needed."""

    def __init__(self) -> None:
        self.peak = 0.0
        self.extra: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            with self._lock:
                self.peak = max(self.peak, rss_mib())

    def reset(self) -> float:
        with self._lock:
            self.peak = rss_mib()
            return self.peak

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


SAMPLER: RssSampler | None = None


def best(fn: Callable[[], Any], repeat: int, name: str | None = None) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        out = None
        start = SAMPLER.reset() if SAMPLER is not None else 0.0
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        if SAMPLER is not None and name is not None:
            extra = max(SAMPLER.peak, rss_mib()) - start
            SAMPLER.extra[name] = max(SAMPLER.extra.get(name, 0.0), extra)
    return min(times), out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(lib: str, n: int, e: int, seed: int, repeat: int) -> dict[str, Any]:
    import numpy as np

    global SAMPLER
    SAMPLER = RssSampler()
    src, dst, rel, bidi = generate(n, e, seed)
    hub = int(np.argmax(np.bincount(np.concatenate([src, dst[bidi]]), minlength=n)))
    out: dict[str, Any] = {"lib": lib, "nodes": n, "relationships": len(src), "hub": hub}
    base = rss_mib()
    if lib == "bfx":
        from bfx import _core

        t = time.perf_counter()
        arena = _core.Arena(n, len(src))
        rows = [("constant", str(i), str(i), b"", 0, None) for i in range(n)]
        ids, _ = arena.insert_many(rows)
        del rows
        chunk = 500_000
        names = [TYPES[r] for r in rel.tolist()]
        s_l, d_l, b_l = src.tolist(), dst.tolist(), bidi.tolist()
        for a in range(0, len(s_l), chunk):
            items = [
                (names[k], ids[s_l[k]], ids[d_l[k]], b_l[k], b"", 0)
                for k in range(a, min(a + chunk, len(s_l)))
            ]
            results, _ = arena.link_many(items)
            assert not any(isinstance(x, Exception) for x in results)
        del names, s_l, d_l, b_l, items, results
        out["build_s"] = time.perf_counter() - t
        out["graph_mib"] = rss_mib() - base
        out["arena_mib"] = sum(arena.memory().values()) / 2**20
        hub_id = ids[hub]
        index = {i: k for k, i in enumerate(ids)}
        out["bfs_s"], reached = best(
            lambda: _core.graph_bfs(arena, hub_id, "outgoing", 3), repeat, "bfs"
        )
        out["bfs_reached"] = sum(len(layer) for layer in reached)
        out["traverse_s"], tr = best(
            lambda: _core.graph_traverse(arena, hub_id, "outgoing", 3, None, 100_000),
            repeat,
            "traverse",
        )
        out["traverse_nodes"] = len(tr[0])
        out["traverse_edges"] = len(tr[1])
        del tr
        out["scc_s"], (count, _) = best(
            lambda: _core.graph_components(arena, 0, 1, 1), repeat, "scc"
        )
        out["scc_count"] = count
        out["pagerank_s"], pr = best(
            lambda: _core.graph_pagerank(arena, 0.85, 1e-6, 100, 0, 10), repeat, "pagerank"
        )
        out["pagerank_top"] = index[pr[1][0][0]]
        out["pagerank_top_score"] = pr[1][0][1]
        out["pagerank_iterations"] = pr[2]
        out["pagerank_tight_s"], pr = best(
            lambda: _core.graph_pagerank(arena, 0.85, TIGHT, 100, 0, 10), repeat, "pagerank_tight"
        )
        out["pagerank_tight_iterations"] = pr[2]
        out["pagerank_tight_top"] = index[pr[1][0][0]]
        out["pagerank_tight_top_score"] = pr[1][0][1]
    elif lib == "rustworkx":
        import rustworkx as rx

        u, v = simple_pairs(n, src, dst, bidi)
        del src, dst, rel, bidi
        t = time.perf_counter()
        g = rx.PyDiGraph(multigraph=False)
        g.add_nodes_from(range(n))
        g.extend_from_edge_list(list(zip(u.tolist(), v.tolist(), strict=True)))
        out["build_s"] = time.perf_counter() - t
        del u, v
        out["links"] = g.num_edges()
        out["graph_mib"] = rss_mib() - base
        out["bfs_layers_s"], layers = best(lambda: rx.bfs_layers(g, [hub]), repeat, "bfs_layers")
        out["bfs_layers_reached_depth3"] = sum(len(x) for x in layers[:4])

        def depth3() -> int:
            seen = {hub}
            frontier = [hub]
            for _ in range(3):
                nxt = []
                for x in frontier:
                    for y in g.successor_indices(x):
                        if y not in seen:
                            seen.add(y)
                            nxt.append(y)
                frontier = nxt
            return len(seen)

        out["bfs_s"], out["bfs_reached"] = best(depth3, repeat, "bfs")
        out["scc_s"], comps = best(lambda: rx.strongly_connected_components(g), repeat, "scc")
        out["scc_count"] = len(comps)
        del comps
        out["pagerank_s"], pr = best(
            lambda: rx.pagerank(g, alpha=0.85, tol=1e-6, max_iter=100), repeat, "pagerank"
        )
        top = max(pr.items(), key=lambda kv: kv[1])
        out["pagerank_top"], out["pagerank_top_score"] = top
        out["pagerank_tight_s"], pr = best(
            lambda: rx.pagerank(g, alpha=0.85, tol=TIGHT, max_iter=100), repeat, "pagerank_tight"
        )
        top = max(pr.items(), key=lambda kv: kv[1])
        out["pagerank_tight_top"], out["pagerank_tight_top_score"] = top
    elif lib == "networkx":
        import networkx as nx

        u, v = simple_pairs(n, src, dst, bidi)
        del src, dst, rel, bidi
        t = time.perf_counter()
        g = nx.DiGraph()
        g.add_nodes_from(range(n))
        g.add_edges_from(zip(u.tolist(), v.tolist(), strict=True))
        out["build_s"] = time.perf_counter() - t
        del u, v
        out["links"] = g.number_of_edges()
        out["graph_mib"] = rss_mib() - base
        out["bfs_s"], reached = best(
            lambda: nx.single_source_shortest_path_length(g, hub, cutoff=3), repeat, "bfs"
        )
        out["bfs_reached"] = len(reached)
        out["scc_s"], count = best(
            lambda: sum(1 for _ in nx.strongly_connected_components(g)), repeat, "scc"
        )
        out["scc_count"] = count
        out["pagerank_s"], pr = best(
            lambda: nx.pagerank(g, alpha=0.85, tol=1e-6, max_iter=100), repeat, "pagerank"
        )
        top = max(pr.items(), key=lambda kv: kv[1])
        out["pagerank_top"], out["pagerank_top_score"] = top
        out["pagerank_tight_s"], pr = best(
            lambda: nx.pagerank(g, alpha=0.85, tol=TIGHT, max_iter=100), repeat, "pagerank_tight"
        )
        top = max(pr.items(), key=lambda kv: kv[1])
        out["pagerank_tight_top"], out["pagerank_tight_top_score"] = top
    out["call_extra_mib"] = {k: round(v, 1) for k, v in SAMPLER.extra.items()}
    SAMPLER.stop()
    out["peak_rss_mib"] = peak_mib()
    out["base_rss_mib"] = base
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=5_000_000)
    p.add_argument("--nx-nodes", type=int, help="NetworkX size if smaller (default: same)")
    p.add_argument("--nx-edges", type=int)
    p.add_argument("--libs", default="bfx,rustworkx,networkx")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--nx-repeat", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.nodes, a.edges, a.seed, a.repeat)))
        return
    results = []
    for lib in a.libs.split(","):
        n, e, r = a.nodes, a.edges, a.repeat
        if lib == "networkx":
            n, e, r = a.nx_nodes or n, a.nx_edges or e, a.nx_repeat
        cmd = [sys.executable, __file__, "--worker", lib, "--nodes", str(n), "--edges", str(e),
               "--seed", str(a.seed), "--repeat", str(r)]  # fmt: skip
        print(f"== {lib}: {n:,} nodes, {e:,} edges", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            raise SystemExit(f"{lib} worker failed")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(res), file=sys.stderr, flush=True)
        results.append(res)
    print(f"\n{'':12}{'nodes':>10}{'rels':>10}{'build s':>9}{'BFS3 ms':>9}{'SCC ms':>9}"
          f"{'PR ms':>9}{'PR10 ms':>9}{'peak MiB':>10}")  # fmt: skip
    for res in results:
        print(f"{res['lib']:12}{res['nodes']:>10,}{res['relationships']:>10,}"
              f"{res['build_s']:>9.1f}{res['bfs_s'] * 1e3:>9.1f}{res['scc_s'] * 1e3:>9.1f}"
              f"{res['pagerank_s'] * 1e3:>9.1f}{res['pagerank_tight_s'] * 1e3:>9.1f}"
              f"{res['peak_rss_mib']:>10.0f}")  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
