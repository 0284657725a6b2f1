"""What a new user ran into with the storage commands (issue 12, "Found by a new user"):
read-only data directories, ``export`` of a missing store, ``import``'s messages,
contradictory storage flags and ``bfx capacity --ram`` too small to project anything.

Read-only storage is simulated for real: this suite runs as root, which ignores
permission bits, so a read-only bind mount or tmpfs (``mount``) and an immutable
directory (``chattr +i``) stand in; where the mechanism is unavailable the test is
skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bfx
from bfx import Registry, capacity, cli, errors
from bfx import settings as config

# -- helpers -------------------------------------------------------------------------------

_SUB = '{"kind":"substrate","expression_type":"constant","expression_code":"%s"}\n'


def _env() -> dict[str, str]:
    package_root = str(Path(bfx.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    return {**env, "PYTHONPATH": package_root + (os.pathsep + path if path else "")}


def _bfx(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python -m bfx.cli ...`` in a child: what a user sees, tracebacks included."""
    return subprocess.run(
        [sys.executable, "-m", "bfx.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )


@pytest.fixture(autouse=True)
def _no_storage_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("BFX_"):
            monkeypatch.delenv(key)


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False)


def _store(path: Path, codes: tuple[str, ...] = ("1", "2")) -> None:
    with Registry(data_dir=path) as reg:
        for code in codes:
            reg.create("constant", code)


@pytest.fixture
def read_only(tmp_path):
    """A directory made read-only by a bind mount of itself remounted ``ro``; the
    test fills it first through ``make_read_only()``."""
    where = tmp_path / "ro"
    where.mkdir()
    mounted: list[Path] = []

    def make_read_only() -> Path:
        got = _run(["mount", "--bind", str(where), str(where)])
        if got.returncode != 0:
            pytest.skip(f"cannot bind-mount (needs root and CAP_SYS_ADMIN): {got.stderr.strip()}")
        mounted.append(where)
        got = _run(["mount", "-o", "remount,ro,bind", str(where)])
        if got.returncode != 0:
            pytest.skip(f"cannot remount read-only: {got.stderr.strip()}")
        return where

    yield where, make_read_only
    for m in mounted:
        _run(["umount", str(m)])


@pytest.fixture
def ro_tmpfs(tmp_path):
    """An empty read-only tmpfs."""
    where = tmp_path / "tmpfs"
    where.mkdir()
    got = _run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(where)])
    if got.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root and CAP_SYS_ADMIN): {got.stderr.strip()}")
    yield where
    _run(["umount", str(where)])


# -- 1. read-only data directories ---------------------------------------------------------


def test_read_only_store_says_read_only_not_damaged(read_only, capsys):
    where, make_read_only = read_only
    _store(where / "d")
    make_read_only()
    with pytest.raises(errors.StorageError) as info:
        Registry(data_dir=where / "d")
    assert info.value.details["cause"] == "read_only"
    assert "damaged" not in info.value.message
    sample = where.parent / "one.ndjson"
    sample.write_text(_SUB % 3)
    for argv in (
        ["import", "--data-dir", str(where / "d"), str(sample)],
        ["export", "--data-dir", str(where / "d")],
    ):
        assert cli.main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "read-only file system" in err, err
        assert str(where) in err
        assert "damaged" not in err
        assert err.count("\n") == 1  # one line, no traceback


def test_subdirectory_of_a_read_only_mount_is_a_message_not_a_traceback(read_only):
    where, make_read_only = read_only
    make_read_only()
    sample = where.parent / "one.ndjson"
    sample.write_text(_SUB % 3)
    proc = _bfx("import", "--data-dir", str(where / "sub" / "d"), str(sample))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "OSError" not in proc.stderr
    assert f"cannot create data directory {where / 'sub' / 'd'}" in proc.stderr
    assert "read-only file system" in proc.stderr
    assert not (where / "sub").exists()


def test_empty_read_only_tmpfs_as_data_directory(ro_tmpfs):
    with pytest.raises(errors.StorageError) as info:
        Registry(data_dir=ro_tmpfs)
    assert info.value.details["cause"] == "read_only"
    assert f"{ro_tmpfs} is on a read-only file system" in info.value.message


def test_unwritable_data_directory_says_permission_denied(tmp_path, capsys):
    d = tmp_path / "d"
    _store(d)
    got = _run(["chattr", "+i", str(d)])
    if got.returncode != 0:
        pytest.skip(f"chattr +i is unavailable here: {got.stderr.strip()}")
    try:
        assert cli.main(["export", "--data-dir", str(d)]) == 1
        err = capsys.readouterr().err
        assert "permission denied" in err
        assert str(d) in err
        assert "damaged" not in err
        fresh = d / "sub"
        with pytest.raises(errors.StorageError, match="cannot create data directory") as info:
            Registry(data_dir=fresh)
        assert info.value.details["cause"] == "permission_denied"
    finally:
        _run(["chattr", "-i", str(d)])


def test_a_damaged_database_is_still_called_damaged(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    (d / "bfx.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(errors.StorageError, match="a damaged file, or not a bfx database"):
        Registry(data_dir=d)


# -- 2. read-only commands refuse a missing store -------------------------------------------


def test_export_refuses_a_missing_data_dir_and_creates_nothing(tmp_path, capsys):
    typo = tmp_path / "bfx-dtaa"
    assert cli.main(["export", "--data-dir", str(typo)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"no bfx database at {typo / 'bfx.db'}" in captured.err
    assert "--data-dir" in captured.err
    assert not typo.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["export", "--data-dir", str(empty), "-o", str(tmp_path / "out.json")]) == 1
    assert list(empty.iterdir()) == []
    assert not (tmp_path / "out.json").exists()


def test_export_refuses_a_missing_store_named_by_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BFX_DATA_DIR", str(tmp_path / "nope"))
    assert cli.main(["export"]) == 1
    assert "no bfx database at" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()


def test_export_of_an_existing_store_still_works(tmp_path, capsys):
    _store(tmp_path / "d")
    assert cli.main(["export", "--data-dir", str(tmp_path / "d"), "--format", "ndjson"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


# -- 3. import: one clear message --------------------------------------------------------


def test_import_error_is_printed_once_with_line_index_and_reason(tmp_path, capsys):
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        _SUB % 1
        + "\n"  # a blank line: the bad record is on line 3, index 1
        + '{"kind":"substrate","expression_type":"lambda","expression_code":"lambda: open(1)"}\n'
        + _SUB % 2
    )
    d = tmp_path / "d"
    assert cli.main(["import", "--data-dir", str(d), str(bad)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    assert err.count("\n") == 1, err  # once: no JSON copy before the prose
    assert '"error"' not in err
    assert f"{bad}, line 3 (record index 1): " in err
    assert "open" in err  # the reason
    assert "the 1 record before it was imported" in err
    with Registry(data_dir=d) as reg:
        assert len(reg) == 1


def test_undecodable_line_is_reported_by_line_and_earlier_records_are_kept(tmp_path, capsys):
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        _SUB % 1 + _SUB % 2 + "\n" + '{"kind":"substrate","expression_type":"constant"}\n'
    )
    d = tmp_path / "d"
    assert cli.main(["import", "--data-dir", str(d), str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "line 4 (record index 2): expression_code" in err
    assert "line 4: " not in err  # the line is named once
    with Registry(data_dir=d) as reg:
        assert len(reg) == 2  # the records before the unreadable one are imported


@pytest.mark.parametrize("content", [b"", b"\n  \n\t\n"])
def test_empty_input_is_refused(tmp_path, content, capsys):
    empty = tmp_path / "empty.json"
    empty.write_bytes(content)
    d = tmp_path / "d"
    assert cli.main(["import", "--data-dir", str(d), str(empty)]) == 1
    captured = capsys.readouterr()
    assert "empty input" in captured.err
    assert captured.out == ""
    assert not d.exists()  # nothing created for nothing to import


def test_an_empty_export_still_imports(tmp_path, capsys):
    doc = tmp_path / "doc.json"
    doc.write_text('{"substrates": [], "relationships": []}\n')
    assert cli.main(["import", "--data-dir", str(tmp_path / "d"), str(doc)]) == 0
    assert json.loads(capsys.readouterr().out)["imported_substrates"] == 0


def test_format_json_given_ndjson_says_what_it_found(tmp_path, capsys):
    nd = tmp_path / "x.ndjson"
    for text in (_SUB % 1 + _SUB % 2, _SUB % 1):
        nd.write_text(text)
        d = tmp_path / "d"
        assert cli.main(["import", "--data-dir", str(d), "--format", "json", str(nd)]) == 1
        err = capsys.readouterr().err
        assert "expected a JSON document" in err
        assert "found NDJSON" in err
        assert "--format json" in err
        assert "unknown field" not in err
        assert not d.exists()


def test_format_ndjson_given_a_json_export_says_what_it_found(tmp_path, capsys):
    _store(tmp_path / "src")
    doc = tmp_path / "export.json"
    assert cli.main(["export", "--data-dir", str(tmp_path / "src"), "-o", str(doc)]) == 0
    d = tmp_path / "d"
    assert cli.main(["import", "--data-dir", str(d), "--format", "ndjson", str(doc)]) == 1
    err = capsys.readouterr().err
    assert "expected NDJSON" in err
    assert "found a JSON document" in err
    assert "--format ndjson" in err
    assert not d.exists()
    # leaving --format out detects it
    assert cli.main(["import", "--data-dir", str(d), str(doc)]) == 0
    assert json.loads(capsys.readouterr().out)["imported_substrates"] == 2


def test_auto_detection_skips_leading_blank_lines_and_names_an_array(tmp_path, capsys):
    nd = tmp_path / "x.ndjson"
    nd.write_text("\n\n" + _SUB % 1)
    assert cli.main(["import", "--data-dir", str(tmp_path / "d"), str(nd)]) == 0
    assert json.loads(capsys.readouterr().out)["imported_substrates"] == 1
    arr = tmp_path / "x.json"
    arr.write_text(json.dumps([{"expression_type": "constant", "expression_code": "1"}]))
    assert cli.main(["import", "--data-dir", str(tmp_path / "e"), str(arr)]) == 1
    assert "found a JSON array" in capsys.readouterr().err


def test_streamed_json_export_errors_name_line_and_field(tmp_path, capsys):
    doc = tmp_path / "doc.json"
    doc.write_text(
        '{"substrates":[\n'
        '{"expression_type":"constant","expression_code":"1"},\n'
        '{"expression_type":"constant"}\n'
        '],"relationships":[\n]}\n'
    )
    assert cli.main(["import", "--data-dir", str(tmp_path / "d"), str(doc)]) == 1
    err = capsys.readouterr().err
    assert "line 3 (record index 1): substrates[1].expression_code" in err


# -- 3b. the same line numbers over HTTP -----------------------------------------------------


@pytest.fixture
def api():
    from asgi_driver import finish, started

    driver = started()
    yield driver
    finish(driver)


def _ndjson(api, body: bytes):
    return api.post("/api/v1/substrates/import", body=body, content_type="application/x-ndjson")


def test_http_ndjson_import_puts_the_line_next_to_the_index(api):
    body = (
        (_SUB % 1).encode()
        + b"\n"
        + b'{"kind":"substrate","expression_type":"lambda","expression_code":"lambda: open(1)"}\n'
    )
    res = _ndjson(api, body)
    assert res.status == 422, res
    assert res.json()["details"]["index"] == 1
    assert res.json()["details"]["line"] == 3


def test_http_ndjson_line_of_a_record_refused_when_its_chunk_is_written(api):
    # A relationship to an unknown substrate is refused when its chunk is written,
    # after later records were read: its line is still the one reported.
    body = (
        (_SUB % 1 + _SUB % 2).encode()
        + b'{"kind":"relationship","rel_type":"SIBLING","source_id":"0x1","target_id":"0x2"}\n'
    )
    res = _ndjson(api, body)
    assert res.status in (404, 422), res
    assert res.json()["details"]["index"] == 2
    assert res.json()["details"]["line"] == 3


def test_http_ndjson_undecodable_line_keeps_earlier_records(api):
    body = (_SUB % 1 + _SUB % 2).encode() + b'{"kind":"substrate"}\n'
    res = _ndjson(api, body)
    assert res.status == 422, res
    assert res.json()["details"]["line"] == 3
    assert res.json()["details"]["index"] == 2
    assert res.json()["details"]["field"] == "expression_type"
    assert api.get("/api/v1/substrates").json()["count"] == 2


def test_http_json_content_type_with_an_ndjson_body(api):
    res = api.post(
        "/api/v1/substrates/import",
        body=(_SUB % 1 + _SUB % 2).encode(),
        content_type="application/json",
    )
    assert res.status == 400, res
    assert res.json()["details"]["expected"] == "json"
    assert res.json()["details"]["found"] == "ndjson"
    assert "found NDJSON" in res.json()["message"]


def test_http_ndjson_content_type_with_a_json_document(api):
    res = _ndjson(
        api, b'{"substrates": [\n{"expression_type": "constant", "expression_code": "1"}\n]}\n'
    )
    assert res.status == 400, res
    assert res.json()["details"]["expected"] == "ndjson"
    assert res.json()["details"]["found"] == "json"
    assert "expected NDJSON" in res.json()["message"]


# -- 4. contradictory storage flags ---------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (["serve"], ["--memory", "--data-dir", "x"]),
        (["serve"], ["--memory", "--database-url", "postgresql://h/db"]),
        (["serve"], ["--data-dir", "x", "--database-url", "postgresql://h/db"]),
        (["export"], ["--data-dir", "x", "--database-url", "postgresql://h/db"]),
        (["import", "f"], ["--database-url", "postgresql://h/db", "--data-dir", "x"]),
        (["backup", "out.db"], ["--data-dir", "x", "--database-url", "postgresql://h/db"]),
    ],
)
def test_contradictory_storage_flags_exit_2_naming_both(command, flags, capsys, monkeypatch):
    def never(args):
        raise AssertionError("the command ran")

    for name in ("_serve", "_export", "_import", "_backup"):
        monkeypatch.setattr(cli, name, never)
    with pytest.raises(SystemExit) as info:
        cli.main([*command, *flags])
    assert info.value.code == 2
    err = capsys.readouterr().err
    given = [f for f in flags if f.startswith("--")]
    assert all(f in err for f in given), err
    assert "not allowed with" in err


def _locator(argv: list[str]) -> str:
    return cli._locator(cli.build_parser().parse_args(argv))


def test_a_flag_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("BFX_DATA_DIR", str(tmp_path / "env-dir"))
    monkeypatch.setenv("BFX_DATABASE_URL", "postgresql://h/env")
    assert _locator(["serve", "--memory"]) == "memory"
    assert _locator(["export", "--data-dir", str(tmp_path / "flag")]) == str(tmp_path / "flag")
    assert _locator(["export", "--database-url", "postgresql://h/flag"]) == "postgresql://h/flag"
    # no flag: the environment, BFX_DATABASE_URL before BFX_DATA_DIR (as Settings.from_env)
    assert _locator(["export"]) == "postgresql://h/env"
    monkeypatch.delenv("BFX_DATABASE_URL")
    assert _locator(["export"]) == str(tmp_path / "env-dir")
    monkeypatch.delenv("BFX_DATA_DIR")
    monkeypatch.chdir(tmp_path)
    assert _locator(["export"]) == str(tmp_path / config.DEFAULT_DATA_DIR)


def test_backup_with_a_data_dir_flag_ignores_a_database_url_in_the_environment(
    tmp_path, monkeypatch, capsys
):
    _store(tmp_path / "d")
    monkeypatch.setenv("BFX_DATABASE_URL", "postgresql://h/env")
    argv = ["backup", "--data-dir", str(tmp_path / "d"), str(tmp_path / "b.db")]
    assert cli.main(argv) == 0
    assert (tmp_path / "b.db").is_file()
    capsys.readouterr()
    assert cli.main(["backup", str(tmp_path / "c.db")]) == 1
    assert "pg_dump" in capsys.readouterr().err


def test_help_says_how_flags_and_environment_combine(capsys):
    with pytest.raises(SystemExit):
        cli.main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "a flag wins over the environment" in out


# -- 5. capacity: a RAM too small for the fixed costs ---------------------------------------

_SMALL = ["--substrates", "2000", "--disk-sample", "0", "--no-progress"]


def test_capacity_refuses_a_ram_below_the_fixed_costs(capsys, monkeypatch):
    def no_build(*a, **kw):
        raise AssertionError("built although the RAM cannot hold the baseline")

    monkeypatch.setattr(capacity, "build", no_build)
    assert capacity.main([*_SMALL, "--ram", "1KB"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bfx capacity: error: --ram 1,024 bytes is too small")
    assert "baseline" in captured.err


def test_capacity_checks_again_on_the_builds_own_baseline(capsys, monkeypatch):
    real_build = capacity.build

    def heavier_baseline(*a, **kw):
        result = real_build(*a, **kw)
        result.baseline_bytes = 2**30  # above --ram: nothing would be left
        return result

    monkeypatch.setattr(capacity, "build", heavier_baseline)
    assert capacity.main([*_SMALL, "--json", "--ram", "512MiB"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "is too small" in captured.err


def test_capacity_reads_sizes_with_the_service_grammar(capsys):
    assert capacity.parse_size is config.parse_size
    assert capacity.main([*_SMALL, "--json", "--ram", "1G", "--reserve", "0"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["projection"]["usable_bytes"] > 0
    with pytest.raises(SystemExit) as info:
        capacity.main([*_SMALL, "--ram", "1.5T"])
    assert info.value.code == 2
    assert "use bytes or K/M/G suffixes" in capsys.readouterr().err
