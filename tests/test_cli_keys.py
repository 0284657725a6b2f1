"""``bfx keys create|list|revoke`` and ``bfx serve``'s secure default (DESIGN.md §7),
through the command line, without a server (the running side is ``test_e2e_auth.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from bfx import cli
from bfx.storage import open_store
from bfx_server import free_port
from fake_granian import faked


def a_free_port() -> str:
    return str(free_port())


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def data(tmp_path):
    return str(tmp_path / "data")


def test_create_list_revoke(capsys, data):
    code, out, err = run(capsys, "keys", "create", "--data-dir", data, "--name", "ci",
                         "--scopes", "substrates:read,graph:read", "--expires", "30d", "--json")  # fmt: skip
    assert code == 0, err
    made = json.loads(out)
    assert set(made) == {"key_id", "name", "scopes", "created_at", "expires_at", "secret"}
    assert made["scopes"] == ["substrates:read", "graph:read"]
    assert made["secret"].startswith(f"bfx_{made['key_id']}_")
    expires = datetime.fromisoformat(made["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    # Plain text: the key once, and a warning that it is shown once.
    code, out, err = run(capsys, "keys", "create", "--data-dir", data, "--name", "ops",
                         "--scopes", "admin")  # fmt: skip
    assert code == 0, err
    assert "key:     bfx_" in out
    assert "shown only now" in err
    code, out, _ = run(capsys, "keys", "list", "--data-dir", data, "--json")
    listed = json.loads(out)["keys"]
    assert [k["name"] for k in listed] == ["ci", "ops"]
    assert all("secret" not in k for k in listed)
    assert made["secret"] not in out
    code, out, _ = run(capsys, "keys", "list", "--data-dir", data)
    assert made["key_id"] in out
    assert "bfx_" not in out
    code, out, _ = run(capsys, "keys", "revoke", "--data-dir", data, made["key_id"].upper())
    assert code == 0
    assert "revoked" in out
    code, out, _ = run(capsys, "keys", "list", "--data-dir", data, "--json")
    assert [k["name"] for k in json.loads(out)["keys"]] == ["ops"]
    # The store holds the revocation, and only a digest of any key.
    store = open_store(data, create=False)
    try:
        assert made["key_id"] not in {k.key_id for k in store.list_keys()}
    finally:
        store.close()


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["create", "--name", "x", "--scopes", "root"], 2, "unknown scope root"),
        (["create", "--name", "x", "--scopes", ","], 2, "at least one scope"),
        (["create", "--name", " ", "--scopes", "admin"], 2, "name must be"),
        (["create", "--name", "x", "--scopes", "admin", "--expires", "soon"], 2, "--expires"),
        (["create", "--name", "x", "--scopes", "admin", "--expires", "0d"], 2, "--expires"),
        (["revoke", "0123456789abcdef"], 1, "no key"),
        (["revoke", "not-an-id"], 1, "no key"),
    ],
)
def test_bad_key_commands_say_why(capsys, data, argv, code, message):
    run(capsys, "keys", "create", "--data-dir", data, "--name", "seed", "--scopes", "admin")
    got, _, err = run(capsys, "keys", argv[0], "--data-dir", data, *argv[1:])
    assert got == code
    assert message in err


def test_list_and_revoke_create_nothing(capsys, tmp_path):
    missing = str(tmp_path / "typo")
    for argv in (["list"], ["revoke", "0123456789abcdef"]):
        code, _, err = run(capsys, "keys", *argv, "--data-dir", missing)
        assert code == 1
        assert "no bfx database" in err
    assert not (tmp_path / "typo").exists()


def test_keys_refuse_the_memory_store(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["keys", "list", "--memory"])
    assert exit_.value.code == 2
    capsys.readouterr()


# --- bfx serve: the secure default --------------------------------------------------------


@pytest.fixture
def fake_granian(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with faked(monkeypatch) as fake:
        yield fake


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "example.com"])
def test_a_non_loopback_address_without_auth_exits_2_saying_why(fake_granian, capsys, host):
    code, _, err = run(capsys, "serve", "--host", host, "--port", a_free_port())
    assert code == 2
    assert f"refusing to serve {host} without authentication" in err
    assert "--auth required" in err
    assert "--insecure-no-auth" in err
    assert fake_granian.made == []


@pytest.mark.parametrize(
    "argv",
    [["--auth", "required"], ["--insecure-no-auth"]],
)
def test_a_non_loopback_address_with_auth_or_the_explicit_opt_out_starts(
    fake_granian, capsys, argv
):
    code, out, err = run(capsys, "serve", "--host", "0.0.0.0", "--port", a_free_port(), *argv)
    assert code == 0, err
    assert len(fake_granian.made) == 1
    mode = "required" if "required" in argv else "off"
    assert os.environ["BFX_AUTH"] == mode
    assert f"auth {mode}" in out


def test_loopback_runs_without_auth_by_default_and_bfx_auth_turns_it_on(fake_granian, capsys):
    code, out, _ = run(capsys, "serve", "--port", a_free_port())
    assert code == 0
    assert os.environ["BFX_AUTH"] == "off"
    os.environ["BFX_AUTH"] = "required"
    code, out, _ = run(capsys, "serve", "--port", a_free_port())
    assert code == 0
    assert os.environ["BFX_AUTH"] == "required"
    assert "auth required: 0 API keys; make one with `bfx keys create" in out


def test_contradictory_or_unusable_auth_flags_exit_2(fake_granian, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--auth", "required", "--insecure-no-auth"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--auth", "sometimes"])
    assert exit_.value.code == 2
    code, _, err = run(capsys, "serve", "--auth", "required", "--memory", "--port", a_free_port())
    assert code == 2
    assert "needs a durable store" in err
    assert fake_granian.made == []


def test_the_real_command_exits_2_on_a_public_address(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    done = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "serve", "--host", "0.0.0.0", "--port", a_free_port()],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "refusing to serve 0.0.0.0 without authentication" in done.stderr
