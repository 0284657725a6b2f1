"""What each protocol adapter must get right on its own, over a real ``bfx serve``, once
per Granian interface (RSGI, the default, and ASGI): the same status and error shape
for chunked bodies past the limit, HEAD, undecodable headers, a client that leaves
mid-body or mid-stream.

The shared pipeline's behaviour (limits, deadlines, CORS, auth...) is covered by the
other end-to-end suites, which run over both interfaces too.
"""

from __future__ import annotations

import os
import socket
import time

import msgspec
import pytest

from bfx_server import HOST, Server

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("interface")]

API = "/api/v1"
LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory, interface):
    srv = Server(tmp_path_factory.mktemp("interfaces"), "--memory", "--body-limit", str(LIMIT))
    yield srv
    srv.stop()


def _raw(port: int, request: bytes, *, read: bool = True) -> bytes:
    """Send raw bytes on a fresh connection; the answer up to the server's close or a
    2 s lull (bounded)."""
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request)
        if not read:
            return b""
        sock.settimeout(2)
        data = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
        return data


def _split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def _chunked(body: bytes, size: int = 1000) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def _post_chunked(port: int, body: bytes) -> tuple[int, dict[str, str], bytes]:
    head = (
        b"POST /api/v1/substrates HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return _split(_raw(port, head + _chunked(body)))


def _substrate(code: str, pad: int = 0) -> bytes:
    doc = {"expression_type": "expression", "expression_code": code}
    if pad:
        doc["metadata"] = {"pad": "x" * pad}
    return msgspec.json.encode(doc)


def test_a_chunked_body_is_read_within_the_limit(server):
    status, _, body = _post_chunked(server.port, _substrate("x + 1", pad=2000))
    assert status == 201, body
    assert msgspec.json.decode(body)["expression_code"] == "x + 1"


def test_a_chunked_body_past_the_limit_is_413_without_a_declared_length(server):
    status, headers, body = _post_chunked(server.port, _substrate("x + 2", pad=3 * LIMIT))
    assert status == 413
    assert headers["connection"] == "close"  # the rest of the body is still coming
    answer = msgspec.json.decode(body)
    assert answer["error"] == "body_too_large"
    assert answer["details"] == {"limit": LIMIT}


def test_head_has_the_get_headers_and_no_body(server):
    _, created = server.json("POST", f"{API}/substrates", {"expression_type": "expression",
                                                            "expression_code": "x + 3"})  # fmt: skip
    path = f"{API}/substrates/{created['substrate_id']}"  # type: ignore[index]
    get_status, get_headers, get_body = server.call("GET", path)
    # Two requests on one connection: a HEAD answer with a body would corrupt the second.
    request = f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET {path} HTTP/1.1\r\nHost: x\r\n"
    answer = _raw(server.port, request.encode() + b"Connection: close\r\n\r\n")
    head, _, rest = answer.partition(b"\r\n\r\n")
    status, headers, _ = _split(head + b"\r\n\r\n")
    assert (status, get_status) == (200, 200)
    assert headers["content-length"] == str(len(get_body)) == get_headers["content-length"]
    assert headers["content-type"] == "application/json"
    second_status, _, second_body = _split(rest)
    assert (second_status, second_body) == (200, get_body)


def test_an_undecodable_header_is_refused_like_any_bad_one(server):
    body = _substrate("x + 4")
    request = (
        b"POST /api/v1/substrates HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/\xffjson\r\nContent-Length: %d\r\n\r\n%s"
    ) % (len(body), body)
    status, _, answer = _split(_raw(server.port, request))
    assert status == 415
    assert msgspec.json.decode(answer)["error"] == "unsupported_media_type"


def _log_lines(server: Server, needle: str, count: int = 1, within: float = 5.0) -> list[str]:
    """The server's output lines holding ``needle``, once ``count`` are there (a line is
    written after its answer is out) or ``within`` seconds have passed."""
    deadline = time.monotonic() + within
    while True:
        lines = [line for line in server.output().splitlines() if needle in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_a_client_leaving_mid_body_is_a_499_not_an_error(server):
    request = (
        b"POST /api/v1/substrates/batch HTTP/1.1\r\nHost: x\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"substr'
    )
    _raw(server.port, request, read=False)
    lines = _log_lines(server, '"POST /api/v1/substrates/batch" 499')
    assert len(lines) == 1, server.output()[-2000:]
    assert "Traceback" not in server.output()
    assert server.call("GET", f"{API}/health")[0] == 200


def test_a_client_leaving_mid_export_frees_its_slot(server, interface):
    # About 8 MB of export: more than the loopback socket buffers hold, so a client that
    # stops reading leaves the stream half sent.
    pad = {"pad": "x" * 8000}
    for start in range(0, 1000, 100):
        items = [{"expression_type": "expression", "expression_code": f"x * {i} + 7",
                  "metadata": pad} for i in range(start, start + 100)]  # fmt: skip
        status, _ = server.json("POST", f"{API}/substrates/batch", {"substrates": items})
        assert status == 200
    # More clients leave mid-stream than the heavy pool has slots (2 threads + 16 queued):
    # a slot kept by a departed stream would make later heavy requests 503.
    for _ in range(20):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(5)
            sock.connect((HOST, server.port))
            sock.sendall(b"GET /api/v1/substrates/export HTTP/1.1\r\nHost: x\r\n\r\n")
            head = sock.recv(1024)
            if interface == "rsgi":
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
            else:
                # Granian's ASGI send drops a gone client's bytes without a word, so each
                # stream runs to its end and holds its slot that long: the pool may be
                # full for a moment (503 and Retry-After, the documented answer).
                assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")), head[:200]
    finals = 0
    for _ in range(120):  # bounded: the streams still running end within seconds
        finals += 1
        status, _, body = server.call("GET", f"{API}/substrates/export")
        if status != 503:
            break
        time.sleep(0.5)
    assert status == 200
    assert len(msgspec.json.decode(body)["substrates"]) >= 1000
    lines = _log_lines(server, '"GET /api/v1/substrates/export"', count=20 + finals)
    statuses = [line.split('" ', 1)[1].split()[0] for line in lines]
    assert len(statuses) == 20 + finals
    assert set(statuses) <= ({"200", "499"} if interface == "rsgi" else {"200", "499", "503"})
    # RSGI's send raises once Granian sees the client gone: the stream stops there,
    # logged 499 (when the rest fitted in its buffers first, the stream ends as 200).
    # Granian's ASGI send drops the bytes without a word, so those streams run to the end.
    if interface == "rsgi":
        assert "499" in statuses
    assert "Traceback" not in server.output()


def test_a_stop_runs_the_shutdown_hooks(tmp_path, monkeypatch):
    # The app's shutdown logs nothing itself: make the registry's close say it ran.
    marker = tmp_path / "closed"
    sitecustomize = tmp_path / "hook" / "sitecustomize.py"
    sitecustomize.parent.mkdir()
    sitecustomize.write_text(
        "import bfx.registry as r\n"
        "_close = r.Registry.close\n"
        "def close(self):\n"
        f"    open({str(marker)!r}, 'a').write('closed\\n')\n"
        "    return _close(self)\n"
        "r.Registry.close = close\n"
    )
    monkeypatch.setenv("PYTHONPATH", f"{sitecustomize.parent}:{os.environ.get('PYTHONPATH', '')}")
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "data"))
    try:
        status, _ = srv.json("POST", f"{API}/substrates",
                             {"expression_type": "expression", "expression_code": "x + 5"})  # fmt: skip
        assert status == 201
    finally:
        srv.stop()
    assert srv.proc.returncode == 0, srv.output()
    assert "Traceback" not in srv.output()
    # __rsgi_del__ (RSGI) or the lifespan shutdown (ASGI) closed the worker's registry.
    assert marker.read_text() == "closed\n"
