"""``bfx serve``'s network flags, their errors, the port check and the body deadline,
without starting a server (the end-to-end side is ``test_e2e_hardening_net.py``)."""

from __future__ import annotations

import asyncio
import resource
import socket

import msgspec
import pytest

from bfx import cli
from bfx.asgi import Settings
from bfx.asgi.app import App
from fake_granian import faked


@pytest.fixture
def fake_granian(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with faked(monkeypatch) as fake:
        yield fake


def _listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "abc"], "argument --port: 'abc' is not a port number (1-65535)"),
        (["--port", "70000"], "argument --port: '70000' is not a port number (1-65535)"),
        (["--port", "-1"], "argument --port: '-1' is not a port number (1-65535)"),
        (["--workers", "two"], "argument --workers: 'two' is not a whole number of at least 1"),
        (["--workers", "0"], "argument --workers: '0' is not a whole number of at least 1"),
        (["--max-connections", "1e3"], "argument --max-connections: '1e3' is not a whole"),
        (["--backlog", "0"], "argument --backlog: '0' is not a whole number"),
        (["--body-timeout", "soon"], "argument --body-timeout: not a duration: 'soon'"),
        (["--header-timeout", "0"], "argument --header-timeout: a duration must be more than 0"),
        (["--header-timeout", "nan"], "argument --header-timeout: a duration must be more"),
        (["--body-limit", "x"], "argument --body-limit: not a size: 'x'"),
    ],
)
def test_typed_flag_errors_are_readable(fake_granian, capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--memory", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "_port" not in err
    assert "_positive_int" not in err
    assert "invalid" not in err
    assert not fake_granian.made


def test_defaults_reach_granian(fake_granian, capsys, monkeypatch):
    monkeypatch.setattr(cli, "_claim_port", lambda host, port: None)
    assert cli.main(["serve", "--memory"]) == 0
    (server,) = fake_granian.made
    kw = server.kw
    # Granian's own default (backlog // workers = 1024 permits) let 1,024 idle
    # connections lock everyone out.
    assert kw["backpressure"] == 4096
    assert kw["backlog"] == 4096
    assert kw["http1_settings"].header_read_timeout == 10_000
    assert kw["http1_settings"].keep_alive is True
    assert kw["respawn_failed_workers"] is True
    assert kw["workers_kill_timeout"] == 10
    settings = Settings.from_env()
    assert (settings.body_timeout, settings.header_timeout) == (10.0, 10.0)
    out = capsys.readouterr().out
    assert "header timeout 10s, body timeout 10s, keep-alive on" in out


def test_flags_reach_granian_and_the_workers(fake_granian, monkeypatch):
    monkeypatch.setattr(cli, "_claim_port", lambda host, port: None)
    argv = ["serve", "--memory", "--header-timeout", "2.5", "--body-timeout", "750ms",
            "--max-connections", "300", "--backlog", "512", "--no-keep-alive"]  # fmt: skip
    assert cli.main(argv) == 0
    (server,) = fake_granian.made
    assert server.kw["backpressure"] == 300
    assert server.kw["backlog"] == 512
    assert server.kw["http1_settings"].header_read_timeout == 2500
    assert server.kw["http1_settings"].keep_alive is False
    settings = Settings.from_env()
    assert settings.body_timeout == pytest.approx(0.75)
    assert (settings.header_timeout, settings.max_connections, settings.backlog) == (2.5, 300, 512)
    assert settings.keep_alive is False


def test_environment_variables_are_the_defaults_of_the_flags(fake_granian, monkeypatch):
    monkeypatch.setattr(cli, "_claim_port", lambda host, port: None)
    monkeypatch.setenv("BFX_BODY_TIMEOUT", "3")
    monkeypatch.setenv("BFX_MAX_CONNECTIONS", "100")
    monkeypatch.setenv("BFX_KEEP_ALIVE", "off")
    assert cli.main(["serve", "--memory", "--max-connections", "200"]) == 0
    (server,) = fake_granian.made
    assert server.kw["backpressure"] == 200  # the flag wins over the variable
    assert server.kw["http1_settings"].keep_alive is False
    assert Settings.from_env().body_timeout == 3.0


def test_settings_round_trip_through_the_environment():
    settings = Settings(
        body_timeout=0.25, header_timeout=4.0, keep_alive=False, max_connections=7, backlog=9
    )
    assert Settings.from_env(settings.to_env()) == settings
    with pytest.raises(ValueError, match="not a yes/no value"):
        Settings.from_env({"BFX_KEEP_ALIVE": "maybe"})
    with pytest.raises(ValueError, match="not a positive whole number"):
        Settings.from_env({"BFX_MAX_CONNECTIONS": "-3"})


def test_connections_are_fitted_under_the_open_files_limit(fake_granian, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_claim_port", lambda host, port: None)
    monkeypatch.setattr(resource, "getrlimit", lambda which: (1024, 1024))
    monkeypatch.setattr(resource, "setrlimit", lambda which, limits: None)
    assert cli.main(["serve", "--memory"]) == 0
    (server,) = fake_granian.made
    assert server.kw["backpressure"] == 1024 - 256
    assert "open-files limit is 1024: 768 connections per worker" in capsys.readouterr().err


def test_a_port_in_use_is_refused_before_granian_starts(fake_granian, capsys):
    with _listener() as other:
        port = other.getsockname()[1]
        assert cli.main(["serve", "--memory", "--port", str(port)]) == 1
    assert not fake_granian.made
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port} is already in use by another program" in err
    assert "Traceback" not in err


def test_an_unknown_host_is_refused(fake_granian, capsys):
    # Past the secure default (a non-loopback address needs --auth or the opt-out).
    argv = ["serve", "--memory", "--host", "no-such-host.invalid", "--insecure-no-auth"]
    assert cli.main(argv) == 1
    assert not fake_granian.made
    assert "cannot bind to --host 'no-such-host.invalid'" in capsys.readouterr().err


def test_a_free_port_is_claimed_and_released():
    with _listener() as probe:
        port = probe.getsockname()[1]
    assert cli._claim_port("127.0.0.1", port) is None
    # Released again: Granian can bind it next.
    with _listener() as again:
        again.close()


# -- the body deadline, in process ---------------------------------------------------


def _post_trickle(app: App, first: bytes) -> tuple[int, dict]:
    """POST a body that announces more and then never comes."""

    async def run() -> tuple[int, dict]:
        sent = []
        calls = 0

        async def receive():
            nonlocal calls
            calls += 1
            if calls == 1:
                return {"type": "http.request", "body": first, "more_body": True}
            await asyncio.sleep(3600)  # the client stalls

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/v1/substrates",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"999")],
        }
        await asyncio.wait_for(app(scope, receive, send), 5)
        return sent[0]["status"], msgspec.json.decode(sent[1]["body"])

    return asyncio.run(run())


def test_a_stalled_body_is_answered_408_within_the_budget():
    app = App(Settings(storage="memory", body_timeout=0.2))
    status, body = _post_trickle(app, b'{"expression_type": ')
    assert status == 408
    assert body == {
        "error": "request_timeout",
        "message": "the request body did not arrive within 0.2 seconds",
        "details": {"body_timeout_seconds": 0.2},
    }
