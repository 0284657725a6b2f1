"""Group commit (``bfx.group_commit``): concurrent single writes share a transaction,
each still answered with its own answer after its commit; the change log stays
gap-free; a kill -9 during a burst loses no answered create. Both doors: threads
(``GroupCommit``) and coroutines on an event loop (``LoopGroupCommit``), which writes
on the loop itself when the store need not wait and on its thread otherwise."""

from __future__ import annotations

import asyncio
import http.client
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec
import pytest

from bfx import Registry, errors
from bfx._core import format_id
from bfx.group_commit import MAX_GROUP, GroupCommit, LoopGroupCommit
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


# ---- the event loop's door ------------------------------------------------------------


def _door(write_many, write_now=None):
    executor = ThreadPoolExecutor(1, thread_name_prefix="door-writer")
    return LoopGroupCommit(write_many, executor, write_now=write_now), executor


def test_the_creates_of_one_loop_pass_are_one_group_each_answered_its_own():
    calls: list[list[int]] = []

    def write_many(rows):
        calls.append(list(rows))
        return [r * 10 for r in rows]

    door, executor = _door(write_many)

    async def scenario():
        return await asyncio.gather(*[door.submit(r) for r in range(30)])

    try:
        assert asyncio.run(scenario()) == [r * 10 for r in range(30)]
    finally:
        executor.shutdown()
    assert calls == [list(range(30))]
    assert (door.groups, door.rows, door.on_loop) == (1, 30, 0)
    assert door._loops == {}  # nothing left behind once idle


def test_rows_queued_while_a_group_is_out_go_together_next_and_groups_are_bounded():
    calls: list[list[int]] = []
    gate = threading.Event()

    def write_many(rows):
        calls.append(list(rows))
        if len(calls) == 1:
            assert gate.wait(10)  # hold the first group while the others queue
        return list(rows)

    door, executor = _door(write_many)
    n = MAX_GROUP + 40

    async def scenario():
        first = door.submit(0)
        for _ in range(200):  # bounded: the first group is out within milliseconds
            if calls:
                break
            await asyncio.sleep(0.005)
        rest = [door.submit(r) for r in range(1, n)]
        gate.set()
        return [await first, *await asyncio.gather(*rest)]

    try:
        assert asyncio.run(scenario()) == list(range(n))
    finally:
        executor.shutdown()
    assert calls[0] == [0]
    assert calls[1] == list(range(1, MAX_GROUP + 1))
    assert calls[2] == list(range(MAX_GROUP + 1, n))


def test_a_loop_group_that_fails_as_a_whole_is_retried_row_by_row():
    def write_many(rows):
        if 13 in rows:
            raise errors.StorageError("constraint failed", {})
        return [r * 10 for r in rows]

    door, executor = _door(write_many)

    async def scenario():
        return await asyncio.gather(*[door.submit(r) for r in range(20)], return_exceptions=True)

    try:
        answers = asyncio.run(scenario())
    finally:
        executor.shutdown()
    assert isinstance(answers.pop(13), errors.StorageError)
    assert answers == [r * 10 for r in range(20) if r != 13]


def test_groups_are_written_on_the_loop_unless_the_store_would_wait():
    where: list[tuple[str, list[int]]] = []
    busy = {"now": False}

    def write_many(rows):
        where.append((threading.current_thread().name, list(rows)))
        return list(rows)

    def write_now(rows):
        if busy["now"]:
            return None  # it would have to wait: nothing written
        return write_many(rows)

    door, executor = _door(write_many, write_now)

    async def scenario():
        first = await asyncio.gather(*[door.submit(r) for r in range(5)])
        busy["now"] = True
        second = await asyncio.gather(*[door.submit(r) for r in range(5, 8)])
        return first + second

    try:
        assert asyncio.run(scenario()) == list(range(8))
    finally:
        executor.shutdown()
    assert where == [
        (threading.main_thread().name, [0, 1, 2, 3, 4]),
        ("door-writer_0", [5, 6, 7]),
    ]
    assert (door.groups, door.on_loop) == (2, 1)


def test_a_bug_on_the_loop_fails_its_group_and_no_writer_hangs():
    state = {"calls": 0}

    def write_now(rows):
        state["calls"] += 1
        if state["calls"] == 1:
            raise RuntimeError("bug")
        return list(rows)

    door, executor = _door(lambda rows: list(rows), write_now)

    async def scenario():
        failed = await asyncio.gather(door.submit(1), door.submit(2), return_exceptions=True)
        return failed, await door.submit(3)

    try:
        failed, after = asyncio.run(asyncio.wait_for(scenario(), 10))
    finally:
        executor.shutdown()
    assert all(isinstance(f, RuntimeError) for f in failed)
    assert after == 3


def test_after_the_write_thread_is_shut_writers_get_a_storage_error_not_a_hang():
    """An engine closing while creates are queued: each gets a 503-class error."""
    door, executor = _door(lambda rows: list(rows))
    executor.shutdown()

    async def scenario():
        return await asyncio.wait_for(
            asyncio.gather(*[door.submit(r) for r in range(3)], return_exceptions=True), 10
        )

    answers = asyncio.run(scenario())
    assert all(isinstance(a, errors.StorageError) for a in answers)
    assert door._loops == {}


def test_a_writer_that_stops_awaiting_does_not_take_its_row_back_or_stall_the_group():
    written: list[int] = []
    gate = threading.Event()

    def write_many(rows):
        assert gate.wait(10)
        written.extend(rows)
        return list(rows)

    door, executor = _door(write_many)

    async def scenario():
        gone = asyncio.ensure_future(door.submit(1))
        stays = asyncio.ensure_future(door.submit(2))
        await asyncio.sleep(0.02)
        gone.cancel()  # its client left
        gate.set()
        return await stays

    try:
        assert asyncio.run(scenario()) == 2
    finally:
        executor.shutdown()
    assert written == [1, 2]


def test_on_sqlite_the_loop_writes_itself_and_hands_over_while_another_process_writes(tmp_path):
    """With the database free, a group is written on the loop; while another process
    holds SQLite's write lock the group goes to the write thread, which waits for it,
    while the loop goes on serving; the rows are then all written, each with its own
    answer (a duplicate's is a DuplicateError), and the log is gap-free."""
    data = tmp_path / "data"
    reg = Registry(data_dir=data)
    other = sqlite3.connect(data / "bfx.db", isolation_level=None)

    async def create(n):
        row = await reg.substrates.create_async("expression", _code(n), None)
        return row.identity

    async def scenario():
        free = await asyncio.gather(*[create(n) for n in range(10)])
        door = reg._engine._loop_writes[0]
        assert (door.groups, door.on_loop) == (1, 1)
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        beat = asyncio.ensure_future(ticker())
        held = asyncio.gather(*[create(n) for n in range(10, 20)])
        await asyncio.sleep(0.3)
        assert not held.done()  # waiting for the lock, on the write thread
        assert ticks >= 20  # ... and the loop was not held up meanwhile
        other.execute("ROLLBACK")
        later = await asyncio.wait_for(held, 30)
        beat.cancel()
        assert (door.groups, door.on_loop) == (2, 1)  # that group went to the thread
        with pytest.raises(errors.DuplicateError) as dup:
            await create(0)
        assert dup.value.details["substrate_id"] == format_id(free[0])
        return free + later

    try:
        ids = asyncio.run(scenario())
        assert len(set(ids)) == 20
        assert all(i in reg for i in ids)
    finally:
        other.close()
        reg.close()
    assert _gap_free(data / "bfx.db") == 20


def test_with_a_sync_per_commit_every_group_goes_to_the_thread(tmp_path):
    """``--sqlite-sync full`` syncs the log at every commit: never on the loop."""
    from bfx.storage.sqlite import SqliteStore

    data = tmp_path / "data"
    reg = Registry(storage=SqliteStore(data, synchronous="full"))
    try:

        async def scenario():
            rows = await asyncio.gather(
                *[reg.substrates.create_async("expression", _code(n), None) for n in range(12)]
            )
            return [r.identity for r in rows], reg._engine._loop_writes[0]

        ids, door = asyncio.run(scenario())
        assert door.groups >= 1
        assert door.on_loop == 0
        assert len(set(ids)) == 12
        assert all(i in reg for i in ids)
    finally:
        reg.close()
    assert _gap_free(data / "bfx.db") == 12


def test_on_sqlite_a_write_behind_another_process_catches_up_on_the_thread(tmp_path):
    """Another process wrote since this one's last look: the loop does not catch up
    (that may take long); the thread does, then writes; both processes' rows are
    there, in one gap-free log."""
    data = tmp_path / "data"
    reg = Registry(data_dir=data)
    other = Registry(data_dir=data)
    try:

        async def scenario():
            await reg.substrates.create_async("expression", _code(1), None)
            other.create("expression", _code(2))  # the other process writes
            row = await reg.substrates.create_async("expression", _code(3), None)
            door = reg._engine._loop_writes[0]
            return row, door

        row, door = asyncio.run(scenario())
        assert (door.groups, door.on_loop) == (2, 1)
        assert len(reg) == 3
        assert row.identity in reg
    finally:
        other.close()
        reg.close()
    assert _gap_free(data / "bfx.db") == 3


def test_on_sqlite_a_prune_due_after_a_loop_write_runs_on_the_thread(tmp_path):
    data = tmp_path / "data"
    reg = Registry(data_dir=data)
    store = reg._engine.store
    store.retention = 4  # prune after every 2 entries
    try:

        async def scenario():
            for n in range(12):
                await reg.substrates.create_async("expression", _code(n), None)

        asyncio.run(scenario())
        reg._engine._writer.submit(lambda: None).result(10)  # the thread's queue drained
        with sqlite3.connect(data / "bfx.db") as conn:
            oldest = conn.execute("SELECT min(seq) FROM changes").fetchone()[0]
        assert oldest > 1  # pruned
        assert not store.prune_due
        assert len(reg) == 12
    finally:
        reg.close()


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


def test_other_writes_wait_for_another_process_on_the_write_thread_not_the_loop(tmp_path):
    """A delete, an alias and an update (``runs="store"``) over SQLite while another
    process holds the write lock: each waits on the engine's write thread, the loop
    answers GETs meanwhile, and each is done once the lock is let go."""
    from asgi_driver import finish, started

    driver = started(storage=str(tmp_path / "data"))
    api = "/api/v1"
    try:
        made = [
            driver.post(
                f"{api}/substrates", {"expression_type": "expression", "expression_code": c}
            ).json()["substrate_id"]
            for c in ("x + 1", "x + 2")
        ]
        other = sqlite3.connect(tmp_path / "data" / "bfx.db", isolation_level=None)

        async def scenario():
            other.execute("BEGIN IMMEDIATE")  # another process is writing
            writes = [
                asyncio.ensure_future(driver.arequest("DELETE", f"{api}/substrates/{made[0]}")),
                asyncio.ensure_future(
                    driver.arequest("PUT", f"{api}/aliases/two", json={"substrate_id": made[1]})
                ),
                asyncio.ensure_future(
                    driver.arequest(
                        "PATCH", f"{api}/substrates/{made[1]}", json={"metadata": {"n": 2}}
                    )
                ),
            ]
            started = time.monotonic()
            reads = 0
            while time.monotonic() - started < 0.3:  # the loop keeps answering
                r = await driver.arequest("GET", f"{api}/substrates/{made[1]}")
                assert r.status == 200
                reads += 1
            assert not any(w.done() for w in writes)  # still waiting for the lock
            other.execute("ROLLBACK")
            return reads, await asyncio.wait_for(asyncio.gather(*writes), 30)

        reads, (deleted, aliased, updated) = driver.loop.run_until_complete(scenario())
        other.close()
        assert reads >= 20
        assert (deleted.status, aliased.status, updated.status) == (204, 200, 200), (
            deleted,
            aliased,
            updated,
        )
        assert driver.get(f"{api}/substrates/{made[0]}").status == 404
        assert driver.get(f"{api}/aliases/two").json()["substrate_id"] == made[1]
        assert driver.get(f"{api}/substrates/{made[1]}").json()["metadata"] == {"n": 2}
    finally:
        finish(driver)
