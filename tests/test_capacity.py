"""``bfx capacity`` (python/bfx/capacity.py): structure and sanity of its figures.

Small builds only (a few thousand substrates); no assertion on speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bfx
from bfx import capacity
from bfx.capacity import Shape, parse_size
from bfx.sandbox import canonicalize

SMALL = ["--substrates", "2000", "--disk-sample", "0", "--no-progress"]


def _env() -> dict[str, str]:
    # The subprocess imports the same bfx as this test process.
    package_root = str(Path(bfx.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}


def _run_json(capsys, *extra: str) -> dict:
    assert capacity.main([*SMALL, "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _check_report(report: dict, substrates: int = 2000, k: int = 3) -> None:
    assert set(report) >= {"machine", "shape", "build", "points", "projection", "disk", "labels"}
    assert report["labels"]["extrapolated"] == ["projection"]
    assert "points" in report["labels"]["measured"]
    shape = report["shape"]
    assert shape["substrates"] == substrates
    assert shape["relationships_per_substrate"] == k

    build = report["build"]
    assert build["baseline_bytes"] > 0
    assert build["relationships"] == substrates * k
    assert build["failed_relationships"] == 0
    assert build["arena_memory"]["substrate_records"] > 0

    points = report["points"]
    assert [p["percent"] for p in points] == [10, 25, 50, 100]
    assert [p["substrates"] for p in points] == [
        substrates // 10,
        substrates // 4,
        substrates // 2,
        substrates,
    ]
    for p in points:
        assert p["relationships"] == p["substrates"] * k
        assert p["rss_bytes"] >= p["rss_trimmed_bytes"] >= 0
        assert p["arena_bytes"] > 0
        assert p["bytes_per_substrate"] == pytest.approx(p["rss_bytes"] / p["substrates"])
        assert p["arena_bytes_per_substrate"] == pytest.approx(p["arena_bytes"] / p["substrates"])
    last = points[-1]
    # A substrate costs at least its own code and metadata bytes in the arena.
    assert last["arena_bytes_per_substrate"] >= shape["expression_length"] + shape["metadata_bytes"]

    proj = report["projection"]
    assert proj["basis_substrates"] == substrates
    assert proj["workers_bytes"] == proj["workers"] * proj["worker_bytes"]
    assert (
        proj["usable_bytes"]
        == proj["ram_bytes"]
        - proj["reserve_bytes"]
        - build["baseline_bytes"]
        - proj["workers_bytes"]
    )
    for basis, per_key in (
        ("steady", "bytes_per_substrate"),
        ("trimmed", "bytes_per_substrate_trimmed"),
        ("peak", "bytes_per_substrate_peak"),
    ):
        fit = proj[basis]
        per = last[per_key]
        assert fit["bytes_per_substrate"] == pytest.approx(per)
        if per > 0:
            assert fit["max_substrates"] == math.floor(proj["usable_bytes"] / per)
            assert fit["max_relationships"] == round(fit["max_substrates"] * k)
            # the projection fits the RAM it was asked about, and one more would not
            assert (
                fit["max_substrates"] * per
                <= proj["usable_bytes"]
                < (fit["max_substrates"] + 1) * per
            )


def test_json_report_through_main(capsys):
    report = _run_json(capsys, "--ram", "1GiB", "--reserve", "100MiB")
    _check_report(report)
    assert report["projection"]["ram_bytes"] == 2**30
    assert report["projection"]["reserve_bytes"] == 100 * 2**20
    assert report["disk"] is None


def test_workers_share_one_arena_and_each_adds_its_private_bytes(capsys):
    one = _run_json(capsys, "--ram", "4GiB", "--disk-sample", "0")["projection"]
    assert (one["workers"], one["worker_bytes"]) == (1, capacity.WORKER_BYTES)
    nine = _run_json(
        capsys, "--ram", "4GiB", "--disk-sample", "0", "--workers", "9", "--worker-bytes", "100MiB"
    )["projection"]
    assert (nine["workers"], nine["workers_bytes"]) == (9, 900 * 2**20)
    per = nine["steady"]["bytes_per_substrate"]
    assert nine["steady"]["max_substrates"] == math.floor(nine["usable_bytes"] / per)
    # Nine workers sharing the arena hold far more than nine with an arena each.
    assert nine["unshared"]["max_substrates"] == math.floor(nine["usable_bytes"] / (9 * per))
    assert nine["steady"]["max_substrates"] > 8 * nine["unshared"]["max_substrates"]
    # With one worker, sharing or not holds the same.
    assert one["unshared"]["max_substrates"] == one["steady"]["max_substrates"]
    assert capacity.main([*SMALL, "--workers", "4"]) == 0
    assert (
        f"4 workers x {capacity.WORKER_BYTES / 2**20:,.1f} MiB private" in capsys.readouterr().out
    )


def test_json_report_through_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "bfx.capacity", *SMALL, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    _check_report(json.loads(proc.stdout))


def test_text_report_labels_measured_and_extrapolated(capsys):
    assert capacity.main([*SMALL, "--relationships-per-substrate", "2"]) == 0
    out = capsys.readouterr().out
    assert "MEASURED" in out
    assert "EXTRAPOLATED" in out
    assert "| 100 | 2,000 | 4,000 |" in out
    assert "max substrates" in out
    assert "DISK: not sampled" in out


def test_shape_flags_are_honoured(capsys):
    report = _run_json(
        capsys,
        "--relationships-per-substrate",
        "20",
        "--expression-length",
        "120",
        "--metadata-bytes",
        "0",
        "--constraints-bytes",
        "40",
        "--points",
        "50",
    )
    assert [p["substrates"] for p in report["points"]] == [1000, 2000]
    assert report["build"]["relationships"] == 2000 * 20
    assert report["build"]["failed_relationships"] == 0
    assert report["build"]["arena_memory"]["relationship_bytes"] > 0


def test_progress_bar_goes_to_stderr(capsys):
    assert (
        capacity.main(["--substrates", "3000", "--disk-sample", "0", "--progress", "--json"]) == 0
    )
    captured = capsys.readouterr()
    assert "building [" in captured.err
    assert "100.0%" in captured.err
    json.loads(captured.out)  # stdout stays one JSON document


def test_disk_sample_is_measured_or_says_why(capsys):
    report = _run_json(capsys, "--disk-sample", "300")
    disk = report["disk"]
    if disk["available"]:
        assert disk["substrates"] == 300
        assert disk["relationships"] == 900
        assert disk["bytes"] > 0
        assert disk["bytes_per_substrate"] == pytest.approx(disk["bytes"] / 300)
        assert report["projection"]["disk_bytes_at_measured"] == round(
            disk["bytes_per_substrate"] * 2000
        )
    else:
        assert "data_dir" in disk["reason"]


# -- the synthetic records -----------------------------------------------------------------------


@pytest.mark.parametrize(("n", "length"), [(1, 44), (2000, 44), (10**8, 44), (5000, 300)])
def test_codes_are_distinct_canonical_and_exact_length(n, length):
    shape = Shape(n, expression_length=length)
    shape.check()
    sample = sorted({0, 1 % n, n // 3, n - 1})
    codes = [shape.code(i) for i in sample]
    assert len(set(codes)) == len(sample)
    for code in codes:
        assert len(code) == length
        assert canonicalize("lambda", code) == code
    rows = shape.substrate_rows(0, min(n, 50))
    assert [r[1] for r in rows] == [shape.code(i) for i in range(min(n, 50))]


def test_metadata_and_constraints_are_json_of_the_exact_size():
    shape = Shape(5000, metadata_bytes=64, constraints_bytes=30)
    for i in (0, 4999):
        meta = shape.metadata(i)
        assert len(meta) == 64
        assert isinstance(json.loads(meta), dict)
    assert len(shape.constraints()) == 30
    assert json.loads(shape.constraints())
    assert Shape(10, metadata_bytes=0).metadata(3) == b""


def test_relationships_never_repeat_a_typed_edge():
    shape = Shape(1000, relationships_per_substrate=40)
    items = shape.relationship_items(0, 1000, 1000)
    assert len(items) == 40_000
    assert len({(s, t, q) for s, t, q, _ in items}) == 40_000
    assert all(0 <= t < 1000 for _, t, _, _ in items)
    assert sum(both for *_, both in items) == 1000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15GiB", 15 * 2**30),
        ("15GB", 15 * 2**30),
        ("15g", 15 * 2**30),
        ("1536GiB", 1536 * 2**30),  # one grammar with bfx serve: whole numbers, up to G
        ("512 MiB", 512 * 2**20),
        ("1073741824", 2**30),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


# -- bad flags: a clear message and a non-zero exit ----------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--substrates", "0"], "--substrates: must be at least 1"),
        (["--substrates", "lots"], "not an integer"),
        (["--ram", "15XB"], "not a size"),
        (["--points", "0,50"], "percentages must be in (0, 100]"),
        (["--relationships-per-substrate", "-1"], "must be between 0"),
    ],
)
def test_bad_flags_exit_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        capacity.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--expression-length", "20"], "--expression-length 20 is too short"),
        (["--metadata-bytes", "5"], "--metadata-bytes must be 0"),
        (["--constraints-bytes", "3"], "--constraints-bytes must be 0"),
        (["--ram", "1GiB", "--reserve", "2GiB"], "--reserve"),
        (
            ["--ram", "1GiB", "--workers", "20", "--worker-bytes", "100M"],
            "the workers' 2,097,152,000 bytes",
        ),
        (["--substrates", "10000000000000"], "use fewer --substrates"),
    ],
)
def test_impossible_shapes_exit_2_with_a_message(capsys, argv, message):
    assert capacity.main([*SMALL[2:], "--substrates", "2000", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bfx capacity: error: ")
    assert message in err


def test_bad_flag_through_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "bfx.capacity", "--ram", "lots"],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 2
    assert "not a size" in proc.stderr
    assert proc.stdout == ""


def test_add_parser_registers_the_subcommand(capsys):
    parser = argparse.ArgumentParser(prog="bfx")
    sub = parser.add_subparsers(dest="command")
    capacity.add_parser(sub)
    args = parser.parse_args(["capacity", *SMALL, "--json"])
    assert args.func is capacity.run
    assert args.func(args) == 0
    _check_report(json.loads(capsys.readouterr().out))


def test_bfx_capacity_subcommand(capsys):
    """``bfx capacity`` is the same tool through the bfx command line."""
    from bfx.cli import main as bfx_main

    assert bfx_main(["capacity", *SMALL, "--json"]) == 0
    _check_report(json.loads(capsys.readouterr().out))
