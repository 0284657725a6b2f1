"""A real ``bfx serve`` (Granian) on a free loopback port, for end-to-end tests."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
#: ``--interface`` for every server started (None: bfx's default); the ``interface``
#: fixture of conftest.py sets it.
INTERFACE: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    def __init__(
        self, tmp: Path, *args: str, port: int | None = None, stderr_pipe: bool = False
    ) -> None:
        """``stderr_pipe``: stderr (the access log) goes to a pipe, ``proc.stderr``, that
        the test reads, or leaves unread, itself; stdout still goes to the log file."""
        self.port = port or free_port()
        self.log = tmp / f"serve-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BFX_")}
        self._out = self.log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bfx.cli",
                "serve",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                *(("--interface", INTERFACE) if INTERFACE else ()),
                *args,
            ],
            stdout=self._out,
            stderr=subprocess.PIPE if stderr_pipe else subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            # The default data directory (./bfx-data) lands in the test's own folder.
            cwd=tmp,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bfx serve exited {self.proc.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError):
                status, _, _ = self.call("GET", "/api/v1/health")
                if status == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"bfx serve did not answer in {START_TIMEOUT}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """The Granian worker processes: the children of ``bfx serve`` (Linux /proc)."""
        pids: list[int] = []
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{self.proc.pid}/task"):
                with open(f"/proc/{self.proc.pid}/task/{task}/children") as f:
                    pids += map(int, f.read().split())
        return sorted(pids)

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, payload: object = None) -> tuple[int, object]:
        body = None if payload is None else msgspec.json.encode(payload)
        headers = {"content-type": "application/json"} if body is not None else {}
        status, _, data = self.call(method, path, body, headers)
        return status, (msgspec.json.decode(data) if data else None)

    def kill(self) -> None:
        """SIGKILL to the whole process group: no shutdown hook runs."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._out.close()


#: The stores an end-to-end suite runs over, as a module fixture's ``params``.
STORES = ("memory", "sqlite", "postgresql")


def store_args(request, tmp: Path) -> list[str]:
    """``bfx serve``'s storage flags for ``request.param`` (one of :data:`STORES`): a
    fresh SQLite directory under ``tmp``, or a fresh database of the session's PostgreSQL
    server (the ``postgres`` fixture)."""
    if request.param == "memory":
        return ["--memory"]
    if request.param == "sqlite":
        return ["--data-dir", str(tmp / "d")]
    return ["--database-url", request.getfixturevalue("postgres").new_database()]


def connections_to_each_worker(port: int, workers: int = 2) -> list[http.client.HTTPConnection]:
    """One kept-alive connection to each of ``workers`` workers (told apart by the
    ``worker_pid`` of ``/api/v1/metrics``); bounded: 400 fresh connections at most, with
    a 1 s pause after every 20 that reach a worker already found (under load the last
    worker may still be starting when the first answers), none left open on failure."""
    found: dict[int, http.client.HTTPConnection] = {}
    misses = 0
    try:
        for _ in range(400):
            conn = http.client.HTTPConnection(HOST, port, timeout=30)
            conn.request("GET", "/api/v1/metrics")
            pid = msgspec.json.decode(conn.getresponse().read())["worker_pid"]
            if pid in found:
                conn.close()
                misses += 1
                if misses % 20 == 0:
                    time.sleep(1.0)
            else:
                found[pid] = conn
            if len(found) == workers:
                return list(found.values())
    except BaseException:
        for c in found.values():
            c.close()
        raise
    for c in found.values():
        c.close()
    raise AssertionError(f"400 connections reached only {len(found)} of {workers} workers")


def send_json(
    conn: http.client.HTTPConnection, method: str, path: str, body: object = None
) -> tuple[int, object]:
    """``method`` on ``/api/v1`` + ``path`` over ``conn``: the status and the decoded body."""
    data = None if body is None else msgspec.json.encode(body)
    conn.request(method, f"/api/v1{path}", body=data, headers={"content-type": "application/json"})
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, (msgspec.json.decode(raw) if raw else None)
