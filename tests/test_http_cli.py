"""``bfx serve``: flags -> settings -> environment -> Granian, without starting a server."""

from __future__ import annotations

import pytest

import bfx
from bfx import cli
from bfx.asgi import Settings
from fake_granian import faked


@pytest.fixture
def fake_granian(monkeypatch):
    # No real port is bound: whatever else listens on 8000 here must not matter.
    monkeypatch.setattr(cli, "_claim_port", lambda host, port: None)
    with faked(monkeypatch) as fake:
        yield fake


def test_serve_defaults(fake_granian, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["serve"]) == 0
    (server,) = fake_granian.made
    assert server.served
    # RSGI by default: the same pipeline as the ASGI app, behind Granian's own interface.
    assert server.target == "bfx.asgi.rsgi:create_app"
    assert server.kw["factory"] is True
    assert server.kw["interface"].value == "rsgi"
    assert (server.kw["address"], server.kw["port"], server.kw["workers"]) == (
        "127.0.0.1",
        8000,
        1,
    )
    out = capsys.readouterr().out
    assert "http://127.0.0.1:8000/api/v1" in out
    # The embedded default: SQLite in ./bfx-data, created by the pre-flight check.
    data_dir = tmp_path / "bfx-data"
    assert f"storage: SQLite database {data_dir / 'bfx.db'}" in out
    assert (data_dir / "bfx.db").is_file()
    assert Settings.from_env() == Settings(storage=str(data_dir))


def test_serve_flags_reach_the_workers_through_the_environment(fake_granian, tmp_path, capsys):
    argv = ["serve", "--host", "::1", "--port", "9001", "--workers", "1",
            "--cors-origin", "http://a.example", "--cors-origin", "http://b.example",
            "--body-limit", "2M", "--import-limit", "8M", "--log-level", "debug",
            "--data-dir", str(tmp_path)]  # fmt: skip
    assert cli.main(argv) == 0
    (server,) = fake_granian.made
    assert (server.kw["address"], server.kw["port"], server.kw["workers"]) == ("::1", 9001, 1)
    assert server.kw["log_level"].value == "debug"
    settings = Settings.from_env()
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.body_limit == 2 << 20
    assert settings.import_body_limit == 8 << 20
    assert settings.storage == str(tmp_path)
    out = capsys.readouterr().out
    assert "http://[::1]:9001/api/v1 (1 worker)" in out
    assert str(tmp_path) in out


@pytest.mark.parametrize(
    ("argv", "env", "target", "interface"),
    [
        (["--interface", "asgi"], {}, "bfx.asgi:create_app", "asgi"),
        ([], {"BFX_INTERFACE": "asgi"}, "bfx.asgi:create_app", "asgi"),
        (["--interface", "rsgi"], {"BFX_INTERFACE": "asgi"}, "bfx.asgi.rsgi:create_app", "rsgi"),
    ],
)
def test_the_interface_is_chosen_by_flag_or_environment(
    fake_granian, monkeypatch, capsys, argv, env, target, interface
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["serve", "--memory", *argv]) == 0
    (server,) = fake_granian.made
    assert (server.target, server.kw["interface"].value) == (target, interface)
    assert f"Granian interface: {interface}" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "env", "loop"),
    [
        ([], {}, "uvloop"),
        (["--loop", "asyncio"], {}, "asyncio"),
        ([], {"BFX_LOOP": "asyncio"}, "asyncio"),
        (["--loop", "uvloop"], {"BFX_LOOP": "asyncio"}, "uvloop"),
    ],
)
def test_the_event_loop_is_uvloop_unless_asked_otherwise(
    fake_granian, monkeypatch, capsys, argv, env, loop
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert cli.main(["serve", "--memory", *argv]) == 0
    (server,) = fake_granian.made
    assert server.kw["loop"].value == loop
    assert f"loop: {loop}" in capsys.readouterr().out
    with pytest.raises(ValueError, match="not an event loop"):
        Settings.from_env({"BFX_LOOP": "trio"})


def test_an_unknown_interface_is_refused(fake_granian, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--memory", "--interface", "wsgi"])
    assert exc.value.code == 2
    assert "--interface" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not an interface"):
        Settings.from_env({"BFX_INTERFACE": "wsgi"})
    assert not fake_granian.made


def test_several_workers_over_an_in_memory_registry_are_refused(fake_granian, capsys):
    assert cli.main(["serve", "--memory", "--workers", "2"]) == 2
    assert not fake_granian.made
    assert "needs storage shared between processes" in capsys.readouterr().err


def test_several_workers_share_a_database(fake_granian, tmp_path):
    assert cli.main(["serve", "--data-dir", str(tmp_path / "d"), "--workers", "2"]) == 0
    (server,) = fake_granian.made
    assert server.kw["workers"] == 2


def test_memory_flag_reaches_the_workers(fake_granian, capsys):
    assert cli.main(["serve", "--memory"]) == 0
    assert Settings.from_env().storage == "memory"
    assert "storage: in-memory" in capsys.readouterr().out


def test_an_unreachable_database_url_stops_before_serving(fake_granian, tmp_path, capsys):
    # Port 1 on loopback: nothing listens, so the pre-flight check fails fast.
    # (--data-dir with --database-url is refused: tests/test_cli_hardening.py.)
    url = "postgresql://bfx:secret@127.0.0.1:1/bfx"
    assert cli.main(["serve", "--database-url", url]) == 1
    assert not fake_granian.made
    err = capsys.readouterr().err
    assert "cannot connect to PostgreSQL 127.0.0.1:1/bfx" in err
    assert "secret" not in err


@pytest.mark.parametrize(
    "argv",
    [["serve", "--port", "70000"], ["serve", "--workers", "0"], ["serve", "--body-limit", "x"],
     ["serve", "--log-level", "loud"], ["nope"]],
)  # fmt: skip
def test_bad_flags_exit_2(fake_granian, argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert not fake_granian.made


def test_version_and_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == bfx.__version__
    assert cli.main([]) == 2
    assert "serve" in capsys.readouterr().err
