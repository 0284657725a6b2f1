"""``bfx capacity``: measure memory per substrate and project the maximum for a RAM size.

    bfx capacity --substrates 10000000 --ram 15GiB
    python -m bfx.capacity --substrates 2000000 --relationships-per-substrate 10 --json

It builds ``--substrates`` synthetic substrates, each with
``--relationships-per-substrate`` relationships, shaped by ``--expression-length``
(characters of a lambda), ``--metadata-bytes`` and ``--constraints-bytes`` (JSON
bytes of a substrate's metadata and of a relationship's constraints). Records go
straight into the Rust arena (``Arena.insert_many`` / ``link_many`` in chunks), not
through the sandbox: the expression texts are synthesised distinct, valid and already
canonical (a sample is checked against the sandbox). While building, it measures the
resident set (RSS) of this process at a few points (``--points``, percent of
``--substrates``) and reports, for each:

* **measured**: RSS above the baseline divided by the substrates built so far, each
  substrate carrying its share of relationships (raw RSS, as a server that never trims
  its heap would show; after ``malloc_trim(0)``; and the build's peak RSS), and the
  arena's own accounting;
* **extrapolated**: the maximum number of substrates that fit in ``--ram`` (minus
  ``--reserve`` and the measured fixed baseline of the process), linear in the
  per-substrate cost measured at the largest point.

With ``--disk-sample N`` (when the durable registry, ``bfx.Registry(data_dir=...)``,
is available) it also writes N substrates of the same shape through it and reports
the bytes on disk per substrate: sampled, then extrapolated.

Sizes are read as ``bfx serve --body-limit`` reads them (one grammar,
:func:`bfx.settings.parse_size`): whole numbers with binary units, ``15GiB`` =
``15GB`` = ``15G`` = 15 x 2**30 bytes (as the seed's "15 GB = 15,360 MB"); ``--reserve``
also takes ``0``. A ``--ram`` too small to hold ``--reserve`` and the process's own
baseline is refused (exit 2): there would be nothing to project.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bfx.settings import parse_size

__all__ = ["Shape", "add_parser", "main", "parse_size", "run"]

PROG = "bfx capacity"
DESCRIPTION = (
    "Build N synthetic substrates and relationships in the Rust arena, measure resident "
    "memory (and bytes on disk through the durable registry) per substrate, and project "
    "the maximum for a RAM size. Output says what was measured and what was extrapolated."
)
DEFAULT_EXPRESSION = "lambda **kw: kw.get('x', 0) * kw.get('y', 0)"
DEFAULT_EXPRESSION_LENGTH = len(DEFAULT_EXPRESSION)  # 44: the seed's typical lambda
DEFAULT_METADATA_BYTES = 32  # {"name":"s0000042______________"}: a short name
DEFAULT_POINTS = (10.0, 25.0, 50.0, 100.0)
DEFAULT_CHUNK = 20_000
REL_TYPES_COUNT = 17
#: What one more worker adds to a sharing server's PSS after some traffic (interpreter,
#: bfx, Granian, its private pages of the arena), measured at 1M substrates + 3M
#: relationships by ``benches/python/worker_pss.py`` (BENCHMARKS.md, Workers share the
#: arena), rounded up.
WORKER_PRIVATE_BYTES = 20 * 2**20
#: Plus the worker's caches, which are its own: the result cache at its default bound
#: (``--result-cache-size`` 64 MiB) and the compiled-expression cache full (100,000
#: entries at the 2,476 B each BENCHMARKS.md measured, "A real server").
WORKER_BYTES = WORKER_PRIVATE_BYTES + 64 * 2**20 + 100_000 * 2476

# "lambda **kw: kw.get('" + key + "', 0) * 1" + zero-padded index
_CODE_HEAD = "lambda **kw: kw.get('"
_CODE_MID = "', 0) * 1"
_CODE_FIXED = len(_CODE_HEAD) + len(_CODE_MID)
# {"name":"s" + zero-padded index + padding + "}
_META_HEAD = b'{"name":"s'
_META_TAIL = b'"}'
_META_FIXED = len(_META_HEAD) + len(_META_TAIL)
# {"w":"" + padding + "}
_CONSTRAINTS_FIXED = len(b'{"w":""}')

# ------------------------------------------------------------------------------- parsing


def _size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size_or_zero_arg(text: str) -> int:
    return 0 if text.strip() == "0" else _size_arg(text)


def _int_arg(low: int, high: int | None = None):
    def check(text: str) -> int:
        try:
            value = int(text.replace("_", "").replace(",", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"between {low:,} and {high:,}" if high is not None else f"at least {low:,}"
            raise argparse.ArgumentTypeError(f"must be {bound}: {text}")
        return value

    return check


def _points_arg(text: str) -> tuple[float, ...]:
    try:
        values = sorted({float(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of percentages: {text!r}") from None
    if not values or values[0] <= 0 or values[-1] > 100:
        raise argparse.ArgumentTypeError(f"percentages must be in (0, 100]: {text!r}")
    if values[-1] != 100:
        values.append(100.0)
    return tuple(values)


# ------------------------------------------------------------------------------- the shape


@dataclass(frozen=True)
class Shape:
    """What each synthetic record looks like."""

    substrates: int
    relationships_per_substrate: int = 3
    expression_length: int = DEFAULT_EXPRESSION_LENGTH
    metadata_bytes: int = DEFAULT_METADATA_BYTES
    constraints_bytes: int = 0

    @property
    def digits(self) -> int:
        return len(str(max(self.substrates - 1, 0)))

    @property
    def min_expression_length(self) -> int:
        return _CODE_FIXED + 1 + self.digits  # a one-character key

    @property
    def min_metadata_bytes(self) -> int:
        return _META_FIXED + self.digits

    def check(self) -> None:
        """Raise ValueError when the flags cannot make distinct records of this shape."""
        if self.expression_length < self.min_expression_length:
            raise ValueError(
                f"--expression-length {self.expression_length} is too short for "
                f"{self.substrates:,} distinct lambdas: at least {self.min_expression_length}"
            )
        if 0 < self.metadata_bytes < self.min_metadata_bytes:
            raise ValueError(
                f"--metadata-bytes must be 0 (no metadata) or at least "
                f"{self.min_metadata_bytes} for {self.substrates:,} substrates"
            )
        if 0 < self.constraints_bytes < _CONSTRAINTS_FIXED:
            raise ValueError(
                f"--constraints-bytes must be 0 (no constraints) or at least {_CONSTRAINTS_FIXED}"
            )

    def code(self, i: int) -> str:
        """A distinct lambda of exactly ``expression_length`` characters, already in
        canonical form (``ast.unparse`` of itself), e.g.
        ``lambda **kw: kw.get('xxxxxxx', 0) * 10000042``."""
        key = "x" * (self.expression_length - self.min_expression_length + 1)
        return f"{_CODE_HEAD}{key}{_CODE_MID}{i:0{self.digits}d}"

    def metadata(self, i: int) -> bytes:
        """A JSON object of exactly ``metadata_bytes`` bytes (b"" when 0)."""
        if not self.metadata_bytes:
            return b""
        pad = b"_" * (self.metadata_bytes - self.min_metadata_bytes)
        return b"%s%0*d%s%s" % (_META_HEAD, self.digits, i, pad, _META_TAIL)

    def constraints(self) -> bytes:
        if not self.constraints_bytes:
            return b""
        return b'{"w":"' + b"x" * (self.constraints_bytes - _CONSTRAINTS_FIXED) + b'"}'

    def substrate_rows(self, start: int, stop: int) -> list[tuple]:
        key = "x" * (self.expression_length - self.min_expression_length + 1)
        head = f"{_CODE_HEAD}{key}{_CODE_MID}"
        d = self.digits
        rows = []
        for i in range(start, stop):
            code = f"{head}{i:0{d}d}"
            rows.append(("lambda", code, code, self.metadata(i), None, None))
        return rows

    def target(self, i: int, r: int, count: int) -> int:
        """Index of the target of substrate i's r-th relationship, among the first
        ``count`` substrates. Relationship r has type r % 17, and relationships of one
        type get consecutive targets: no (source, target, type) repeats."""
        rounds, _type = divmod(r, REL_TYPES_COUNT)
        return (i * 2654435761 + _type * 40503 + 1 + rounds) % count

    def relationship_items(
        self, start: int, stop: int, count: int
    ) -> list[tuple[int, int, int, bool]]:
        """(source index, target index, type index, bidirectional) of the relationships
        of substrates start..stop, targets among the first ``count`` substrates; the
        first relationship of each substrate is bidirectional."""
        k = self.relationships_per_substrate
        return [
            (i, self.target(i, r, count), r % REL_TYPES_COUNT, r == 0)
            for i in range(start, stop)
            for r in range(k)
        ]

    def estimate_bytes(self) -> int:
        """A generous guess of the build's memory (measured: about 62 bytes per substrate
        and 39 per relationship beyond their payload, and 8 for the tool's id array), to
        refuse runs that cannot fit."""
        per_substrate = self.expression_length + self.metadata_bytes + 72 + 8
        per_relationship = self.constraints_bytes + 48
        per = per_substrate + self.relationships_per_substrate * per_relationship
        return int(self.substrates * per * 1.25) + 256 * 2**20


# ------------------------------------------------------------------------------- memory

try:
    _libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: no malloc_trim; the trimmed figure then equals the raw one
    _libc = None


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _trimmed_rss() -> int:
    """Resident bytes after returning freed heap pages to the OS."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)
    return _rss()


def _peak_rss() -> int:
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


@dataclass
class Point:
    """One measurement during the build (all figures measured)."""

    percent: float
    substrates: int
    relationships: int
    rss_bytes: int  # above the baseline, raw
    rss_trimmed_bytes: int  # above the baseline, after malloc_trim(0)
    peak_rss_bytes: int  # the build's peak so far, above the baseline
    arena_bytes: int  # Arena.memory(): the arena's own capacity accounting
    seconds: float
    bytes_per_substrate: float = 0.0
    bytes_per_substrate_trimmed: float = 0.0
    bytes_per_substrate_peak: float = 0.0
    arena_bytes_per_substrate: float = 0.0

    def __post_init__(self) -> None:
        n = self.substrates
        self.bytes_per_substrate = self.rss_bytes / n
        self.bytes_per_substrate_trimmed = self.rss_trimmed_bytes / n
        self.bytes_per_substrate_peak = self.peak_rss_bytes / n
        self.arena_bytes_per_substrate = self.arena_bytes / n


@dataclass
class Build:
    shape: Shape
    baseline_bytes: int  # process + interpreter + bfx + an empty arena (trimmed)
    ids_bytes: int  # the tool's own id array, excluded from every figure
    points: list[Point] = field(default_factory=list)
    relationships: int = 0
    failed_relationships: int = 0
    insert_seconds: float = 0.0
    link_seconds: float = 0.0
    seconds: float = 0.0
    arena_memory: dict[str, int] = field(default_factory=dict)


class Progress:
    """A one-line progress bar on stderr (no dependency)."""

    def __init__(self, total: int, stream: TextIO, enabled: bool, label: str = "building") -> None:
        self.total, self.stream, self.enabled, self.label = total, stream, enabled, label
        self.start = time.monotonic()
        self.last = 0.0

    def update(self, done: int, extra: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        frac = done / self.total if self.total else 1.0
        width = 30
        filled = int(width * frac)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        eta_text = f"ETA {eta:,.0f} s" if frac < 1 and math.isfinite(eta) else ""
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'-' * (width - filled)}] {frac:6.1%} "
            f"{done:,}/{self.total:,} substrates{extra}  {elapsed:,.0f} s {eta_text}\x1b[K"
        )
        self.stream.flush()

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\x1b[K{text}\n")
            self.stream.flush()
            self.last = 0.0

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _checkpoints(n: int, points: Sequence[float]) -> list[tuple[float, int]]:
    marks: dict[int, float] = {}
    for p in points:
        marks.setdefault(max(1, min(n, round(n * p / 100))), p)
    return sorted(((p, count) for count, p in marks.items()), key=lambda pc: pc[1])


def build(
    shape: Shape,
    points: Sequence[float] = DEFAULT_POINTS,
    chunk: int = DEFAULT_CHUNK,
    progress: Progress | None = None,
) -> Build:
    """Build ``shape`` in one arena, measuring at ``points`` (percent of substrates)."""
    from array import array

    from bfx._core import REL_TYPES, Arena

    n, k = shape.substrates, shape.relationships_per_substrate
    arena = Arena()
    baseline = _trimmed_rss()
    # Every id, in one packed array allocated (and touched) up front: its pages are in
    # the baseline of the per-record figures, and not in the projection's baseline.
    ids = array("Q", [0]) * n
    with_ids = _trimmed_rss()
    result = Build(shape, baseline_bytes=baseline, ids_bytes=max(0, with_ids - baseline))
    constraints = shape.constraints()
    rel_names = REL_TYPES
    marks = _checkpoints(n, points)
    progress = progress or Progress(n, sys.stderr, enabled=False)
    t_start = time.perf_counter()
    done = 0
    for percent, stop in marks:
        while done < stop:
            end = min(stop, done + chunk)
            rows = shape.substrate_rows(done, end)
            t0 = time.perf_counter()
            got, _ = arena.insert_many(rows)
            result.insert_seconds += time.perf_counter() - t0
            del rows
            bad = next((g for g in got if not isinstance(g, int)), None)
            if bad is not None:
                raise RuntimeError(f"the arena refused a synthetic substrate: {bad}")
            ids[done:end] = array("Q", got)
            del got
            if k:
                edges = [
                    (rel_names[q], ids[i], ids[t], both, constraints, None)
                    for i, t, q, both in shape.relationship_items(done, end, end)
                ]
                t0 = time.perf_counter()
                linked, _ = arena.link_many(edges)
                result.link_seconds += time.perf_counter() - t0
                made = sum(1 for x in linked if isinstance(x, int))
                result.relationships += made
                result.failed_relationships += len(linked) - made
                del edges, linked
            done = end
            progress.update(done, f", {result.relationships:,} relationships")
        raw = _rss()
        trimmed = _trimmed_rss()
        peak = _peak_rss()
        arena_bytes = sum(arena.memory().values())
        point = Point(
            percent=percent,
            substrates=done,
            relationships=result.relationships,
            rss_bytes=max(0, raw - with_ids),
            rss_trimmed_bytes=max(0, trimmed - with_ids),
            peak_rss_bytes=max(0, peak - with_ids),
            arena_bytes=arena_bytes,
            seconds=time.perf_counter() - t_start,
        )
        result.points.append(point)
        progress.note(
            f"measured at {done:,} substrates: {point.bytes_per_substrate:,.1f} bytes/substrate "
            f"(RSS +{point.rss_bytes / 2**20:,.1f} MiB)"
        )
    progress.update(done, f", {result.relationships:,} relationships", force=True)
    progress.close()
    result.seconds = time.perf_counter() - t_start
    result.arena_memory = dict(arena.memory())
    del arena, ids
    return result


# ------------------------------------------------------------------------------- disk


def _registry_with_storage() -> Any | None:
    """The durable registry's class if this bfx has one (``Registry(data_dir=...)``)."""
    import inspect

    try:
        from bfx.registry import Registry
    except ImportError:  # pragma: no cover
        return None
    try:
        params = inspect.signature(Registry).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return None
    return Registry if "data_dir" in params else None


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def disk_sample(shape: Shape, sample: int, parent: str | None, chunk: int = 5_000) -> dict:
    """Write ``sample`` substrates (and their relationships) through the durable
    registry, close it, and measure the data directory."""
    registry_cls = _registry_with_storage()
    if registry_cls is None:
        return {
            "available": False,
            "reason": "this bfx has no durable registry (bfx.Registry(data_dir=...))",
        }
    from bfx._core import REL_TYPES

    floor = Shape(sample)  # a sample larger than --substrates needs more digits
    small = Shape(
        substrates=sample,
        relationships_per_substrate=shape.relationships_per_substrate,
        expression_length=max(shape.expression_length, floor.min_expression_length),
        metadata_bytes=shape.metadata_bytes and max(shape.metadata_bytes, floor.min_metadata_bytes),
        constraints_bytes=shape.constraints_bytes,
    )
    constraints = json.loads(small.constraints()) if small.constraints_bytes else None
    with tempfile.TemporaryDirectory(prefix="bfx-capacity-", dir=parent) as tmp:
        data_dir = Path(tmp) / "data"
        t0 = time.perf_counter()
        reg = registry_cls(data_dir=str(data_dir))
        try:
            ids: list[Any] = []
            relationships = 0
            for start in range(0, sample, chunk):
                end = min(sample, start + chunk)
                items = []
                for i in range(start, end):
                    item: dict[str, Any] = {
                        "expression_type": "lambda",
                        "expression_code": small.code(i),
                    }
                    if small.metadata_bytes:
                        item["metadata"] = json.loads(small.metadata(i))
                    items.append(item)
                for res in reg.create_many(items):
                    ids.append(_result_id(res))
                if small.relationships_per_substrate:
                    rels = []
                    for i, t, q, both in small.relationship_items(start, end, end):
                        rel: dict[str, Any] = {
                            "rel_type": REL_TYPES[q],
                            "source_id": ids[i],
                            "target_id": ids[t],
                            "bidirectional": both,
                        }
                        if constraints is not None:
                            rel["constraints"] = constraints
                        rels.append(rel)
                    relationships += sum(1 for r in reg.relate_many(rels) if _result_id(r))
        finally:
            reg.close()
        seconds = time.perf_counter() - t0
        files = {
            str(p.relative_to(data_dir)): p.stat().st_size
            for p in sorted(data_dir.rglob("*"))
            if p.is_file()
        }
        total = sum(files.values())
    return {
        "available": True,
        "substrates": sample,
        "relationships": relationships,
        "bytes": total,
        "files": files,
        "bytes_per_substrate": total / sample,
        "seconds": seconds,
    }


def _result_id(res: Any) -> Any:
    """The id of a created record, whatever shape create_many/relate_many answer with."""
    if isinstance(res, int):
        return res
    for attr in ("identity", "relationship_id", "substrate_id"):
        value = getattr(res, attr, None)
        if value is not None:
            return value
    if isinstance(res, dict):
        for key in ("identity", "relationship_id", "substrate_id"):
            if res.get(key) is not None:
                return res[key]
    if isinstance(res, BaseException):
        raise res
    raise TypeError(f"cannot read an id from {res!r}")


# ------------------------------------------------------------------------------- report


def _projection(
    build_result: Build,
    ram: int,
    reserve: int,
    disk: dict | None,
    workers: int = 1,
    worker_bytes: int = 0,
) -> dict[str, Any]:
    """``workers`` worker processes of ``worker_bytes`` private memory each beside one
    arena they share (``bfx serve``'s default); ``unshared``: each worker its own arena
    (``--no-shared-arena``)."""
    last = build_result.points[-1]
    workers_bytes = workers * worker_bytes
    usable = ram - reserve - build_result.baseline_bytes - workers_bytes
    rels_per = build_result.relationships / last.substrates if last.substrates else 0.0

    def fit(per: float, copies: int = 1) -> dict[str, Any]:
        count = max(0, math.floor(usable / (per * copies))) if per > 0 else None
        return {
            "bytes_per_substrate": per,
            "max_substrates": count,
            "max_relationships": None if count is None else round(count * rels_per),
        }

    out = {
        "ram_bytes": ram,
        "reserve_bytes": reserve,
        "baseline_bytes": build_result.baseline_bytes,
        "workers": workers,
        "worker_bytes": worker_bytes,
        "workers_bytes": workers_bytes,
        "usable_bytes": usable,
        "basis_substrates": last.substrates,
        "steady": fit(last.bytes_per_substrate),
        "unshared": fit(last.bytes_per_substrate, workers),
        "trimmed": fit(last.bytes_per_substrate_trimmed),
        "peak": fit(last.bytes_per_substrate_peak),
    }
    if disk and disk.get("available"):
        count = out["steady"]["max_substrates"] or 0
        out["disk_bytes_at_max"] = round(disk["bytes_per_substrate"] * count)
        out["disk_bytes_at_measured"] = round(disk["bytes_per_substrate"] * last.substrates)
    return out


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def _gib(n: float) -> str:
    return f"{n / 2**30:,.2f} GiB" if n >= 2**30 else _mib(n)


def _machine() -> dict[str, Any]:
    import psutil

    import bfx

    vm = psutil.virtual_memory()
    return {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "ram_bytes": vm.total,
        "available_bytes": vm.available,
        "python": platform.python_version(),
        "bfx": bfx.__version__,
        "malloc_trim": _libc is not None,
    }


def format_report(report: dict[str, Any]) -> str:
    s = report["shape"]
    m = report["machine"]
    b = report["build"]
    p = report["projection"]
    k = s["relationships_per_substrate"]
    lines = [
        f"bfx capacity: {m['machine']}, {m['cpus']} CPUs, {_gib(m['ram_bytes'])} RAM "
        f"({_gib(m['available_bytes'])} available at start), CPython {m['python']}, "
        f"bfx {m['bfx']}",
        f"shape: {s['substrates']:,} substrates, {k} relationship{'s' if k != 1 else ''} each "
        f"(the first bidirectional); lambda code {s['expression_length']} chars (already "
        f"canonical, stored once); metadata {s['metadata_bytes']} bytes; constraints "
        f"{s['constraints_bytes']} bytes",
        f"baseline (process, interpreter, bfx, an empty arena; measured): "
        f"{_mib(b['baseline_bytes'])}; the tool's id array ({_mib(b['ids_bytes'])}) "
        "is excluded",
        f"build: {b['seconds']:,.1f} s (arena insert_many {b['insert_seconds']:,.1f} s, "
        f"link_many {b['link_seconds']:,.1f} s); {b['relationships']:,} relationships"
        + (f", {b['failed_relationships']:,} refused" if b["failed_relationships"] else ""),
        "",
        "MEASURED: resident set (RSS) above the baseline; per substrate = its record, code, "
        f"metadata, index entries and its {k} relationships",
        "",
        "| % | substrates | relationships | RSS | bytes/substrate | after malloc_trim | "
        "peak RSS (bytes/substrate) | arena accounting (bytes/substrate) | elapsed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for pt in report["points"]:
        lines.append(
            f"| {pt['percent']:g} | {pt['substrates']:,} | {pt['relationships']:,} | "
            f"{_mib(pt['rss_bytes'])} | {pt['bytes_per_substrate']:,.1f} | "
            f"{pt['bytes_per_substrate_trimmed']:,.1f} | {pt['bytes_per_substrate_peak']:,.1f} | "
            f"{pt['arena_bytes_per_substrate']:,.1f} | {pt['seconds']:,.1f} s |"
        )
    lines += [
        "",
        f"EXTRAPOLATED: linear from the cost measured at {p['basis_substrates']:,} substrates; "
        f"usable = RAM {_gib(p['ram_bytes'])} - reserve {_gib(p['reserve_bytes'])} - "
        f"baseline {_mib(p['baseline_bytes'])} - {p['workers']} worker"
        f"{'s' if p['workers'] != 1 else ''} x {_mib(p['worker_bytes'])} private "
        f"= {_gib(p['usable_bytes'])}; the workers share one arena (bfx serve's default)",
        "",
        "| basis | bytes/substrate | max substrates | max relationships |",
        "|---|---:|---:|---:|",
    ]
    if p["basis_substrates"] < 1_000_000:
        lines[-3:-3] = [
            f"(a build of {p['basis_substrates']:,} overstates the per-substrate cost: heap "
            "slack and the tool's own garbage are spread over few records; measure at "
            "1,000,000 or more for a projection)",
        ]
    for key, label in (
        ("steady", "RSS (no trim, as a server runs)"),
        ("trimmed", "RSS after malloc_trim"),
        ("peak", "peak RSS of the build"),
        ("unshared", f"RSS, each of {p['workers']} workers its own arena (--no-shared-arena)"),
    ):
        f = p[key]
        if f["max_substrates"] is None:
            continue
        lines.append(
            f"| {label} | {f['bytes_per_substrate']:,.1f} | {f['max_substrates']:,} | "
            f"{f['max_relationships']:,} |"
        )
    disk = report.get("disk")
    lines.append("")
    if disk is None:
        lines.append("DISK: not sampled (--disk-sample 0)")
    elif not disk.get("available"):
        lines.append(f"DISK: not measured: {disk['reason']}")
    else:
        lines += [
            f"DISK, SAMPLED: {disk['substrates']:,} substrates and {disk['relationships']:,} "
            f"relationships written through bfx.Registry(data_dir=...) in {disk['seconds']:,.1f} s: "
            f"{_mib(disk['bytes'])} on disk after close = "
            f"{disk['bytes_per_substrate']:,.1f} bytes/substrate ("
            + ", ".join(
                f"{name} {size / disk['substrates']:,.1f}" for name, size in disk["files"].items()
            )
            + ")",
            *(
                [
                    "(a sample under 10,000 overstates: SQLite's pages and file header are "
                    "spread over few records)"
                ]
                if disk["substrates"] < 10_000
                else []
            ),
            f"DISK, EXTRAPOLATED: {_gib(p['disk_bytes_at_measured'])} for "
            f"{p['basis_substrates']:,} substrates; {_gib(p['disk_bytes_at_max'])} for the "
            f"{p['steady']['max_substrates']:,} that fit in RAM",
        ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- CLI


def _configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--substrates",
        type=_int_arg(1),
        default=1_000_000,
        help="substrates to build (default 1,000,000)",
    )
    p.add_argument(
        "--relationships-per-substrate",
        type=_int_arg(0, 1000),
        default=3,
        help="relationships from each substrate (default 3)",
    )
    p.add_argument(
        "--expression-length",
        type=_int_arg(1, 100_000),
        default=DEFAULT_EXPRESSION_LENGTH,
        help=f"characters of each lambda (default {DEFAULT_EXPRESSION_LENGTH}, "
        f"as {DEFAULT_EXPRESSION!r})",
    )
    p.add_argument(
        "--metadata-bytes",
        type=_int_arg(0, 1_000_000),
        default=DEFAULT_METADATA_BYTES,
        help=f"JSON bytes of each substrate's metadata, 0 for none (default {DEFAULT_METADATA_BYTES})",
    )
    p.add_argument(
        "--constraints-bytes",
        type=_int_arg(0, 1_000_000),
        default=0,
        help="JSON bytes of each relationship's constraints, 0 for none (default 0)",
    )
    p.add_argument(
        "--ram",
        type=_size_arg,
        default=parse_size("15GiB"),
        help="RAM to project for, binary units (default 15GiB)",
    )
    p.add_argument(
        "--reserve",
        type=_size_or_zero_arg,
        default=0,
        help="RAM kept back for the OS and other processes (default 0; the seed kept 1000MiB)",
    )
    p.add_argument(
        "--points",
        type=_points_arg,
        default=DEFAULT_POINTS,
        help="measure at these percentages of --substrates (default 10,25,50,100)",
    )
    p.add_argument(
        "--chunk",
        type=_int_arg(1, 10_000_000),
        default=DEFAULT_CHUNK,
        help=f"rows per insert_many/link_many call (default {DEFAULT_CHUNK:,})",
    )
    p.add_argument(
        "--disk-sample",
        type=_int_arg(0),
        default=20_000,
        help="substrates written through the durable registry to measure bytes on disk "
        "(default 20,000; 0 to skip)",
    )
    p.add_argument(
        "--disk-dir", default=None, help="where the disk sample's temporary directory goes"
    )
    p.add_argument(
        "--workers",
        type=_int_arg(1, 1024),
        default=1,
        help="bfx serve worker processes to project for (default 1): they share one arena, "
        "and each adds --worker-bytes",
    )
    p.add_argument(
        "--worker-bytes",
        type=_size_or_zero_arg,
        default=WORKER_BYTES,
        help="private memory of one worker: interpreter, app and caches, beside the arena "
        f"it shares (default {WORKER_BYTES:,} bytes: {WORKER_PRIVATE_BYTES // 2**20}MiB "
        "measured by benches/python/worker_pss.py, the 64MiB result cache and a full "
        "compiled-expression cache)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="build even if the estimate exceeds the memory available now",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``capacity`` on a ``bfx`` subparsers object."""
    p = subparsers.add_parser(
        "capacity",
        help="measure memory per substrate and project the maximum for a RAM size",
        description=DESCRIPTION,
    )
    _configure(p)
    p.set_defaults(func=run)
    return p


def _error(text: str) -> int:
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    shape = Shape(
        substrates=args.substrates,
        relationships_per_substrate=args.relationships_per_substrate,
        expression_length=args.expression_length,
        metadata_bytes=args.metadata_bytes,
        constraints_bytes=args.constraints_bytes,
    )
    try:
        shape.check()
    except ValueError as exc:
        return _error(str(exc))
    if args.reserve >= args.ram:
        return _error(f"--reserve ({args.reserve:,} bytes) must be below --ram ({args.ram:,})")
    workers_bytes = args.workers * args.worker_bytes
    # The process itself (interpreter, bfx, an empty arena) is a fixed cost of the
    # projection; a RAM size that cannot hold it and the reserve leaves nothing to
    # project. Checked now, before building, and again on the build's own baseline.
    too_small = _ram_too_small(args.ram, args.reserve, _trimmed_rss(), workers_bytes)
    if too_small:
        return _error(too_small)
    machine = _machine()
    need = shape.estimate_bytes()
    if need > machine["available_bytes"] * 0.9 and not args.force:
        return _error(
            f"building {shape.substrates:,} substrates may need about {_gib(need)}, and only "
            f"{_gib(machine['available_bytes'])} is available: use fewer --substrates "
            "(or --force)"
        )
    _verify_sample(shape)

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    progress = Progress(shape.substrates, sys.stderr, enabled=show)
    result = build(shape, points=args.points, chunk=args.chunk, progress=progress)
    disk = None
    if args.disk_sample:
        if show:
            print(f"disk sample: {args.disk_sample:,} substrates ...", file=sys.stderr)
        disk = disk_sample(shape, args.disk_sample, args.disk_dir)
    too_small = _ram_too_small(args.ram, args.reserve, result.baseline_bytes, workers_bytes)
    if too_small:
        return _error(too_small)
    projection = _projection(result, args.ram, args.reserve, disk, args.workers, args.worker_bytes)
    report = {
        "machine": machine,
        "shape": asdict(shape),
        "build": {
            "baseline_bytes": result.baseline_bytes,
            "ids_bytes": result.ids_bytes,
            "relationships": result.relationships,
            "failed_relationships": result.failed_relationships,
            "insert_seconds": result.insert_seconds,
            "link_seconds": result.link_seconds,
            "seconds": result.seconds,
            "arena_memory": result.arena_memory,
        },
        "points": [asdict(pt) for pt in result.points],
        "projection": projection,
        "disk": disk,
        "labels": {
            "measured": ["build", "points", "disk"],
            "extrapolated": ["projection"],
        },
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def _ram_too_small(ram: int, reserve: int, baseline: int, workers_bytes: int = 0) -> str | None:
    if ram - reserve - workers_bytes > baseline:
        return None
    workers = f" and the workers' {workers_bytes:,} bytes" if workers_bytes else ""
    return (
        f"--ram {ram:,} bytes is too small: nothing is left for substrates after the fixed "
        f"costs, --reserve {reserve:,} bytes{workers} plus this process's baseline of "
        f"{baseline:,} bytes ({_mib(baseline)}: interpreter, bfx, an empty arena); give "
        f"--ram above {_mib(reserve + workers_bytes + baseline)}"
    )


def _verify_sample(shape: Shape) -> None:
    """The synthetic texts must be what the sandbox would store: valid and canonical."""
    from bfx.sandbox import canonicalize

    for i in {0, shape.substrates // 2, shape.substrates - 1}:
        code = shape.code(i)
        if len(code) != shape.expression_length or canonicalize("lambda", code) != code:
            raise RuntimeError(f"synthetic lambda is not canonical: {code!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    _configure(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(BrokenPipeError):
        return run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
