"""Invocation counts live beside the arena (``bfx.invocations``), not in its records:
the counter under threads, top-k, a deleted substrate's count dropped, and a
version-1 arena snapshot (records with counts) refused in favour of a full load."""

from __future__ import annotations

import logging
import struct

import pytest
import xxhash

from bfx import Registry
from bfx._core import Arena
from bfx.invocations import InvocationCounts
from bfx.storage import snapshot
from racing import race


def test_threads_hammering_add_lose_no_count():
    counts = InvocationCounts()
    ids = [1, 2, 3, 2**64 - 1]
    per_thread, threads = 5_000, 8

    def hammer(seed: int) -> None:
        for i in range(per_thread):
            counts.add(ids[(seed + i) % len(ids)], 1 + i % 2)

    race(hammer, threads)
    total = threads * sum(1 + i % 2 for i in range(per_thread))
    assert sum(counts.get(i) for i in ids) == total
    assert len(counts) == len(ids)


def test_top_is_most_first_with_ties_by_smaller_id_and_discard_drops():
    counts = InvocationCounts()
    assert counts.top(5) == []
    for identity, n in [(30, 2), (10, 5), (20, 2), (40, 1), (50, 7)]:
        counts.add(identity, n)
    assert counts.add(40) == 2
    assert counts.top(3) == [(50, 7), (10, 5), (20, 2)]
    assert counts.top(10) == [(50, 7), (10, 5), (20, 2), (30, 2), (40, 2)]
    assert counts.top(0) == []
    counts.discard(50)
    counts.discard(12345)  # never counted: nothing happens
    assert counts.get(50) == 0
    assert counts.top(1) == [(10, 5)]
    counts.discard_many([10, 20])
    assert counts.top(5) == [(30, 2), (40, 2)]


def test_registry_counts_invokes_and_drops_a_deleted_substrates_count():
    reg = Registry()
    a = reg.create("lambda", "lambda x: x + 1")
    b = reg.create("lambda", "lambda x: x * 2")
    for _ in range(3):
        reg.invoke(a.identity, {"x": 1})
    reg.invoke_many([(b.identity, {"x": 1}), (b.identity, {"x": 2}), (b.identity, {})])
    assert reg.get(a.identity).invocations == 3
    assert reg.get(b.identity).invocations == 2  # the failed call does not count
    assert [s.invocations for s in reg.list()[0]] == [
        reg.invocations.get(s.identity) for s in reg.list()[0]
    ]
    assert reg.top_invoked(5) == [(a.identity, 3), (b.identity, 2)]
    # No arena record is written by an invoke: the record carries no count.
    assert len(reg.arena.get(a.identity)) == 6

    reg.delete(a.identity)
    assert reg.invocations.get(a.identity) == 0
    assert reg.top_invoked(5) == [(b.identity, 2)]
    again = reg.create("lambda", "lambda x: x + 1")
    assert again.identity == a.identity
    assert reg.get(again.identity).invocations == 0

    # Removed from the arena behind the registry's back (as a refresh applies
    # another process's delete): the count no longer shows in the top list.
    reg.arena.remove(b.identity)
    assert reg.top_invoked(5) == []
    assert reg.invocations.get(b.identity) == 0


def _v1_dump(records: list[tuple]) -> bytes:
    """A version-1 arena dump (substrates only): each substrate with a u32
    invocation count after created_at, as the format was before version 2."""
    body = bytearray(b"BFXARENA" + struct.pack("<IQQ", 1, len(records), 0))
    expr = {"lambda": 0, "constant": 1, "expression": 2}
    for identity, expression_type, code, canonical, metadata, created in records:
        parts = [code.encode(), canonical.encode(), metadata]
        body += struct.pack("<QqIB", identity, created, 9, expr[expression_type])
        body += b"".join(struct.pack("<I", len(p)) for p in parts) + b"".join(parts)
    return bytes(body) + struct.pack("<Q", xxhash.xxh3_64_intdigest(bytes(body)))


def test_a_version_1_snapshot_is_refused_and_the_store_loads_in_full(tmp_path, caplog):
    data_dir = tmp_path / "d"
    with Registry(data_dir=data_dir) as reg:
        made = [reg.create("constant", str(i)) for i in range(20)]
        reg.relate("LINEAGE", made[0].identity, made[1].identity)
        first = reg.arena.get(made[0].identity)
    # The snapshot as an older bfx would have left it: its header, then a
    # version-1 dump. It holds only the first record, so reading it instead of
    # loading in full would lose the other 19 and the relationship.
    _, offset = snapshot.read_header(data_dir)
    path = data_dir / snapshot.SNAPSHOT_NAME
    old = _v1_dump([first])
    with pytest.raises(Exception, match="unsupported dump version 1"):
        Arena.from_dump(old)
    path.write_bytes(path.read_bytes()[:offset] + old)

    with caplog.at_level(logging.WARNING, logger="bfx.storage"):
        reg = Registry(data_dir=data_dir)
    with reg:
        assert sorted(s.identity for s in reg.iter_substrates()) == sorted(s.identity for s in made)
        assert reg.stats()["total_relationships"] == 1
        assert reg.get(made[0].identity).invocations == 0
    assert "unsupported dump version 1" in caplog.text
    # The full load wrote a current snapshot, which the next start reads.
    _, offset = snapshot.read_header(data_dir)
    (version,) = struct.unpack_from("<I", path.read_bytes(), offset + 8)
    assert version == 3
    assert snapshot.read(data_dir, offset) is not None
