"""Two ``bfx serve`` nodes on one PostgreSQL, end to end: read-your-writes while the
freshness check is shared by concurrent requests, and concurrent single creates through
both nodes committed in groups (each answered once, the change log gap-free)."""

from __future__ import annotations

import http.client
import random
import threading

import msgspec
import pytest

from bfx._core import format_id
from bfx_server import HOST, Server

pytestmark = pytest.mark.e2e

_JSON = {"content-type": "application/json"}


def _send(conn: http.client.HTTPConnection, method: str, path: str, body=None):
    data = None if body is None else msgspec.json.encode(body)
    conn.request(method, f"/api/v1{path}", data, _JSON if data else {})
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, (msgspec.json.decode(raw) if raw else None)


def test_read_your_writes_across_nodes_while_checks_are_shared(tmp_path, postgres):
    """Clients write through node A and at once read through node B, while other
    clients keep B busy with reads (so B's checks are in flight when a read arrives and
    are shared): every read finds the write answered just before it."""
    url = postgres.new_database()
    a = Server(tmp_path, "--database-url", url)
    b = Server(tmp_path, "--database-url", url)
    stop = threading.Event()
    misses: list[tuple[str, int]] = []
    done: list[int] = []

    def busy_reader() -> None:
        conn = http.client.HTTPConnection(HOST, b.port, timeout=10)
        try:
            for _ in range(100_000):  # bounded; stopped when the writers are done
                if stop.is_set():
                    return
                _send(conn, "GET", "/health")
                _send(conn, "GET", "/substrates/0000000000000001")
        finally:
            conn.close()

    def writer(w: int) -> None:
        ca = http.client.HTTPConnection(HOST, a.port, timeout=10)
        cb = http.client.HTTPConnection(HOST, b.port, timeout=10)
        tag = random.getrandbits(40)
        try:
            for i in range(150):
                status, body = _send(
                    ca, "POST", "/substrates",
                    {"expression_type": "constant", "expression_code": str(tag * 1000 + i)},
                )  # fmt: skip
                assert status == 201, body
                sid = body["substrate_id"]
                status, got = _send(cb, "GET", f"/substrates/{sid}")
                if status != 200 or got["substrate_id"] != sid:
                    misses.append((sid, status))
                if i % 15 == 0:  # and a delete through B is seen through A at once
                    assert _send(cb, "DELETE", f"/substrates/{sid}")[0] == 204
                    status, _ = _send(ca, "GET", f"/substrates/{sid}")
                    if status != 404:
                        misses.append((sid, status))
            done.append(w)
        finally:
            ca.close()
            cb.close()

    readers = [threading.Thread(target=busy_reader, daemon=True) for _ in range(6)]
    writers = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(6)]
    try:
        for t in readers + writers:
            t.start()
        for t in writers:
            t.join(120)
            assert not t.is_alive()
    finally:
        stop.set()
        for t in readers:
            t.join(30)
        a.stop()
        b.stop()
    assert sorted(done) == list(range(6))
    assert misses == []


def test_concurrent_creates_through_two_nodes_are_each_answered_once(tmp_path, postgres):
    import psycopg

    url = postgres.new_database()
    nodes = [Server(tmp_path, "--database-url", url) for _ in range(2)]
    answers: list[tuple[str, int, object]] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        conn = http.client.HTTPConnection(HOST, nodes[w % 2].port, timeout=10)
        try:
            for i in range(60):
                # Half the codes are written by every writer: one 201, the rest 409.
                code = str(i) if i % 2 else f"{w + 1}{i:04d}9"
                status, body = _send(
                    conn, "POST", "/substrates",
                    {"expression_type": "constant", "expression_code": code},
                )  # fmt: skip
                with lock:
                    answers.append((code, status, body))
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(16)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
            assert not t.is_alive()
        ids = {}
        for code, status, body in answers:
            assert status in (201, 409), body
            if status == 201:
                assert code not in ids  # created once, whichever node took it
                ids[code] = body["substrate_id"]
        for code, status, body in answers:
            if status == 409:
                assert body["details"]["substrate_id"] == ids[code]
        for node in nodes:  # each node holds every row created through either
            for sid in ids.values():
                status, _, _ = node.call("GET", f"/api/v1/substrates/{sid}")
                assert status == 200
    finally:
        for node in nodes:
            node.stop()
    with psycopg.connect(url) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM changes ORDER BY seq")]
        rows = conn.execute("SELECT count(*) FROM substrates").fetchone()[0]
    assert seqs == list(range(1, len(seqs) + 1))
    assert rows == len(ids) == len(seqs)


def test_postgresql_restarted_under_load_is_reconnected(tmp_path):
    """PostgreSQL stopped and started under a bounded load of creates and reads:
    during the outage requests answer 503 ``storage_error`` (never 500, never a hang
    past the client's 10 s), after it no 5xx at all, and every acknowledged create is
    there — the connections were re-established without restarting bfx."""
    import os
    import time

    import psycopg

    import pg_server

    try:
        pg = pg_server.start()  # a server of its own: the session's keeps running
    except pg_server.Unavailable as exc:
        if os.environ.get("BFX_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here (BFX_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(f"PostgreSQL restart test skipped: {exc}")
    url = pg.new_database()
    server = None
    stop = threading.Event()
    marks: dict[str, float] = {}
    seen: list[tuple[float, int, object]] = []  # (sent at, status, body)
    acked: list[str] = []
    lock = threading.Lock()

    def client(w: int) -> None:
        conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
        try:
            for i in range(100_000):  # bounded; stopped by the test
                if stop.is_set():
                    return
                sent = time.monotonic()
                status, body = -1, None
                for _attempt in range(2):
                    try:
                        if i % 2:
                            status, body = _send(
                                conn, "POST", "/substrates",
                                {"expression_type": "constant",
                                 "expression_code": f"{w + 1}{i:06d}"},
                            )  # fmt: skip
                        else:
                            status, body = _send(conn, "GET", "/substrates?limit=5")
                        break
                    except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                        # A 503 answered before a POST's body was read ends its connection
                        # (the unread body cannot be skipped): the next request, never
                        # received, goes again on a new connection.
                        conn.close()
                        status, body = -1, "the connection was closed"
                    except (OSError, http.client.HTTPException) as exc:  # a failure
                        status, body = -1, repr(exc)
                        conn.close()
                        break
                with lock:
                    seen.append((sent, status, body))
                    if status == 201:
                        acked.append(body["substrate_id"])
                time.sleep(0.002)
        finally:
            conn.close()

    try:
        server = Server(tmp_path, "--database-url", url)
        threads = [threading.Thread(target=client, args=(w,), daemon=True) for w in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        marks["down"] = time.monotonic()
        pg.pause()
        time.sleep(2.0)
        pg.resume()
        marks["up"] = time.monotonic()
        time.sleep(2.0)
        stop.set()
        for t in threads:
            t.join(30)
            assert not t.is_alive()  # no request hung past the client's timeout
        statuses = {s for _, s, _ in seen}
        assert statuses <= {200, 201, 503}, [
            (round(t - marks["down"], 3), round(marks["up"] - marks["down"], 3), b)
            for t, s, b in seen
            if s not in (200, 201, 503)
        ][:5]
        outage = [(s, b) for t, s, b in seen if marks["down"] <= t < marks["up"] and s == 503]
        assert outage, "no request met the outage"
        assert all(b["error"] == "storage_error" for _, b in outage)
        after = [s for t, s, _ in seen if t >= marks["up"]]
        assert len(after) > 50
        assert all(s < 500 for s in after), sorted(set(after))
        for sid in acked:
            status, _, _ = server.call("GET", f"/api/v1/substrates/{sid}")
            assert status == 200, sid
        assert server.proc.poll() is None
    finally:
        stop.set()
        if server is not None:
            server.stop()
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id FROM substrates").fetchall()
    stored = {format_id(r[0] & (1 << 64) - 1) for r in rows}
    pg.stop()
    assert set(acked) <= stored


def test_exports_use_a_bounded_pool_and_block_neither_writes_nor_freshness(postgres):
    """An export held open mid-stream keeps one pooled connection: writes and the
    freshness check go on; past ``export_connections`` another export is refused with
    503 ``overloaded`` once the wait runs out; a finished export gives its connection
    back for the next one."""
    from bfx import Registry, errors
    from bfx.storage.postgres import PostgresStore

    url = postgres.new_database()
    reg = Registry(storage=PostgresStore(url, connect_timeout=1, export_connections=1))
    other = Registry(storage=PostgresStore(url))  # another node
    try:
        reg.create_many(
            [{"expression_type": "constant", "expression_code": str(i)} for i in range(50)]
        )
        stream = reg.engine.export_rows()
        first = next(stream)
        assert first.identity is not None
        # The export holds its snapshot and its connection; writes and catch-up go on.
        made = other.create("constant", "1000")
        assert reg.refresh() >= 1
        assert made.identity in reg
        reg.create("constant", "1001")
        with pytest.raises(errors.OverloadedError) as refused:
            next(reg.engine.export_rows())
        assert refused.value.status == 503
        assert refused.value.details == {"export_connections": 1}
        rest = list(stream)  # the snapshot taken before the writes above
        assert len(rest) == 49
        again = list(reg.engine.export_rows())  # the connection came back to the pool
        assert len(again) == 52
    finally:
        reg.close()
        other.close()


def test_the_freshness_probe_on_the_loop_sees_other_nodes_and_recovers(postgres):
    """``probe_on_loop`` (the shared freshness check's look, on the event loop): False
    while the arena is current, True once another node wrote (and False again after the
    refresh), a dropped probe connection a storage error and then a new connection."""
    import asyncio

    from bfx import Registry, errors
    from bfx.storage.postgres import PostgresStore

    url = postgres.new_database()
    store = PostgresStore(url, connect_timeout=2)
    reg = Registry(storage=store)
    other = Registry(storage=PostgresStore(url))
    try:
        made = []

        async def scenario() -> list[object]:
            seen: list[object] = [await store.probe_on_loop()]
            made.append(other.create("constant", "7"))
            seen.append(await store.probe_on_loop())
            await asyncio.get_running_loop().run_in_executor(None, store.refresh)
            seen.append(await store.probe_on_loop())
            # The server ends the probe's session: the next look fails cleanly...
            (probe,) = store._loop_probes.values()
            other.engine.store._conn.execute(
                "SELECT pg_terminate_backend(%s)", (probe.pgconn.backend_pid,)
            )
            try:
                await store.probe_on_loop()
            except errors.StorageError as exc:
                seen.append(exc.code)
            # ...and the one after it connects again.
            seen.append(await store.probe_on_loop())
            return seen

        assert asyncio.run(scenario()) == [False, True, False, "storage_error", False]
        assert made[0].identity in reg
    finally:
        reg.close()
        other.close()
