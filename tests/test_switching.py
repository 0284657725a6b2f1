"""The GIL switch interval follows what runs beside a worker's loop (bfx.switching):
short while a thread of bfx's own is at work, CPython's default otherwise."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from concurrent.futures import Future

import pytest

from asgi_driver import finish, started
from bfx import Registry, switching
from bfx.asgi import create_app
from bfx.asgi.middleware.dispatch import HeavyPool
from bfx.domain.substrates import Substrates
from bfx.services.relationships import LocalRelationships


@pytest.fixture
def installed():
    before = sys.getswitchinterval()
    assert switching.at_work() == 0
    switching.install()
    yield
    switching.uninstall()
    sys.setswitchinterval(before)


def test_idle_then_busy_while_any_thread_works_then_idle_again(installed):
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
    switching.enter()
    assert sys.getswitchinterval() == pytest.approx(switching.BUSY)
    switching.enter()
    switching.leave()
    assert sys.getswitchinterval() == pytest.approx(switching.BUSY)  # one still works
    switching.leave()
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
    assert switching.at_work() == 0


def test_a_future_counts_as_work_until_it_is_done(installed):
    fut: Future[int] = Future()
    assert switching.while_running(lambda: fut) is fut
    assert sys.getswitchinterval() == pytest.approx(switching.BUSY)
    fut.set_exception(RuntimeError("failed work ends too"))
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
    assert switching.at_work() == 0


def test_work_that_cannot_be_handed_over_is_not_counted(installed):
    def refused() -> Future[int]:
        raise RuntimeError("cannot schedule new futures after shutdown")

    with pytest.raises(RuntimeError):
        switching.while_running(refused)
    assert switching.at_work() == 0
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)


def test_a_library_process_keeps_its_own_interval():
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.002)
        switching.enter()
        assert sys.getswitchinterval() == pytest.approx(0.002)
        switching.leave()
        assert sys.getswitchinterval() == pytest.approx(0.002)
    finally:
        sys.setswitchinterval(before)


def test_a_shut_pool_is_no_longer_at_work_and_late_releases_are_ignored(installed):
    pool = HeavyPool(2, 1)
    for _ in range(3):
        pool.admit()
    assert switching.at_work() == 3
    pool.shutdown()
    assert (pool.admitted, switching.at_work()) == (0, 0)
    pool.release()  # a stream sent after the shutdown gives its slot back
    assert (pool.admitted, switching.at_work()) == (0, 0)
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)


def test_an_unmatched_leave_never_goes_below_idle(installed):
    switching.leave()
    assert switching.at_work() == 0
    switching.enter()
    assert sys.getswitchinterval() == pytest.approx(switching.BUSY)
    switching.leave()
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)


def test_the_heavy_pool_is_busy_from_admission_to_release(installed):
    pool = HeavyPool(1, 1)
    try:
        pool.admit()
        pool.admit()
        assert sys.getswitchinterval() == pytest.approx(switching.BUSY)
        pool.release()
        assert sys.getswitchinterval() == pytest.approx(switching.BUSY)
        pool.release()
        assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
    finally:
        pool.shutdown()


def test_a_worker_runs_heavy_and_light_operations_busy_and_the_rest_idle(monkeypatch):
    """Through a worker's app: the interval each handler sees where it runs."""
    seen: dict[str, float] = {}
    create_many = Substrates.create_many
    stats = LocalRelationships.stats

    def heavy(self, *args, **kw):
        seen["heavy"] = sys.getswitchinterval()
        return create_many(self, *args, **kw)

    def light(self):
        seen["light"] = sys.getswitchinterval()
        return stats(self)

    monkeypatch.setattr(Substrates, "create_many", heavy)
    monkeypatch.setattr(LocalRelationships, "stats", light)
    before = sys.getswitchinterval()
    create_app()  # what Granian's factory call does in a worker: the policy on
    driver = started()
    try:
        assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
        one = {"expression_type": "expression", "expression_code": "x + 1"}
        assert driver.post("/api/v1/substrates/batch", {"substrates": [one]}).status == 200
        assert driver.get("/api/v1/relationships/stats").status == 200
        assert seen == {"heavy": pytest.approx(switching.BUSY), "light": switching.BUSY}
        assert driver.get("/api/v1/health").status == 200
        assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
        assert switching.at_work() == 0
    finally:
        finish(driver)
        switching.uninstall()
        sys.setswitchinterval(before)


def test_a_group_waiting_on_the_write_thread_is_work_until_it_commits(tmp_path, installed):
    """While another process holds SQLite's write lock a group of creates goes to the
    engine's write thread and waits there: busy until it has committed, idle after."""
    data = tmp_path / "data"
    reg = Registry(data_dir=data)
    other = sqlite3.connect(data / "bfx.db", isolation_level=None)

    async def scenario() -> list[int]:
        await reg.substrates.create_async("expression", "x + 1", None)  # on the loop
        assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
        other.execute("BEGIN IMMEDIATE")  # another process is writing
        held = asyncio.gather(
            *[reg.substrates.create_async("expression", f"x + {n}", None) for n in (2, 3)]
        )
        await asyncio.sleep(0.1)
        assert not held.done()
        assert switching.at_work() == 1
        assert sys.getswitchinterval() == pytest.approx(switching.BUSY)
        other.execute("ROLLBACK")
        rows = await asyncio.wait_for(held, 30)
        return [row.identity for row in rows]

    try:
        ids = asyncio.run(scenario())
        assert all(i in reg for i in ids)
    finally:
        other.close()
        reg.close()
    assert switching.at_work() == 0
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)


def test_a_catch_up_in_a_thread_is_work(tmp_path, installed):
    reg = Registry(data_dir=tmp_path / "data")
    seen: list[float] = []
    refresh = reg.store.refresh

    def spy() -> object:
        seen.append(sys.getswitchinterval())
        return refresh()

    reg.store.refresh = spy  # type: ignore[method-assign]
    try:
        asyncio.run(reg._engine.catch_up())
    finally:
        reg.close()
    assert seen == [pytest.approx(switching.BUSY)]
    assert sys.getswitchinterval() == pytest.approx(switching.IDLE)
