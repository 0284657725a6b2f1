"""The change feed and its stream through real ``bfx serve`` processes (Granian): SSE
clients receive changes live and resume from ``Last-Event-ID``; the feed is the same
through every worker and node and equals the database's log after a random workload;
streams are bounded per worker and end promptly on shutdown; a worker behind the
pruned log reloads in full."""

from __future__ import annotations

import http.client
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec
import pytest
from httpx_sse import connect_sse

from bfx.domain.changes import OP_NAMES
from bfx.identity import format_id
from bfx.storage.base import from_db
from bfx_server import HOST, Server, connections_to_each_worker, send_json

pytestmark = pytest.mark.e2e

POLL = ["--stream-poll", "0.1"]


def _create(port: int, code: str) -> str:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        status, body = send_json(
            conn, "POST", "/substrates", {"expression_type": "constant", "expression_code": code}
        )
    finally:
        conn.close()
    assert status == 201, body
    return body["substrate_id"]  # type: ignore[index]


def _events(stream, n: int) -> list[tuple[str, dict]]:
    """The next ``n`` change events (id, data) of an open SSE source's ``iter_sse()``."""
    out = []
    for sse in stream:
        if not sse.data:  # the opening ``retry:`` (no event, as SSE says)
            assert sse.retry == 2000
            continue
        assert sse.event == "change", sse
        out.append((sse.id, msgspec.json.decode(sse.data)))
        if len(out) == n:
            return out
    raise AssertionError(f"the stream ended after {len(out)} of {n} events")


def test_stream_is_live_and_resumes_from_the_last_event_id(tmp_path, interface):
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "d"), *POLL)
    try:
        url = f"http://{HOST}:{srv.port}/api/v1/changes/stream"
        before = [_create(srv.port, f"{i}") for i in range(2)]
        with httpx.Client(timeout=10) as client:
            with connect_sse(client, "GET", url, params={"since": 0}) as source:
                assert source.response.headers["content-type"] == "text/event-stream"
                stream = source.iter_sse()
                first = _events(stream, 2)
                assert first == [
                    ("1", {"seq": 1, "op": "substrate_created", "id": before[0]}),
                    ("2", {"seq": 2, "op": "substrate_created", "id": before[1]}),
                ]
                live = [_create(srv.port, f"10{i}") for i in range(2)]
                got = _events(stream, 2)
                assert [d["id"] for _, d in got] == live
                last = got[-1][0]
            missed = [_create(srv.port, f"20{i}") for i in range(3)]
            with connect_sse(client, "GET", url, headers={"Last-Event-ID": last}) as source:
                resumed = _events(source.iter_sse(), 3)
                assert [d["id"] for _, d in resumed] == missed
                assert [int(i) for i, _ in resumed] == [5, 6, 7]
            # Without since or Last-Event-ID: from now on.
            with connect_sse(client, "GET", url) as source:
                now = _create(srv.port, "300")
                assert _events(source.iter_sse(), 1) == [
                    ("8", {"seq": 8, "op": "substrate_created", "id": now})
                ]
    finally:
        srv.stop()


def test_streams_are_bounded_per_worker_and_end_on_shutdown(tmp_path, interface):
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "d"), "--stream-clients", "1", *POLL)
    url = f"http://{HOST}:{srv.port}/api/v1/changes/stream"
    try:
        with httpx.Client(timeout=10) as client, connect_sse(client, "GET", url) as source:
            assert source.response.status_code == 200
            refused = client.get(url)
            assert refused.status_code == 503
            assert refused.json()["error"] == "overloaded"
            assert refused.json()["details"] == {"stream_clients": 1}
            assert refused.headers["retry-after"] == "1"
            started = time.monotonic()
            srv.proc.send_signal(signal.SIGINT)
            # The open stream ends (its worker closes it), and the server exits.
            assert [e for e in source.iter_sse() if e.data] == []
            srv.proc.wait(timeout=8)
            took = time.monotonic() - started
        assert srv.proc.returncode == 0, srv.output()
        assert took < 5, f"bfx serve took {took:.1f} s to stop with a stream open"
        assert "refused to gracefully stop" not in srv.output()
    finally:
        srv.stop()


def _workload(ports: list[int], rng: random.Random, n: int) -> int:
    """Creates, metadata patches, relationships and deletes over fresh connections to
    the given ports (so they land on any worker); returns how many writes succeeded."""
    live: list[str] = []
    done = 0
    for i in range(n):
        conn = http.client.HTTPConnection(HOST, rng.choice(ports), timeout=10)
        roll = rng.random()
        try:
            if roll < 0.5 or len(live) < 3:
                body = {"expression_type": "constant", "expression_code": str(rng.getrandbits(48))}
                status, answer = send_json(conn, "POST", "/substrates", body)
                assert status == 201, answer
                live.append(answer["substrate_id"])  # type: ignore[index]
            elif roll < 0.65:
                status, _ = send_json(
                    conn, "PATCH", f"/substrates/{rng.choice(live)}", {"metadata": {"i": i}}
                )
                assert status == 200
            elif roll < 0.85:
                src, dst = rng.sample(live, 2)
                body = {"rel_type": "DEPENDENCY", "source_id": src, "target_id": dst}
                status, _ = send_json(conn, "POST", "/relationships", body)
                assert status in (201, 409)
                if status == 409:
                    continue
            else:
                victim = live.pop(rng.randrange(len(live)))
                status, _ = send_json(conn, "DELETE", f"/substrates/{victim}")
                assert status == 204
        finally:
            conn.close()
        done += 1
    return done


def _feed_through(conn: http.client.HTTPConnection) -> list[dict]:
    out: list[dict] = []
    since = 0
    for _ in range(10_000):
        status, page = send_json(conn, "GET", f"/changes?since={since}&limit=37")
        assert status == 200, page
        out += page["changes"]  # type: ignore[index]
        if page["next_since"] == since:  # type: ignore[index]
            return out
        since = page["next_since"]  # type: ignore[index]
    raise AssertionError("the feed did not end")


def _published(rows: list[tuple[int, int, int]]) -> list[dict]:
    return [
        {"seq": seq, "op": OP_NAMES[op], "id": format_id(from_db(ident))}
        for seq, op, ident in rows
        if op in OP_NAMES
    ]


def test_the_feed_matches_the_log_across_two_workers(tmp_path):
    data = tmp_path / "d"
    srv = Server(tmp_path, "--data-dir", str(data), "--workers", "2")
    try:
        writes = _workload([srv.port], random.Random(18), 300)
        conns = connections_to_each_worker(srv.port)
        feeds = [_feed_through(c) for c in conns]
        for c in conns:
            c.close()
    finally:
        srv.stop()
    db = sqlite3.connect(f"file:{Path(data) / 'bfx.db'}?mode=ro", uri=True)
    rows = db.execute("SELECT seq, op, id FROM changes ORDER BY seq").fetchall()
    db.close()
    assert feeds[0] == feeds[1] == _published(rows)
    assert len(feeds[0]) == writes


def test_the_feed_matches_the_log_across_two_nodes(tmp_path, postgres):
    import psycopg

    url = postgres.new_database()
    one = Server(tmp_path, "--database-url", url)
    two = Server(tmp_path, "--database-url", url)
    try:
        writes = _workload([one.port, two.port], random.Random(15), 200)
        feeds = []
        for node in (one, two):
            conn = http.client.HTTPConnection(HOST, node.port, timeout=10)
            feeds.append(_feed_through(conn))
            conn.close()
    finally:
        one.stop()
        two.stop()
    with psycopg.connect(url) as db:
        rows = db.execute("SELECT seq, op, id FROM changes ORDER BY seq").fetchall()
    assert feeds[0] == feeds[1] == _published(rows)
    assert len(feeds[0]) == writes


def test_a_worker_behind_the_pruned_log_reloads_in_full(tmp_path):
    srv = Server(
        tmp_path, "--data-dir", str(tmp_path / "d"), "--workers", "2",
        "--changes-retention", "8", "--log-level", "info",
    )  # fmt: skip
    try:
        writer, follower = connections_to_each_worker(srv.port)
        status, first = send_json(
            writer, "POST", "/substrates", {"expression_type": "constant", "expression_code": "0"}
        )
        assert status == 201
        assert send_json(follower, "GET", f"/substrates/{first['substrate_id']}")[0] == 200  # type: ignore[index]
        ids = []
        for i in range(1, 40):
            body = {"expression_type": "constant", "expression_code": str(i)}
            status, answer = send_json(writer, "POST", "/substrates", body)
            assert status == 201
            ids.append(answer["substrate_id"])  # type: ignore[index]
        assert send_json(writer, "DELETE", f"/substrates/{first['substrate_id']}")[0] == 204  # type: ignore[index]
        # The follower's next entry is long pruned: it reloads, then answers as the writer.
        for conn in (writer, follower):
            status, page = send_json(conn, "GET", "/substrates?limit=1000")
            assert status == 200
            assert sorted(s["substrate_id"] for s in page["substrates"]) == sorted(ids)  # type: ignore[index]
            status, answer = send_json(conn, "GET", "/changes?since=0")
            assert status == 410
            assert answer["error"] == "changes_pruned"
        writer.close()
        follower.close()
    finally:
        srv.stop()
    assert "reloading in full" in srv.output()


def test_the_stream_ends_for_a_client_that_leaves(tmp_path):
    """A departed client's slot comes back (noticed when the next chunk is sent)."""
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "d"), "--stream-clients", "1", *POLL)
    url = f"http://{HOST}:{srv.port}/api/v1/changes/stream"
    try:
        with httpx.Client(timeout=10) as client:
            with connect_sse(client, "GET", url) as source:
                assert source.response.status_code == 200
            _create(srv.port, "400")  # the next chunk to the departed client fails
            status = 0
            for _ in range(50):
                with client.stream("GET", url) as response:
                    status = response.status_code
                if status != 503:
                    break
                time.sleep(0.1)
            assert status == 200
    finally:
        srv.stop()


def test_serve_help_documents_the_flags():
    out = subprocess.run(
        [sys.executable, "-m", "bfx.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for flag in ("--changes-retention", "--stream-clients", "--stream-poll"):
        assert flag in out
