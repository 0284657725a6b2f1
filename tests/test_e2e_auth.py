"""Authentication on a real ``bfx serve --auth required`` (Granian, two workers, one
SQLite data directory): every route with no credential, a wrong scope and the right
one; a key revoked through the other worker, or through ``bfx keys revoke`` in another
process, or expired, is refused on the very next request in each worker; the access log
names key ids and never a secret."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from bfx.api.operations import AUTHENTICATED, OPERATIONS, SCOPES
from bfx.services.keys import LocalKeys
from bfx.storage import open_store
from bfx_server import HOST, Server
from test_auth import request_of

# Over RSGI (the default) and over ASGI: the same pipeline behind both adapters.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("interface")]

API = "/api/v1"
SCOPED = [op for op in OPERATIONS if op.scope not in (None, AUTHENTICATED)]


def keys_cli(data, *argv):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
    done = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "keys", argv[0], "--data-dir", str(data), *argv[1:]],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory, interface):
    tmp = tmp_path_factory.mktemp("auth")
    data = tmp / "data"
    admin = json.loads(keys_cli(data, "create", "--name", "admin", "--scopes", "admin", "--json"))
    # One key per scope, made by this process on the same store before the server starts.
    store = open_store(str(data))
    try:
        svc = LocalKeys(lambda: store)
        by_scope = {s: svc.create(s, [s]).secret for s in SCOPES}
    finally:
        store.close()
    server = Server(tmp, "--data-dir", str(data), "--workers", "2", "--auth", "required")
    try:
        yield server, data, admin, by_scope
    finally:
        server.stop()


def _send(conn, method, path, key=None, body=None):
    headers = {} if key is None else {"x-api-key": key}
    if body is not None:
        headers["content-type"] = "application/json"
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def call(server, op, key=None):
    method, path, body = request_of(op)
    conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
    try:
        return _send(conn, method, path, key, body)
    finally:
        conn.close()


def one_connection_per_worker(server, admin_key):
    """Kept-alive connections, one to each worker (a connection stays with its worker),
    found by the ``worker_pid`` that /metrics reports."""
    found: dict[int, http.client.HTTPConnection] = {}
    for _ in range(200):
        conn = http.client.HTTPConnection(HOST, server.port, timeout=30)
        status, _, body = _send(conn, "GET", f"{API}/metrics", admin_key)
        assert status == 200, body
        pid = msgspec.json.decode(body)["worker_pid"]
        if pid in found:
            conn.close()
        else:
            found[pid] = conn
        if len(found) == 2:
            return list(found.values())
    pytest.fail(f"200 connections reached only workers {sorted(found)}")


def test_every_route_over_granian(served):
    server, _, _, by_scope = served
    for op in OPERATIONS:
        if op.scope is None:
            # Login is public; the example's user does not exist here.
            assert call(server, op)[0] == (401 if op.name == "login" else 200), op.name
            continue
        if op.scope == AUTHENTICATED:  # any valid credential (tests/test_e2e_login.py)
            assert call(server, op)[0] == 401, op.name
            assert call(server, op, by_scope["graph:read"])[0] == 200, op.name
            continue
        status, headers, body = call(server, op)
        assert status == 401, (op.name, body)
        assert headers["www-authenticate"] == "Bearer"
        assert msgspec.json.decode(body)["error"] == "unauthorized"
        wrong = next(s for s in SCOPES if s not in (op.scope, "admin"))
        status, _, body = call(server, op, by_scope[wrong])
        assert status == 403, (op.name, body)
        assert msgspec.json.decode(body)["details"] == {"required_scope": op.scope}
        if op.live == "sse":
            continue  # admitted, it never ends: tests/test_streams.py reads it
        status, _, body = call(server, op, by_scope[op.scope])
        assert status not in (401, 403), (op.name, body)
        assert status < 500, (op.name, body)


def test_a_key_revoked_through_the_other_worker_is_refused_on_the_next_request(served):
    server, _, admin, _ = served
    first, second = one_connection_per_worker(server, admin["secret"])
    try:
        status, _, body = _send(first, "POST", f"{API}/keys", admin["secret"],
                                msgspec.json.encode({"name": "short", "scopes": ["substrates:read"]}))  # fmt: skip
        assert status == 201, body
        made = msgspec.json.decode(body)
        for conn in (first, second):
            assert _send(conn, "GET", f"{API}/substrates", made["secret"])[0] == 200
        status, _, _ = _send(first, "DELETE", f"{API}/keys/{made['key_id']}", admin["secret"])
        assert status == 204
        # The other worker's very next request with the key: refused.
        assert _send(second, "GET", f"{API}/substrates", made["secret"])[0] == 401
        assert _send(first, "GET", f"{API}/substrates", made["secret"])[0] == 401
    finally:
        first.close()
        second.close()


def test_a_key_revoked_by_the_cli_is_refused_by_every_worker_on_every_route(served):
    server, data, admin, _ = served
    made = json.loads(keys_cli(data, "create", "--name", "ops", "--scopes", "admin", "--json"))
    conns = one_connection_per_worker(server, admin["secret"])
    try:
        for conn in conns:
            assert _send(conn, "GET", f"{API}/keys", made["secret"])[0] == 200
        keys_cli(data, "revoke", made["key_id"])
        for conn in conns:
            assert _send(conn, "GET", f"{API}/keys", made["secret"])[0] == 401
    finally:
        for conn in conns:
            conn.close()
    for op in SCOPED:
        assert call(server, op, made["secret"])[0] == 401, op.name


def test_an_expired_key_is_refused_by_every_worker_on_every_route(served):
    server, _, admin, _ = served
    conns = one_connection_per_worker(server, admin["secret"])
    try:
        until = datetime.now(UTC) + timedelta(seconds=3)
        body = {"name": "brief", "scopes": ["admin"], "expires_at": until.isoformat()}
        status, _, answer = _send(
            conns[0], "POST", f"{API}/keys", admin["secret"], msgspec.json.encode(body)
        )
        assert status == 201, answer
        secret = msgspec.json.decode(answer)["secret"]
        for conn in conns:
            assert _send(conn, "GET", f"{API}/keys", secret)[0] == 200
        time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
        for conn in conns:
            assert _send(conn, "GET", f"{API}/keys", secret)[0] == 401
    finally:
        for conn in conns:
            conn.close()
    for op in SCOPED:
        assert call(server, op, secret)[0] == 401, op.name


def test_the_access_log_names_key_ids_never_secrets(served):
    server, _, admin, by_scope = served
    assert server.call("GET", f"{API}/keys", headers={"x-api-key": admin["secret"]})[0] == 200
    deadline = time.monotonic() + 5
    while admin["key_id"] not in server.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = server.output()
    assert f'"GET {API}/keys" 200' in out
    assert admin["key_id"] in out
    for secret in (admin["secret"], *by_scope.values()):
        assert secret not in out
        assert secret.split("_", 2)[2] not in out
