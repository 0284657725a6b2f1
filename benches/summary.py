"""Summary of a ``make bench`` run: Rust (criterion) vs Python (pytest-benchmark).

    python benches/summary.py --python-json target/bench-python.json \
        [--criterion-dir target/criterion] [--since target/bench-start] \
        [--out target/bench-summary.md]

Pairs criterion's ``pair/<name>`` benchmarks (benches/rust/core.rs) with the
pytest-benchmark tests whose ``extra_info["pair"]`` is ``<name>``
(benches/python/bench_core.py), and prints one markdown table: median
nanoseconds per operation on each side, their ratio, and the difference (what
crossing the Python boundary costs per operation: argument conversion, building
the answer's Python objects, the call itself). Python-only benchmarks (the
sandbox and the operators have no Rust counterpart) and Rust-only ones are
listed after it. Medians, because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    name: str
    ns_per_op: float
    ops: int
    note: str = ""


def _three(v: float) -> str:
    """Three significant digits, trailing zeros kept: 2.00, 12.5, 935, 1,234."""
    a = abs(v)
    return f"{v:.2f}" if a < 10 else f"{v:.1f}" if a < 100 else f"{v:,.0f}"


def fmt_ns(ns: float) -> str:
    if ns != ns:  # NaN
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= scale:
            return f"{_three(ns / scale)} {unit}"
    return f"{_three(ns)} ns"


def fmt_rate(ns: float) -> str:
    if not ns or ns != ns:
        return "-"
    rate = 1e9 / ns
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if rate >= scale:
            return f"{_three(rate / scale)} {unit}/s"
    return f"{_three(rate)}/s"


def criterion_figures(root: Path, since: float | None) -> dict[str, dict[str, Figure]]:
    """group -> function -> median ns per element, from criterion's JSON files."""
    out: dict[str, dict[str, Figure]] = {}
    if not root.is_dir():
        return out
    for est in root.glob("**/new/estimates.json"):
        meta_path = est.parent / "benchmark.json"
        if not meta_path.is_file():
            continue
        if since is not None and est.stat().st_mtime < since:
            continue  # left over from an earlier run of a benchmark that no longer exists
        meta = json.loads(meta_path.read_text())
        estimates = json.loads(est.read_text())
        throughput = meta.get("throughput") or {}
        ops = int(throughput.get("Elements") or throughput.get("Bytes") or 1)
        per_iter = float(estimates["median"]["point_estimate"])
        group = meta.get("group_id", "")
        name = meta.get("function_id") or meta.get("value_str") or est.parent.parent.name
        out.setdefault(group, {})[name] = Figure(name, per_iter / ops, ops)
    return out


def python_figures(path: Path) -> tuple[dict[str, Figure], list[Figure]]:
    """(pair name -> figure, other figures) from pytest-benchmark's --benchmark-json."""
    data = json.loads(path.read_text())
    pairs: dict[str, Figure] = {}
    others: list[Figure] = []
    for b in data.get("benchmarks", []):
        info = b.get("extra_info") or {}
        ops = int(info.get("ops") or info.get("calls_per_batch") or 1)
        ns = float(b["stats"]["median"]) * 1e9 / ops
        where = b.get("fullname", b["name"]).split("::")[0]
        label = f"{Path(where).stem}::{b['name']}"
        if "pair" in info:
            pairs[info["pair"]] = Figure(label, ns, ops)
        else:
            note = (
                info.get("python_only")
                or info.get("note")
                or ("sandbox is Python (DESIGN.md §1)" if "sandbox" in where else "context")
            )
            others.append(Figure(label, ns, ops, note))
    return pairs, others


def render(
    rust: dict[str, dict[str, Figure]], py_pairs: dict[str, Figure], py_other: list[Figure]
) -> str:
    lines = [
        "# bfx benchmark summary",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}; {platform.machine()}, {os.cpu_count()} CPUs, "
        f"CPython {platform.python_version()}. Medians; the machine may be shared, so read "
        "ratios, not absolute figures.",
        "",
        "## The same operations in Rust and through Python",
        "",
        "Rust: criterion `pair/<name>` (benches/rust/core.rs); Python: pytest-benchmark "
        "(benches/python/bench_core.py), same data. Time per operation; *boundary* = Python "
        "minus Rust per operation.",
        "",
        "| operation | ops per iteration | Rust | Python | Python / Rust | boundary per op | Python test |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    rust_pairs = rust.get("pair", {})
    names = sorted(set(rust_pairs) | set(py_pairs), key=_pair_order)
    for name in names:
        r, p = rust_pairs.get(name), py_pairs.get(name)
        r_ns = r.ns_per_op if r else float("nan")
        p_ns = p.ns_per_op if p else float("nan")
        ratio = f"{p_ns / r_ns:,.1f}x" if r and p and r_ns > 0 else "-"
        diff = fmt_ns(p_ns - r_ns) if r and p else "-"
        ops = (r or p).ops  # type: ignore[union-attr]
        lines.append(
            f"| {name} | {ops:,} | {fmt_ns(r_ns)} | {fmt_ns(p_ns)} | {ratio} | {diff} | "
            f"{p.name if p else 'missing'} |"
        )
    if not names:
        lines.append("| (no paired figures found) | | | | | | |")
    lines += [
        "",
        "## Python only, and Python context",
        "",
        "No Rust counterpart: the sandbox (parse, validate, evaluate) and the operators are "
        "Python by design; the Rust core stores, hashes and walks the graph. Rows marked "
        "with a note are Python-side variants of the paired operations, for context.",
        "",
        "| benchmark | ops per call | time per op | per second | why Python only / note |",
        "|---|---:|---:|---:|---|",
    ]
    for f in py_other:
        lines.append(
            f"| {f.name} | {f.ops:,} | {fmt_ns(f.ns_per_op)} | {fmt_rate(f.ns_per_op)} | {f.note} |"
        )
    rest = [(g, f) for g, fs in sorted(rust.items()) if g != "pair" for f in fs.values()]
    if rest:
        lines += [
            "",
            "## Rust only",
            "",
            "| benchmark | time per op |",
            "|---|---:|",
        ]
        lines += [f"| {g}/{f.name} | {fmt_ns(f.ns_per_op)} |" for g, f in rest]
    return "\n".join(lines) + "\n"


_ORDER = [
    "insert",
    "insert_many",
    "get",
    "get_many",
    "outgoing",
    "outgoing_hub_page",
    "link_unlink",
    "link_many",
    "dump",
    "load",
]


def _pair_order(name: str) -> tuple[int, str]:
    return (_ORDER.index(name) if name in _ORDER else len(_ORDER), name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--python-json", type=Path, default=ROOT / "target" / "bench-python.json")
    p.add_argument("--criterion-dir", type=Path, default=None)
    p.add_argument(
        "--since",
        type=Path,
        default=None,
        help="ignore criterion results older than this file (a stamp touched before the run)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "target" / "bench-summary.md")
    args = p.parse_args(argv)
    crit = args.criterion_dir
    if crit is None:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
        crit = target / "criterion"
    if not args.python_json.is_file():
        print(f"summary: no pytest-benchmark JSON at {args.python_json}", file=sys.stderr)
        return 1
    since = args.since.stat().st_mtime if args.since and args.since.exists() else None
    text = render(criterion_figures(crit, since), *python_figures(args.python_json))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"(written to {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
