"""Workers that share the arena `bfx serve`'s main process loads (bfx.storage.inherit).

The adoption is tested in a child of a small script that loads and then forks, as
Granian does (a fork of the pytest process itself would carry its threads along);
the whole path through a real ``bfx serve --workers 2``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from bfx import Registry
from bfx.settings import Settings
from bfx.storage import inherit
from bfx_server import Server, connections_to_each_worker, send_json

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    from bfx import Registry
    from bfx.settings import Settings
    from bfx.storage import inherit

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    data_dir, mode = sys.argv[1], sys.argv[2]
    settings = Settings(storage=data_dir)
    loaded = inherit.load(settings)
    # Committed after the main process loaded: a worker must catch up with it.
    late = Registry(data_dir=data_dir)
    late.create("lambda", "lambda x: x + 1000")
    late.close()
    if mode == "pruned":
        # As if the change log no longer held the entry the arena ends at.
        inherit._held = inherit.Inherited(
            loaded.store_id, loaded.seq, (9, 9), loaded.arena, loaded.pid, 0.0
        )
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            store = settings.open_store()
            from bfx.engine import Engine
            engine = Engine(store)
            out = {
                "adopted": engine.arena is loaded.arena,
                "substrates": len(engine.arena),
                "relationships": engine.arena.relationship_count,
                "held_after": inherit.held() is not None,
            }
            engine.close()
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    # The main process itself never hands the arena to a store of its own.
    parent_take = inherit.take(loaded.store_id)
    print(json.dumps({"child": json.loads(data), "parent_take": parent_take is not None}))
    """
)


def _populate(data_dir: str, n: int = 30) -> list[str]:
    reg = Registry(data_dir=data_dir)
    try:
        ids = [reg.create("lambda", f"lambda x: x + {i}").identity for i in range(n)]
        reg.relate("DEPENDENCY", ids[0], ids[1])
        return [f"0x{i:016X}" for i in ids]
    finally:
        reg.close()


def _run(data_dir: str, mode: str) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, data_dir, mode],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def test_a_forked_worker_adopts_the_inherited_arena_and_catches_up_with_the_log(tmp_path):
    data_dir = str(tmp_path / "d")
    _populate(data_dir)
    out, _ = _run(data_dir, "ok")
    child = out["child"]
    assert child["adopted"], "the worker loaded its own arena"
    # 30 loaded in the main process, 1 committed after it loaded.
    assert (child["substrates"], child["relationships"]) == (31, 1)
    assert child["held_after"] is False
    assert out["parent_take"] is False


def test_an_inherited_arena_the_log_no_longer_vouches_for_is_loaded_in_full(tmp_path):
    data_dir = str(tmp_path / "d")
    _populate(data_dir)
    out, log = _run(data_dir, "pruned")
    child = out["child"]
    assert not child["adopted"]
    assert (child["substrates"], child["relationships"]) == (31, 1)
    assert "no longer holds where the inherited arena ends" in log


def test_the_loading_process_keeps_the_arena_to_itself(tmp_path):
    data_dir = str(tmp_path / "d")
    _populate(data_dir, 3)
    loaded = inherit.load(Settings(storage=data_dir))
    try:
        assert len(loaded.arena) == 3
        assert inherit.take(loaded.store_id) is None  # same pid: nobody's
        reg = Registry(data_dir=data_dir)  # opens and loads on its own
        try:
            assert reg._engine.arena is not loaded.arena
            assert len(reg._engine.arena) == 3
        finally:
            reg.close()
    finally:
        inherit._held = None


@pytest.mark.e2e
def test_writes_through_one_sharing_worker_are_read_through_the_other(tmp_path):
    data_dir = tmp_path / "d"
    ids = _populate(str(data_dir))
    srv = Server(tmp_path, "--data-dir", str(data_dir), "--workers", "2")
    try:
        assert "arena loaded in the main process (30 substrates, 1 relationships" in srv.output()
        first, second = connections_to_each_worker(srv.port)
        # Loaded before the fork: both answer from the shared pages.
        for conn in (first, second):
            status, rec = send_json(conn, "GET", f"/substrates/{ids[5]}")
            assert (status, rec["expression_code"]) == (200, "lambda x: x + 5")
        status, rec = send_json(
            first,
            "POST",
            "/substrates",
            {"expression_type": "lambda", "expression_code": "lambda y: y * 7"},
        )
        assert status == 201, rec
        new = rec["substrate_id"]
        status, got = send_json(second, "GET", f"/substrates/{new}")
        assert (status, got["expression_code"]) == (200, "lambda y: y * 7")
        status, rel = send_json(
            second,
            "POST",
            "/relationships",
            {"rel_type": "DEPENDENCY", "source_id": new, "target_id": ids[2]},
        )
        assert status == 201, rel
        status, out = send_json(first, "GET", f"/relationships/outgoing/{new}")
        assert status == 200, out
        assert [r["target_id"] for r in out["relationships"]] == [ids[2]]
        # Invocations are counted by the worker that answers (docs/http.md).
        path = f"/substrates/{ids[3]}/invoke"
        for _ in range(3):
            status, body = send_json(second, "POST", path, {"parameters": {"x": 1}})
            assert (status, body["result"]) == (200, 4)
        assert send_json(second, "GET", f"/substrates/{ids[3]}")[1]["invocations"] == 3
        assert send_json(first, "GET", f"/substrates/{ids[3]}")[1]["invocations"] == 0
        # A delete through one worker is seen by the other, loaded records included.
        assert send_json(second, "DELETE", f"/substrates/{ids[5]}")[0] == 204
        status, err = send_json(first, "GET", f"/substrates/{ids[5]}")
        assert (status, err["error"]) == (404, "not_found")
        first.close()
        second.close()
    finally:
        srv.stop()


@pytest.mark.e2e
def test_no_shared_arena_lets_each_worker_load_its_own(tmp_path):
    data_dir = tmp_path / "d"
    ids = _populate(str(data_dir), 4)
    srv = Server(tmp_path, "--data-dir", str(data_dir), "--workers", "2", "--no-shared-arena")
    try:
        assert "arena loaded in the main process" not in srv.output()
        first, second = connections_to_each_worker(srv.port)
        for conn in (first, second):
            assert send_json(conn, "GET", f"/substrates/{ids[1]}")[0] == 200
        first.close()
        second.close()
    finally:
        srv.stop()
