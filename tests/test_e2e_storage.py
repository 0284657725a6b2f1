"""Durability and multi-process consistency, end to end: real ``bfx serve`` processes
(Granian) over real HTTP, killed with SIGKILL, several of them on one store.

``BFX_CRASH_ROUNDS`` sets how many kill -9 rounds run (default 5; more with
``-m slow`` runs of ``test_kill_9_many_rounds``).
"""

from __future__ import annotations

import http.client
import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import msgspec
import pytest

from bfx_server import HOST, Server

pytestmark = pytest.mark.e2e

_enc = msgspec.json.encode
_dec = msgspec.json.decode
JSON = {"content-type": "application/json"}


class Conn:
    """One keep-alive HTTP connection."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection(HOST, port, timeout=10)

    def call(self, method: str, path: str, payload: object = None) -> tuple[int, object]:
        body = None if payload is None else _enc(payload)
        self.http.request(method, f"/api/v1{path}", body=body, headers=JSON if body else {})
        resp = self.http.getresponse()
        data = resp.read()
        return resp.status, (_dec(data) if data else None)

    def close(self) -> None:
        self.http.close()


# ---- kill -9 while clients write ----------------------------------------------------


class Writer(threading.Thread):
    """Writes until the server dies, remembering exactly what was answered 2xx, and
    which atomic batches were sent without an answer."""

    def __init__(self, port: int, tag: str) -> None:
        super().__init__(daemon=True)
        self.port, self.tag = port, tag
        self.acked: list[str] = []
        self.acked_rels: list[str] = []
        self.unanswered_batches: list[list[str]] = []
        self.n = 0

    def _code(self) -> str:
        self.n += 1
        return f"lambda x: x + {self.n} + 0 * len('{self.tag}')"

    def run(self) -> None:
        conn = Conn(self.port)
        rnd = random.Random(self.tag)
        try:
            while True:
                r = rnd.random()
                if r < 0.6:
                    status, body = conn.call(
                        "POST", "/substrates", {"expression_type": "lambda",
                                                "expression_code": self._code()}
                    )  # fmt: skip
                    assert status == 201, body
                    self.acked.append(body["substrate_id"])
                elif r < 0.8:
                    items = [{"expression_type": "lambda", "expression_code": self._code()}
                             for _ in range(20)]  # fmt: skip
                    pending = [it["expression_code"] for it in items]
                    self.unanswered_batches.append(pending)
                    status, body = conn.call(
                        "POST", "/substrates/batch", {"substrates": items, "atomic": True}
                    )
                    assert status == 200, body
                    self.unanswered_batches.pop()
                    self.acked += [it["substrate_id"] for it in body["results"]]
                elif len(self.acked) > 2:
                    a, b = rnd.sample(self.acked, 2)
                    status, body = conn.call(
                        "POST", "/relationships",
                        {"rel_type": "DEPENDENCY", "source_id": a, "target_id": b},
                    )  # fmt: skip
                    if status == 201:
                        self.acked_rels.append(body["relationship_id"])
                    else:
                        assert status == 409, body
        except (OSError, http.client.HTTPException):
            return  # the server was killed mid-request: that write may or may not exist
        finally:
            conn.close()


def _ids(port: int) -> tuple[set[str], set[str], set[str]]:
    """(substrate ids, relationship ids, expression codes) through the export route."""
    conn = Conn(port)
    try:
        conn.http.request("GET", "/api/v1/substrates/export?format=ndjson")
        resp = conn.http.getresponse()
        assert resp.status == 200
        subs, rels, codes = set(), set(), set()
        for line in resp.read().splitlines():
            rec = _dec(line)
            if rec["kind"] == "substrate":
                subs.add(rec["substrate_id"])
                codes.add(rec["expression_code"])
            else:
                rels.add(rec["relationship_id"])
        return subs, rels, codes
    finally:
        conn.close()


def _crash_rounds(tmp_path: Path, rounds: int, workers: int) -> None:
    data = tmp_path / "data"
    acked: set[str] = set()
    acked_rels: set[str] = set()
    for round_no in range(rounds):
        srv = Server(tmp_path, "--data-dir", str(data), "--workers", str(workers))
        writers = [Writer(srv.port, f"r{round_no}w{i}") for i in range(4)]
        for w in writers:
            w.start()
        time.sleep(random.uniform(0.3, 1.2))
        srv.kill()  # SIGKILL to the whole group: nothing gets to clean up
        for w in writers:
            w.join(timeout=30)
            assert not w.is_alive()
        for w in writers:
            acked.update(w.acked)
            acked_rels.update(w.acked_rels)
        written = sum(len(w.acked) for w in writers)
        assert written > 0, f"round {round_no}: nothing was written before the kill"

        srv = Server(tmp_path, "--data-dir", str(data))
        try:
            subs, rels, codes = _ids(srv.port)
        finally:
            srv.stop()
        missing = acked - subs
        assert not missing, f"round {round_no}: {len(missing)} answered creates were lost"
        assert not (acked_rels - rels), f"round {round_no}: answered relationships were lost"
        for w in writers:
            for batch in w.unanswered_batches:
                present = [c in codes for c in batch]
                assert all(present) or not any(present), "an atomic batch was half-written"
    conn = sqlite3.connect(data / "bfx.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The log and the tables agree: one live add per stored substrate.
        stored = conn.execute("SELECT count(*) FROM substrates").fetchone()[0]
        assert stored == len(subs)
    finally:
        conn.close()


def test_kill_9_loses_no_answered_write(tmp_path):
    _crash_rounds(tmp_path, int(os.environ.get("BFX_CRASH_ROUNDS", "5")), workers=1)


def test_kill_9_with_two_workers(tmp_path):
    _crash_rounds(tmp_path, 3, workers=2)


@pytest.mark.slow
def test_kill_9_many_rounds(tmp_path):
    _crash_rounds(tmp_path, 30, workers=2)


# ---- read-your-writes across processes -------------------------------------------------


def _read_your_writes(a_port: int, b_port: int, rounds: int) -> None:
    """Create through A, read through B at once; delete through B, 404 through A."""
    a, b = Conn(a_port), Conn(b_port)
    misses = []
    try:
        tag = random.getrandbits(32)
        for i in range(rounds):
            status, body = a.call(
                "POST", "/substrates",
                {"expression_type": "constant", "expression_code": str(tag * 100_000 + i)},
            )  # fmt: skip
            assert status == 201, body
            sid = body["substrate_id"]
            status, got = b.call("GET", f"/substrates/{sid}")
            if status != 200 or got["substrate_id"] != sid:
                misses.append((i, "create", status))
            if i % 10 == 5:
                misses += _creates_after(a, b, i, tag)
            if i % 10 == 0:
                status, _ = b.call("DELETE", f"/substrates/{sid}")
                assert status == 204
                status, _ = a.call("GET", f"/substrates/{sid}")
                if status != 404:
                    misses.append((i, "delete", status))
    finally:
        a.close()
        b.close()
    assert misses == []


def _creates_after(a: Conn, b: Conn, i: int, tag: int) -> list[tuple[int, str, int]]:
    """Creates through B that depend on a create through A just before: a create
    takes no freshness step of its own (docs/storage.md), so these check that its
    write, and a pipeline's read of its steps, see the other process's rows."""
    misses = []
    code = str(tag * 100_000 + 50_000 + i)
    status, body = a.call(
        "POST", "/substrates", {"expression_type": "constant", "expression_code": code}
    )
    assert status == 201, body
    sid = body["substrate_id"]
    status, body = b.call(
        "POST", "/substrates", {"expression_type": "constant", "expression_code": code}
    )
    if status != 409 or body["details"]["substrate_id"] != sid:
        misses.append((i, "duplicate", status))
    status, body = a.call(
        "POST", "/substrates", {"expression_type": "constant", "expression_code": code + "1"}
    )
    assert status == 201, body
    other = body["substrate_id"]
    status, body = b.call(
        "POST", "/relationships", {"rel_type": "LINEAGE", "source_id": sid, "target_id": other}
    )
    if status != 201:
        misses.append((i, "relationship", status))
    pipeline = msgspec.json.encode({"steps": [{"substrate_id": sid}]}).decode()
    status, body = b.call(
        "POST", "/substrates", {"expression_type": "pipeline", "expression_code": pipeline}
    )
    if status != 201:
        misses.append((i, "pipeline", status))
    return misses


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_store(request, tmp_path) -> list[str]:
    if request.param == "sqlite":
        return ["--data-dir", str(tmp_path / "shared")]
    return ["--database-url", request.getfixturevalue("postgres").new_database()]


def test_two_servers_on_one_store_read_their_writes(tmp_path, shared_store):
    """Two bfx processes (as two workers, or two nodes of a PostgreSQL store):
    thousands of writes through one, each read through the other at once."""
    one = Server(tmp_path, *shared_store)
    two = Server(tmp_path, *shared_store)
    try:
        _read_your_writes(one.port, two.port, 2000)
    finally:
        one.stop()
        two.stop()


def test_workers_read_each_others_writes(tmp_path):
    """``--workers 2``: a fresh connection per request lands on either worker."""
    srv = Server(tmp_path, "--data-dir", str(tmp_path / "w"), "--workers", "2")
    pids = set()
    misses = 0
    try:
        for i in range(600):
            c = Conn(srv.port)
            status, body = c.call(
                "POST", "/substrates", {"expression_type": "constant", "expression_code": str(i)}
            )
            c.close()
            assert status == 201, body
            c = Conn(srv.port)
            status, _ = c.call("GET", f"/substrates/{body['substrate_id']}")
            misses += status != 200
            if i % 20 == 0:
                _, metrics = c.call("GET", "/metrics")
                pids.add(metrics["worker_pid"])
            c.close()
    finally:
        srv.stop()
    assert misses == 0
    assert len(pids) == 2, f"only one worker answered: {pids}"
