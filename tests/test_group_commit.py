"""Group commit (``bfx.group_commit``): concurrent single writes share a transaction,
each still answered with its own answer after its commit; the change log stays
gap-free; a kill -9 during a burst loses no answered create."""

from __future__ import annotations

import http.client
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest

from bfx import Registry, errors
from bfx._core import format_id
from bfx.group_commit import MAX_GROUP, GroupCommit
from bfx_server import HOST, Server

THREADS = 24
PER_THREAD = 40


def _code(n: int) -> str:
    return f"x * {n} + 3"


def _gap_free(db) -> int:
    with sqlite3.connect(db) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM changes ORDER BY seq")]
        head = conn.execute("SELECT seq FROM bfx_head").fetchone()[0]
    assert seqs == list(range(1, len(seqs) + 1))
    assert head == len(seqs)
    return head


def test_concurrent_creates_each_get_their_own_answer(tmp_path):
    """Threads create at once: new rows, rows another thread also creates (one wins,
    the others get a duplicate naming it), code the sandbox refuses, and relationships
    to a missing endpoint (refused by the arena check inside the group). Every answer is
    what that one request alone would get; the database equals the arena."""
    reference = Registry()  # ids are content hashes: the in-memory registry predicts them
    reg = Registry(data_dir=tmp_path / "data")
    hub = reg.create("expression", "x + 1")
    start = threading.Barrier(THREADS)

    def work(t: int) -> list[tuple[str, object, object]]:
        start.wait()
        out = []
        for i in range(PER_THREAD):
            kind = i % 4
            try:
                if kind == 0:  # only this thread creates it
                    code = _code(t * 1000 + i)
                    out.append(("new", code, reg.create("expression", code).identity))
                elif kind == 1:  # every thread creates these
                    code = _code(i)
                    out.append(("shared", code, reg.create("expression", code).identity))
                elif kind == 2:
                    reg.create("expression", "__import__('os')")
                    out.append(("refused", None, "created"))
                else:
                    missing = format((t * 1000 + i) | 1 << 62, "016x")
                    reg.relate("DEPENDENCY", hub.identity, missing)
                    out.append(("missing", None, "created"))
            except errors.BfxError as exc:
                out.append((("new", "shared", "refused", "missing")[kind], None, exc))
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        answers = [a for part in pool.map(work, range(THREADS)) for a in part]

    winners: dict[str, int] = {}
    losers: dict[str, int] = {}
    for kind, code, answer in answers:
        if kind == "new":
            assert answer == reference.create("expression", code).identity
        elif kind == "shared":
            if isinstance(answer, errors.DuplicateError):
                named = answer.details["substrate_id"]
                losers[named] = losers.get(named, 0) + 1
            else:
                assert isinstance(answer, int), answer
                assert answer not in winners.values()
                winners[code] = answer
        elif kind == "refused":
            assert isinstance(answer, errors.SandboxError), answer
        else:
            assert isinstance(answer, errors.NotFoundError), answer
    shared_codes = {_code(i) for i in range(PER_THREAD) if i % 4 == 1}
    assert set(winners) == shared_codes  # each shared row created exactly once
    assert {format_id(v) for v in winners.values()} == set(losers)
    assert all(n == THREADS - 1 for n in losers.values())

    group = reg.engine.substrate_writes
    assert group.rows == 1 + THREADS * PER_THREAD // 2  # the hub, new and shared rows
    assert group.groups < group.rows  # writes queued meanwhile did share transactions

    ids = {s.identity for s in reg.iter_substrates()}
    reg.close()
    head = _gap_free(tmp_path / "data" / "bfx.db")
    expected = 1 + THREADS * (PER_THREAD // 4) + len(shared_codes)
    assert head == expected  # one log entry per row written: nothing lost, nothing twice
    again = Registry(data_dir=tmp_path / "data")
    try:
        assert len(again) == expected
        assert {s.identity for s in again.iter_substrates()} == ids
        for kind, code, answer in answers:
            if kind == "new":
                assert again.get(answer).expression_code == code
    finally:
        again.close()


def test_a_group_that_fails_as_a_whole_is_retried_row_by_row():
    """One bad row must not fail the rows written with it: the group's transaction
    fails, then each row is written alone and only the bad one fails."""
    calls: list[list[int]] = []
    entered = threading.Event()
    release = threading.Event()

    def write_many(rows):
        calls.append(list(rows))
        if rows == [0]:
            entered.set()
            release.wait(10)  # hold the first group while the others queue
        if 13 in rows:
            raise errors.StorageError("constraint failed", {})
        return [r * 10 for r in rows]

    group = GroupCommit(write_many)
    results: dict[int, object] = {}

    def one(r: int) -> None:
        try:
            results[r] = group.write(r)
        except BaseException as exc:  # pragma: no cover - a failure shows in results
            results[r] = exc

    first = threading.Thread(target=one, args=(0,))
    first.start()
    assert entered.wait(10)
    others = [threading.Thread(target=one, args=(r,)) for r in range(1, 20)]
    for t in others:
        t.start()
    deadline = time.monotonic() + 10
    while len(group._queue) < 19 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for t in [first, *others]:
        t.join(10)
        assert not t.is_alive()
    assert isinstance(results.pop(13), errors.StorageError)
    assert results == {r: r * 10 for r in range(20) if r != 13}
    # The 19 queued rows went as one group first (in the order their threads queued,
    # which the scheduler decides).
    assert sorted(calls[1]) == list(range(1, 20))
    assert group.groups == 2
    assert group.rows == 20


def test_a_group_is_bounded():
    sizes: list[int] = []
    gate = threading.Event()

    def write_many(rows):
        sizes.append(len(rows))
        gate.wait(10)
        return list(rows)

    group = GroupCommit(write_many)
    n = MAX_GROUP + 40
    with ThreadPoolExecutor(64) as pool:
        futures = [pool.submit(group.write, i) for i in range(n)]
        deadline = time.monotonic() + 10
        while len(group._queue) < 63 and time.monotonic() < deadline:
            time.sleep(0.01)
        gate.set()
        assert [f.result(10) for f in futures] == list(range(n))
    assert max(sizes) <= MAX_GROUP
    assert sum(sizes) == n


def test_an_unexpected_failure_reaches_every_writer_of_the_group_and_no_other():
    state = {"n": 0}

    def write_many(rows):
        state["n"] += 1
        if state["n"] == 1:
            raise RuntimeError("bug")
        return list(rows)

    group = GroupCommit(write_many)
    with pytest.raises(RuntimeError):
        group.write(1)
    assert group.write(2) == 2  # the next group is led afresh
    assert not group._busy
    assert not group._queue


# ---- kill -9 during a burst of single creates ------------------------------------------


def test_kill_9_during_a_burst_loses_no_answered_create(tmp_path):
    data = tmp_path / "data"
    srv = Server(tmp_path, "--data-dir", str(data))
    acked: list[list[str]] = [[] for _ in range(32)]
    stop = threading.Event()

    def writer(w: int) -> None:
        conn = http.client.HTTPConnection(HOST, srv.port, timeout=10)
        try:
            for n in range(100_000):  # bounded; the kill ends it long before
                if stop.is_set():
                    return
                body = msgspec.json.encode(
                    {"expression_type": "expression", "expression_code": f"x * {w} + {n} + 7"}
                )
                conn.request(
                    "POST", "/api/v1/substrates", body, {"content-type": "application/json"}
                )
                resp = conn.getresponse()
                answer = msgspec.json.decode(resp.read())
                assert resp.status == 201, answer
                acked[w].append(answer["substrate_id"])
        except (OSError, http.client.HTTPException):
            return  # the server died mid-request: that create may or may not exist
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(32)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while sum(map(len, acked)) < 500 and time.monotonic() < deadline:
        time.sleep(0.02)
    srv.kill()
    stop.set()
    for t in threads:
        t.join(15)
        assert not t.is_alive()
    answered = {i for part in acked for i in part}
    assert len(answered) >= 500
    _gap_free(data / "bfx.db")
    again = Registry(data_dir=data)
    try:
        missing = [i for i in answered if i not in again]
        assert not missing, f"{len(missing)} answered creates lost, e.g. {missing[:3]}"
    finally:
        again.close()
