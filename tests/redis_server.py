"""A throwaway Redis server for the tests: ``redis-server`` on a free loopback port, no
persistence, in a temporary directory, stopped at the end of the session.

Debian's ``redis-server`` package provides the binary (``.ci/run`` installs it). When it
cannot be started, :func:`start` raises :class:`Unavailable` with the reason; the fixture
turns that into a skip that prints it, or into a failure when ``BFX_REQUIRE_REDIS=1``
(set by ``.ci/run``, where Redis must run).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 20.0


class Unavailable(Exception):
    pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise Unavailable("redis-server is not installed (apt-get install -y redis-server)")
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bfx-redis-"))
        self._log = (self.root / "log").open("wb")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.root),
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = (self.root / "log").read_text(errors="replace")[-500:]
                raise Unavailable(f"redis-server exited {self.proc.returncode}: {log}")
            try:
                with self.client() as c:
                    if c.ping():
                        return
            except redis.RedisError:
                time.sleep(0.05)
        raise Unavailable(f"redis-server did not answer within {START_TIMEOUT}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> RedisServer:
    return RedisServer()
