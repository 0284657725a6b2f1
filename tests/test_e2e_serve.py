"""End to end: the real ``bfx serve`` (Granian) on a free loopback port, over real HTTP."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time

import msgspec
import pytest

from bfx import errors
from bfx.client import Client, ClientError
from bfx_server import HOST, Server, free_port

# Over RSGI (the default) and over ASGI: the same pipeline behind both adapters.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("interface")]


@pytest.fixture(scope="module")
def server(tmp_path_factory, interface):
    srv = Server(tmp_path_factory.mktemp("e2e"), "--cors-origin", "http://app.example")
    yield srv
    srv.stop()


def test_serve_prints_what_it_runs(server, interface):
    out = server.output()
    assert f"Granian interface: {interface}" in out
    assert f"http://{HOST}:{server.port}/api/v1" in out
    assert "storage: SQLite database " in out
    assert "bfx-data/bfx.db" in out  # the default data directory, under the cwd


def test_health_over_http(server):
    status, headers, body = server.call("GET", "/api/v1/health")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert msgspec.json.decode(body)["status"] == "healthy"


def test_create_invoke_relate_delete(server):
    status, a = server.json(
        "POST",
        "/api/v1/substrates",
        {
            "expression_type": "lambda",
            "expression_code": "lambda x, y=2: x * y",
            "metadata": {"name": "e2e-mul"},
        },
    )
    assert status == 201, a
    status, b = server.json(
        "POST", "/api/v1/substrates", {"expression_type": "constant", "expression_code": "1234"}
    )
    assert status == 201, b
    sa, sb = a["substrate_id"], b["substrate_id"]

    status, inv = server.json("POST", f"/api/v1/substrates/{sa}/invoke", {"parameters": {"x": 21}})
    assert (status, inv["result"]) == (200, 42)
    status, dup = server.json(
        "POST",
        "/api/v1/substrates",
        {"expression_type": "lambda", "expression_code": "lambda x, y=2: x * y"},
    )
    assert (status, dup["details"]["substrate_id"]) == (409, sa)

    status, rel = server.json(
        "POST",
        "/api/v1/relationships",
        {"rel_type": "dependency", "source_id": sa, "target_id": sb},
    )
    assert status == 201, rel
    assert rel["rel_type"] == "DEPENDENCY"
    status, out = server.json("GET", f"/api/v1/relationships/outgoing/{sa}")
    assert status == 200
    assert out["count"] == 1
    assert out["relationships"][0]["relationship_id"] == rel["relationship_id"]
    status, inc = server.json("GET", f"/api/v1/relationships/incoming/{sb}")
    assert inc["count"] == 1

    status, _ = server.json("DELETE", f"/api/v1/substrates/{sa}")
    assert status == 204
    status, err = server.json("GET", f"/api/v1/relationships/{rel['relationship_id']}")
    assert (status, err["error"]) == (404, "not_found")
    status, err = server.json("GET", f"/api/v1/substrates/{sa}")
    assert status == 404
    status, m = server.json("GET", "/api/v1/metrics")
    assert status == 200
    assert m["total_invocations"] >= 1


def test_errors_over_the_wire(server):
    status, headers, body = server.call("GET", "/api/v1/substrates/batch")
    assert status == 405
    assert headers["allow"] == "OPTIONS, POST"
    status, _, body = server.call(
        "POST", "/api/v1/substrates", b"{", {"content-type": "application/json"}
    )
    assert (status, msgspec.json.decode(body)["error"]) == (400, "malformed_json")
    status, _, body = server.call(
        "POST", "/api/v1/substrates", b"a=1", {"content-type": "application/x-www-form-urlencoded"}
    )
    assert status == 415
    # Only the head is sent: the server answers 413 from Content-Length alone and may
    # close before reading a body, so a client still writing 2 MiB could see a reset.
    with socket.create_connection((HOST, server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/substrates HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (2 << 20)
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 413
        assert msgspec.json.decode(response.read())["error"] == "body_too_large"
    status, _, body = server.call("GET", "/api/v1/substrates/not-hex")
    assert (status, msgspec.json.decode(body)["error"]) == (400, "invalid_id")
    status, _, _ = server.call("GET", "/nowhere")
    assert status == 404


def test_cors_flag(server):
    _, headers, _ = server.call("GET", "/api/v1/health", headers={"origin": "http://app.example"})
    assert headers["access-control-allow-origin"] == "http://app.example"
    _, headers, _ = server.call("GET", "/api/v1/health", headers={"origin": "http://x.example"})
    assert "access-control-allow-origin" not in headers


def test_docs_are_served(server):
    for path in (
        "/api/v1/docs",
        "/api/v1/redoc",
        "/api/v1/static/redoc.standalone.js",
        "/api/v1/openapi.json",
    ):
        status, _, body = server.call("GET", path)
        assert status == 200, path
        assert body


def test_client_sdk(server):
    """The first client's method names still work (bfx.client.ALIASES), answering the
    API's types; tests/test_clients.py runs the full scenarios on both clients."""
    with Client(f"http://{HOST}:{server.port}") as api:
        assert api.health().status == "healthy"
        s = api.create("expression", "x * 3 + 1", {"name": "sdk"})
        assert api.get(s.identity) == s
        assert msgspec.json.decode(s.metadata) == {"name": "sdk"}
        assert api.invoke(s.substrate_id, {"x": 2}).result == 7
        assert api.add(s.substrate_id, 10, {"x": 1}).new_value == 14
        assert api.modulus(s.substrate_id, 3, {"x": 3}).expressed == 1
        assert api.divide(s.substrate_id).fibonacci_sequence[-1] == 21
        assert api.multiply([2, 3]).unity_value == 6
        c = api.create("constant", "99")
        rel = api.relate("SIBLING", s.substrate_id, c.identity, bidirectional=True)
        assert api.get_relationship(rel.relationship_id) == rel
        assert api.outgoing(c.substrate_id).count == 1
        assert api.relationships(rel_type="sibling").count >= 1
        batch = api.create_many(
            [
                {"expression_type": "constant", "expression_code": "99"},
                {"expression_type": "constant", "expression_code": "100"},
            ]
        )
        assert [r.status for r in batch.results] == [409, 201]
        assert [r.status for r in api.invoke_many([{"substrate_id": c.identity}]).results] == [200]
        assert any(x.substrate_id == s.substrate_id for x in api.search("SDK").substrates)
        assert {x.substrate_id for x in api.iter_substrates(page=2)} >= {
            s.substrate_id,
            c.substrate_id,
        }
        exported = api.export()
        assert {x.substrate_id for x in exported.substrates} >= {s.substrate_id, c.substrate_id}
        # The rest of the methods: each reaches the route its operation names.
        assert api.metrics().total_substrates >= 2
        assert api.list(limit=1).count >= 2
        assert api.subtract(s.substrate_id, 1, {"x": 1}).new_value == 3
        assert api.power(s.substrate_id, 2, {"x": 1}).result_value == 16
        assert api.root(s.substrate_id, 2, {"x": 5}).result_value == 4
        assert api.incoming(s.substrate_id).count == 1
        assert api.relationship_stats().total_relationships >= 1
        assert [x.substrate_id for x in api.query({"metadata.name": "sdk"}).substrates] == [
            s.substrate_id
        ]
        items = api.relate_many([{"rel_type": "X", "source_id": 1, "target_id": 2}]).results
        assert [r.status for r in items] == [422]  # unknown endpoints
        assert api.import_(exported).skipped >= 2
        with pytest.raises(errors.DuplicateError) as dup:
            api.create("constant", "99")
        assert dup.value.status == 409
        assert dup.value.details["substrate_id"] == c.substrate_id
        with pytest.raises(errors.NotFoundError):
            api.get(1)
        with pytest.raises(errors.InvalidIdError) as bad:
            api.get("zz")
        assert bad.value.status == 400
        with pytest.raises(ClientError) as wrong:
            api.request("PUT", "/health")
        assert (wrong.value.status, wrong.value.code) == (405, "method_not_allowed")
        api.delete_relationship(rel.relationship_id)
        api.delete(c.substrate_id)
        with pytest.raises(errors.NotFoundError):
            api.get(c.substrate_id)


def test_several_workers_are_refused_while_the_registry_is_in_memory(tmp_path):
    """Each worker would hold a registry of its own; refuse instead of serving
    answers that depend on which process took the request."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bfx.cli",
            "serve",
            "--memory",
            "--port",
            str(free_port()),
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "--workers > 1 needs storage shared between processes" in proc.stderr


def test_sigterm_stops_every_worker_and_keeps_what_was_written(tmp_path):
    """SIGTERM is what systemd, Docker and Kubernetes send to stop a service: bfx serve
    stops within seconds, exits 0, leaves no worker behind, and a restart reads what it
    had answered as written."""
    data = str(tmp_path / "data")
    server = Server(tmp_path, "--data-dir", data, "--workers", "2")
    try:
        status, made = server.json(
            "POST", "/api/v1/substrates", {"expression_type": "constant", "expression_code": "41"}
        )
        assert status == 201
        workers = server.worker_pids()
        assert len(workers) == 2
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=15) == 0, server.output()
        stopped = time.monotonic() - started
    finally:
        server.stop()
    assert stopped < 5, f"bfx serve took {stopped:.1f}s to stop:\n{server.output()}"
    for pid in workers:  # reaped, or at least no longer running
        assert _state(pid) in ("gone", "Z"), pid
    again = Server(tmp_path, "--data-dir", data)
    try:
        status, got = again.json("GET", f"/api/v1/substrates/{made['substrate_id']}")
    finally:
        again.stop()
    assert status == 200
    assert got["expression_code"] == "41"


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
