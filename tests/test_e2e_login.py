"""Users and login on a real ``bfx serve --auth required`` (Granian, two workers, one
SQLite data directory): users added with ``bfx users add`` log in over HTTP; a user
removed with ``bfx users remove`` in another process is refused on the very next
request in each worker, token and login alike; failed logins are limited; users survive
a restart."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys

import msgspec
import pytest

from bfx_server import HOST, Server
from test_e2e_auth import keys_cli, one_connection_per_worker

pytestmark = pytest.mark.e2e

API = "/api/v1"
PASSWORD = "correct horse battery"


def users_cli(data, *argv, stdin=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    done = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "users", argv[0], *argv[1:], "--data-dir", str(data)],
        input=stdin, capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def send(conn, method, path, token=None, body=None):
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    if body is not None:
        headers["content-type"] = "application/json"
        body = msgspec.json.encode(body)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def login(conn, username, password):
    return send(conn, "POST", f"{API}/auth/login", body={"username": username,
                "password": password})  # fmt: skip


def serve(tmp, data):
    return Server(tmp, "--data-dir", str(data), "--workers", "2", "--auth", "required",
                  "--login-failures-per-user", "3/minute")  # fmt: skip


def test_users_log_in_are_removed_everywhere_at_once_and_survive_a_restart(tmp_path):
    data = tmp_path / "data"
    users_cli(data, "add", "alice", "--scopes", "substrates:read", "--password-stdin",
              stdin=PASSWORD + "\n")  # fmt: skip
    users_cli(data, "add", "bob", "--scopes", "graph:read", "--password-stdin",
              stdin=PASSWORD + "\n")  # fmt: skip
    admin = msgspec.json.decode(
        keys_cli(data, "create", "--name", "admin", "--scopes", "admin", "--json")
    )
    server = serve(tmp_path, data)
    try:
        workers = one_connection_per_worker(server, admin["secret"])
        try:
            tokens = []
            for conn in workers:  # each worker logs alice in, and takes the other's token
                status, _, body = login(conn, "alice", PASSWORD)
                assert status == 200, body
                tokens.append(msgspec.json.decode(body)["access_token"])
            for conn in workers:
                for token in tokens:
                    status, _, body = send(conn, "GET", f"{API}/auth/me", token)
                    assert status == 200, body
                    assert msgspec.json.decode(body)["principal"] == "user:alice"
                assert send(conn, "GET", f"{API}/substrates", tokens[0])[0] == 200
            users_cli(data, "remove", "alice")
            for conn in workers:  # the very next request, in each worker
                for token in tokens:
                    status, headers, body = send(conn, "GET", f"{API}/substrates", token)
                    assert status == 401, body
                    assert headers["www-authenticate"] == "Bearer"
                assert login(conn, "alice", PASSWORD)[0] == 401
            # Failed logins: three per name per worker, then 429 (even the right password).
            conn = workers[0]
            for _ in range(3):
                assert login(conn, "bob", "wrong password")[0] == 401
            status, headers, body = login(conn, "bob", PASSWORD)
            assert status == 429, body
            assert int(headers["retry-after"]) >= 1
            assert msgspec.json.decode(body)["error"] == "rate_limited"
        finally:
            for conn in workers:
                conn.close()
        log = server.output()
        assert PASSWORD not in log
        assert "user:alice" in log  # the access log names the user
    finally:
        server.stop()
    # A restart: bob (never removed) logs in; alice stays removed.
    server = serve(tmp_path, data)
    try:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        try:
            status, _, body = login(conn, "bob", PASSWORD)
            assert status == 200, body
            token = msgspec.json.decode(body)["access_token"]
            me = msgspec.json.decode(send(conn, "GET", f"{API}/auth/me", token)[2])
            assert me == {"principal": "user:bob", "kind": "user", "scopes": ["graph:read"]}
            assert login(conn, "alice", PASSWORD)[0] == 401
        finally:
            conn.close()
    finally:
        server.stop()


def test_serve_refuses_bad_auth_settings_with_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    cases = [
        ({"BFX_AUTH": "maybe"}, [], "BFX_AUTH: not an auth mode"),
        ({"BFX_JWT_SECRET": "short"}, [], "at least 32 characters"),
        ({"BFX_JWT_TTL": "0"}, [], "BFX_JWT_TTL"),
        (
            {},
            [
                "--jwt-public-key",
                str(tmp_path / "none.pem"),
                "--jwt-issuer",
                "i",
                "--jwt-audience",
                "a",
            ],
            "No such file",
        ),
        ({}, ["--jwt-jwks", str(tmp_path / "none.json")], "needs --jwt-issuer"),
    ]
    for extra, argv, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "bfx.cli", "serve", "--host", HOST, "--port", "1",
             "--data-dir", str(tmp_path / "d"), *argv],
            capture_output=True, text=True, env={**env, **extra}, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, (extra, argv, done.stderr)
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
