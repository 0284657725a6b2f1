"""End to end through Granian: slow and idle clients, dead workers, a shared port.

Issue 12 ("Denial of service: slow clients", "two servers share one port"): each flood
below locked ``/health`` out before ``bfx serve`` bounded connections and read times —
Granian's default of backlog / workers = 1,024 connection permits per worker is held by
idle and slow connections alike. Every flood is on loopback, bounded in count and time.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec
import pytest

from bfx_server import HOST, Server

# Over RSGI (the default) and over ASGI: the same pipeline behind both adapters.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("interface")]

#: More connections than Granian's old default admitted per worker (1,024).
FLOOD = 1100
#: The bounds the flooded server runs with (short, so that each test stays short).
TIMEOUT = 2.0
#: How long a flood connection keeps trying before it gives up on its own.
HOLD = 8.0
#: What "keeps answering" means.
HEALTH_WITHIN = 1.0


@pytest.fixture(scope="module", autouse=True)
def _enough_open_files():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip(f"the open-files hard limit ({hard}) is below {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def flooded(tmp_path_factory, interface):
    srv = Server(
        tmp_path_factory.mktemp("flood"),
        "--memory",
        "--header-timeout",
        str(TIMEOUT),
        "--body-timeout",
        str(TIMEOUT),
    )
    yield srv
    srv.stop()


def _health_probe(port: int) -> float | str:
    """Seconds a fresh connection takes to get a 200 from /health, or what went wrong."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(HOST, port, timeout=HEALTH_WITHIN * 3)
    try:
        conn.request("GET", "/api/v1/health")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            return f"status {resp.status}"
    except OSError as exc:
        return f"{type(exc).__name__} after {time.monotonic() - start:.2f}s"
    finally:
        conn.close()
    return time.monotonic() - start


def _under_flood(
    port: int, client: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[str]]
) -> tuple[list[str], list[float | str]]:
    """Run FLOOD copies of ``client`` at once and probe /health all along.

    Returns what each flood client saw and every probe's outcome."""
    probes: list[float | str] = []
    done = threading.Event()

    def probe_loop() -> None:
        while not done.is_set():
            probes.append(_health_probe(port))
            done.wait(0.2)

    async def one() -> str:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), 5)
        except (TimeoutError, OSError) as exc:
            return f"no connection: {type(exc).__name__}"
        try:
            return await asyncio.wait_for(client(reader, writer), HOLD + 5)
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            return f"error: {type(exc).__name__}"
        finally:
            writer.close()

    async def flood() -> list[str]:
        return await asyncio.gather(*(one() for _ in range(FLOOD)))

    prober = threading.Thread(target=probe_loop)
    prober.start()
    try:
        outcomes = asyncio.run(flood())
    finally:
        done.set()
        prober.join(30)
    return outcomes, probes


def _assert_health_kept_answering(probes: list[float | str]) -> None:
    assert len(probes) >= 5, probes
    slow = [p for p in probes if isinstance(p, str) or p > HEALTH_WITHIN]
    assert not slow, f"/health did not answer within {HEALTH_WITHIN}s: {slow[:10]} of {len(probes)}"


async def _closed_by_server(reader: asyncio.StreamReader, within: float) -> float | None:
    """Seconds until the server closes the connection (reading whatever it sends)."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            data = await asyncio.wait_for(reader.read(65536), within)
        except ConnectionError:
            return time.monotonic() - start
        if not data:
            return time.monotonic() - start
    return None


def test_idle_keep_alive_connections_do_not_lock_health_out(flooded):
    async def idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        writer.write(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return f"answered {head[:20]!r}"
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        # Now idle, kept alive: the server must close it after the header timeout.
        closed = await _closed_by_server(reader, HOLD)
        return "kept open" if closed is None else "closed"

    outcomes, probes = _under_flood(flooded.port, idle)
    # Every one of the 1,100 got its answer: all were admitted at once, none queued.
    assert outcomes.count("closed") == FLOOD, sorted(set(outcomes))
    _assert_health_kept_answering(probes)


def test_slow_bodies_are_answered_408_and_do_not_lock_health_out(flooded):
    async def slow_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        writer.write(
            b"POST /api/v1/substrates HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        )
        await writer.drain()
        start = time.monotonic()
        answer = asyncio.ensure_future(reader.read(65536))
        while time.monotonic() - start < HOLD:
            finished, _ = await asyncio.wait([answer], timeout=0.5)
            if finished:
                break
            writer.write(b" ")  # one byte at a time
            await writer.drain()
        else:
            answer.cancel()
            return "still reading after the hold"
        data = answer.result()
        elapsed = time.monotonic() - start
        if not data.startswith(b"HTTP/1.1 408"):
            return f"answered {data[:20]!r}"
        body = msgspec.json.decode(data.split(b"\r\n\r\n", 1)[1])
        if body["error"] != "request_timeout" or set(body) != {"error", "message", "details"}:
            return f"wrong body {body}"
        return "408 in time" if elapsed < TIMEOUT + 2 else f"408 after {elapsed:.1f}s"

    outcomes, probes = _under_flood(flooded.port, slow_body)
    assert outcomes.count("408 in time") == FLOOD, sorted(set(outcomes))[:5]
    _assert_health_kept_answering(probes)


def test_slow_headers_are_cut_off_and_do_not_lock_health_out(flooded):
    async def slow_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> str:
        writer.write(b"GET /api/v1/health HTTP/1.1\r\n")
        await writer.drain()
        start = time.monotonic()
        closed = asyncio.ensure_future(_closed_by_server(reader, HOLD))
        while time.monotonic() - start < HOLD:
            finished, _ = await asyncio.wait([closed], timeout=0.5)
            if finished:
                break
            try:
                writer.write(b"X-Slow: 1\r\n")  # a header line at a time, never the end
                await writer.drain()
            except ConnectionError:
                await closed
                break
        else:
            closed.cancel()
            return "still open after the hold"
        after = closed.result()
        return "cut in time" if after is not None and after < TIMEOUT + 2 else f"cut {after}"

    outcomes, probes = _under_flood(flooded.port, slow_headers)
    assert outcomes.count("cut in time") == FLOOD, sorted(set(outcomes))[:5]
    _assert_health_kept_answering(probes)


# -- dead workers are replaced ----------------------------------------------------------


def _wait_for_replacement(srv: Server, dead: int, count: int, within: float = 20.0) -> list[int]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        pids = srv.worker_pids()
        if len(pids) == count and dead not in pids:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"worker {dead} was not replaced: {srv.worker_pids()}\n{srv.output()}")


def _answers_health(srv: Server, times: int = 20) -> None:
    for _ in range(times):
        assert _health_probe(srv.port) == pytest.approx(0, abs=HEALTH_WITHIN)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_killed_worker_is_respawned(tmp_path, workers):
    srv = Server(tmp_path, "--workers", str(workers))
    try:
        status, created = srv.json(
            "POST",
            "/api/v1/substrates",
            {"expression_type": "constant", "expression_code": "42"},
        )
        assert status == 201, created
        pids = srv.worker_pids()
        assert len(pids) == workers
        os.kill(pids[0], signal.SIGKILL)
        new = _wait_for_replacement(srv, pids[0], workers)
        assert srv.proc.poll() is None
        # The replacement serves, and from the same store.
        deadline = time.monotonic() + 20
        while isinstance(_health_probe(srv.port), str) and time.monotonic() < deadline:
            time.sleep(0.1)
        _answers_health(srv)
        for _ in range(4):
            status, again = srv.json("GET", f"/api/v1/substrates/{created['substrate_id']}")
            assert status == 200, again
        assert srv.worker_pids() == new
    finally:
        srv.stop()


# -- one port, one server ------------------------------------------------------------


def _serve_once(tmp: Path, port: int) -> tuple[int, str]:
    """``bfx serve`` on ``port``, expected to refuse at once; killed if it starts instead."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bfx.cli", "serve", "--host", HOST, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if not k.startswith("BFX_")},
        cwd=tmp,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise AssertionError("the second bfx serve started on a port already served") from None
    return proc.returncode, out.decode(errors="replace")


def test_a_second_bfx_on_the_same_port_is_refused(tmp_path):
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first = Server(first_dir)
    try:
        status, created = first.json(
            "POST",
            "/api/v1/substrates",
            {"expression_type": "constant", "expression_code": "7"},
        )
        assert status == 201, created
        code, out = _serve_once(second_dir, first.port)
        assert code == 1, out
        assert f"{HOST}:{first.port} is already in use by another bfx" in out
        assert "Traceback" not in out
        assert not (second_dir / "bfx-data").exists()  # refused before touching storage
        # Every request still reaches the first server's data.
        for _ in range(10):
            status, _ = first.json("GET", f"/api/v1/substrates/{created['substrate_id']}")
            assert status == 200
    finally:
        first.stop()


def test_a_port_held_by_another_program_is_refused(tmp_path):
    import socket

    with socket.socket() as other:
        other.bind((HOST, 0))
        other.listen()
        code, out = _serve_once(tmp_path, other.getsockname()[1])
    assert code == 1, out
    assert "is already in use by another program" in out
    assert "Traceback" not in out
    assert len(out.strip().splitlines()) == 1, out
