"""The benchmark tooling: benches/summary.py, the locust workload, make bench-deps (wrk).

No timing assertions: these check that the tools read, pair and print figures, and
that the locust workload runs against a real server (skipped without locust, which
is a ``bench`` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bfx

ROOT = Path(__file__).resolve().parent.parent
HAS_LOCUST = importlib.util.find_spec("locust") is not None
needs_locust = pytest.mark.skipif(not HAS_LOCUST, reason="locust (bench extra) not installed")


def _env() -> dict[str, str]:
    package_root = str(Path(bfx.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    env["PYTHONPATH"] = package_root + (os.pathsep + path if path else "")
    return env


def _summary_module():
    name = "bfx_bench_summary"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "benches" / "summary.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while building
        spec.loader.exec_module(module)
    return sys.modules[name]


def _criterion(root: Path, group: str, name: str, median_ns: float, elements: int | None) -> None:
    d = root / group / name / "new"
    d.mkdir(parents=True)
    (d / "benchmark.json").write_text(
        json.dumps(
            {
                "group_id": group,
                "function_id": name,
                "value_str": None,
                "throughput": {"Elements": elements} if elements else None,
                "full_id": f"{group}/{name}",
                "directory_name": f"{group}/{name}",
                "title": f"{group}/{name}",
            }
        )
    )
    estimate = {"point_estimate": median_ns, "standard_error": 1.0}
    (d / "estimates.json").write_text(json.dumps({"mean": estimate, "median": estimate}))


def test_summary_pairs_rust_and_python(tmp_path):
    crit = tmp_path / "criterion"
    _criterion(crit, "pair", "get", 100_000.0, 1000)  # 100 ns per op
    _criterion(crit, "pair", "dump", 5e6, None)  # 5 ms
    _criterion(crit, "rust_only", "page", 2000.0, None)
    py = tmp_path / "py.json"
    py.write_text(
        json.dumps(
            {
                "benchmarks": [
                    {
                        "name": "test_get_all",
                        "fullname": "benches/python/bench_core.py::test_get_all",
                        "extra_info": {"pair": "get", "ops": 1000},
                        "stats": {"median": 300e-6},  # 300 ns per op
                    },
                    {
                        "name": "test_registry_invoke",
                        "fullname": "benches/python/bench_operators.py::test_registry_invoke",
                        "extra_info": {"python_only": "sandbox and operators are Python"},
                        "stats": {"median": 2e-6},
                    },
                ]
            }
        )
    )
    out = tmp_path / "summary.md"
    summary = _summary_module()
    assert (
        summary.main(["--python-json", str(py), "--criterion-dir", str(crit), "--out", str(out)])
        == 0
    )
    text = out.read_text()
    assert "| get | 1,000 | 100 ns | 300 ns | 3.0x | 200 ns | bench_core::test_get_all |" in text
    assert "| dump | 1 | 5.00 ms | - | - | - | missing |" in text
    assert "bench_operators::test_registry_invoke | 1 | 2.00 µs | 500 k/s" in text
    assert "sandbox and operators are Python" in text
    assert "| rust_only/page | 2.00 µs |" in text


def test_summary_ignores_stale_criterion_results(tmp_path):
    crit = tmp_path / "criterion"
    _criterion(crit, "pair", "old", 10.0, None)
    stamp = tmp_path / "stamp"
    stamp.touch()
    old = stamp.stat().st_mtime - 60
    os.utime(crit / "pair" / "old" / "new" / "estimates.json", (old, old))
    _criterion(crit, "pair", "get", 10.0, None)
    py = tmp_path / "py.json"
    py.write_text(json.dumps({"benchmarks": []}))
    summary = _summary_module()
    figures = summary.criterion_figures(crit, stamp.stat().st_mtime)
    assert set(figures["pair"]) == {"get"}


def test_summary_without_python_results_fails_clearly(tmp_path, capsys):
    summary = _summary_module()
    assert summary.main(["--python-json", str(tmp_path / "nope.json")]) == 1
    assert "no pytest-benchmark JSON" in capsys.readouterr().err


@needs_locust
@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ("get=50,bogus=5", "'bogus=5' is not <operation>=<weight>"),
        ("get=x", "weight of get is not an integer"),
        ("get=0", "no operation has a positive weight"),
    ],
)
def test_locust_rejects_a_bad_mix(mix, message):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(ROOT / "locustfile.py"),
            "--headless",
            "-t",
            "1s",
            "--host",
            "http://127.0.0.1:9",
            "--only-summary",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**_env(), "BFX_MIX": mix},
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr + proc.stdout


@needs_locust
@pytest.mark.e2e
def test_locust_workload_runs_against_a_real_server():
    """make bench-locust, shortened: a real bfx serve, every operation of the mix."""
    mix = "get=3,invoke=3,create=2,outgoing=2,incoming=1,relate=1,traverse=1,multiply=1"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benches" / "http" / "run_locust.py"),
            "--users",
            "4",
            "--spawn-rate",
            "4",
            "--run-time",
            "4s",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={**_env(), "BFX_MIX": mix, "BFX_SEED_SUBSTRATES": "50"},
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "bfx locust summary" in out
    for name in ("get", "invoke", "create", "outgoing", "incoming", "relate", "traverse"):
        assert f"| {name} " in out
    assert "| **all** |" in out


# --- make bench-deps: wrk (the HTTP part of make bench) ---------------------------------

MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make not installed")


def _bench_deps_wrk(tmp_path: Path, *, uid: int, apt_get: str | None, wrk: bool = False):
    """Run `make bench-deps-wrk` with a PATH of stand-ins: id, apt-get, maybe wrk.

    The stand-in apt-get logs its arguments and runs ``apt_get`` (shell text), so no
    package is installed and the real uid does not matter.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt-get.log"

    def script(name: str, body: str) -> None:
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)

    script("id", f'[ "$1" = -u ] && echo {uid}')
    if apt_get is not None:
        script("apt-get", f'echo "$*" >> {log}\n{apt_get}')
    if wrk:
        script("wrk", "exit 0")
    find = shutil.which("find")  # the Makefile lists the Rust sources when it is read
    if find:
        (bin_dir / "find").symlink_to(find)
    proc = subprocess.run(
        [MAKE, "-s", "-C", str(ROOT), "bench-deps-wrk"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_env(), "PATH": str(bin_dir)},
        check=False,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return proc, calls


@needs_make
def test_bench_deps_leaves_an_installed_wrk_alone(tmp_path):
    proc, calls = _bench_deps_wrk(tmp_path, uid=0, apt_get="exit 0", wrk=True)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    assert proc.stdout == ""


@needs_make
def test_bench_deps_installs_wrk_with_apt_get_as_root(tmp_path):
    bin_dir = tmp_path / "bin"
    chmod = shutil.which("chmod")  # the stand-in PATH has no chmod
    installs = (
        f'[ "$1" = install ] && printf "#!/bin/sh\\n" > {bin_dir}/wrk && {chmod} +x {bin_dir}/wrk'
    )
    proc, calls = _bench_deps_wrk(tmp_path, uid=0, apt_get=installs + "; exit 0")
    assert proc.returncode == 0, proc.stderr
    assert [c.split() for c in calls] == [["update", "-qq"], ["install", "-y", "-qq", "wrk"]]
    assert "wrk installed" in proc.stdout


@needs_make
def test_bench_deps_says_why_when_apt_get_fails(tmp_path):
    proc, calls = _bench_deps_wrk(tmp_path, uid=0, apt_get="exit 100")
    assert proc.returncode == 0, proc.stderr  # the rest of make bench still runs
    assert calls == ["update -qq"]
    assert "apt-get could not install wrk" in proc.stdout
    assert "HTTP part of make bench will be skipped" in proc.stdout


@needs_make
@pytest.mark.parametrize(
    ("uid", "apt_get", "why"),
    [(1000, "exit 0", "not running as root"), (0, None, "apt-get is not available")],
)
def test_bench_deps_says_why_wrk_is_skipped(tmp_path, uid, apt_get, why):
    proc, calls = _bench_deps_wrk(tmp_path, uid=uid, apt_get=apt_get)
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    assert why in proc.stdout
    assert "will be skipped" in proc.stdout
    assert "apt-get install -y wrk" in proc.stdout


def test_memory_script_streams_a_round_trip_without_a_copy_of_the_dump():
    out = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "python" / "memory.py"), "--substrates", "100000"],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
        check=True,
    ).stdout
    assert "relationships: 300,000" in out
    assert "streamed: dump_file" in out
    line = next(x for x in out.splitlines() if "peak RSS growth" in x)
    if sys.platform.startswith("linux"):
        # load_file's peak growth is the new arena, never arena plus dump:
        # figures, not timings, so this can be checked.
        nums = [float(w) for w in line.replace(",", " ").split() if w.replace(".", "").isdigit()]
        dump_growth, load_growth, arena_mib, dump_mib = nums
        assert load_growth < arena_mib + dump_mib / 2, line
        assert dump_growth < dump_mib / 2, line
