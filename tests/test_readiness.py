"""Readiness (``/api/v1/health/ready``): 200 while the store answers, 503 ``not_ready``
when it does not — a real PostgreSQL server stopped and started under a real
``bfx serve`` — and bounded when the store hangs; liveness is untouched."""

from __future__ import annotations

import os
import threading
import time

import msgspec
import pytest

from asgi_driver import Driver
from bfx import errors
from bfx.asgi.app import App
from bfx.services.system import StoreProbe
from bfx_server import Server

READY = "/api/v1/health/ready"
WAIT = 30.0


def test_ready_in_process_answers_200_without_a_credential(monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    driver = Driver(App())
    driver.startup()
    try:
        resp = driver.get(READY)
        assert resp.status == 200, resp
        body = resp.json()
        assert body["status"] == "ready"
        assert body["storage"] == "memory"
    finally:
        driver.shutdown()
        driver.close()


def test_a_hanging_store_is_not_ready_in_bounded_time_and_is_not_asked_twice():
    release = threading.Event()
    calls = []

    def hang():
        calls.append(1)
        release.wait(10)

    probe = StoreProbe(hang, timeout=0.2)
    started = time.monotonic()
    assert "did not answer within 0.2 s" in probe.check()
    assert "previous readiness check" in probe.check()  # still stuck: no second ping
    assert time.monotonic() - started < 5
    assert calls == [1]
    release.set()
    time.sleep(0.1)

    def fail():
        raise errors.StorageError("db: the database does not answer: refused", {})

    assert StoreProbe(fail, timeout=1).check() == "db: the database does not answer: refused"
    assert StoreProbe(lambda: None, timeout=1).check() is None


def _status(server: Server, path: str) -> tuple[int, dict]:
    status, _, body = server.call("GET", path)
    return status, msgspec.json.decode(body)


def _until(server: Server, want: int) -> tuple[int, dict]:
    deadline = time.monotonic() + WAIT
    while True:
        status, body = _status(server, READY)
        if status == want or time.monotonic() > deadline:
            return status, body
        time.sleep(0.2)


@pytest.mark.e2e
def test_readiness_flips_while_postgresql_is_stopped_and_started(tmp_path):
    import pg_server

    try:
        pg = pg_server.start()  # a server of its own: the session's keeps running
    except pg_server.Unavailable as exc:
        if os.environ.get("BFX_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (BFX_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(f"PostgreSQL readiness test skipped: {exc}")
    server = None
    try:
        server = Server(tmp_path, "--database-url", pg.new_database(), "--workers", "2")
        status, body = _status(server, READY)
        assert (status, body["status"], body["storage"]) == (200, "ready", "postgresql")

        pg.pause()
        status, body = _until(server, 503)
        assert status == 503, body
        assert body["error"] == "not_ready"
        assert body["details"] == {"storage": "postgresql"}
        assert "does not answer" in body["message"]
        # Every worker says so (a probe per request, never a cached answer).
        for _ in range(6):
            assert _status(server, READY)[0] == 503

        pg.resume()
        status, body = _until(server, 200)
        assert status == 200, body
        for _ in range(6):
            assert _status(server, READY)[0] == 200
        assert server.proc.poll() is None
    finally:
        if server is not None:
            server.stop()
        pg.stop()
