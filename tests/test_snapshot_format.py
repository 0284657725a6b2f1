"""The arena snapshot (dump version 3, the arena's image): a start reads it, a start
from the previous format (version 2) still does, and a damaged one (truncated,
flipped bytes, a wrong version, a checksum that does not match) is refused with a
logged reason and the store loads in full, never crashing; the full load then writes
a current snapshot."""

from __future__ import annotations

import itertools
import logging
import struct

import pytest
import xxhash

from bfx import Registry, errors
from bfx._core import REL_TYPES
from bfx.storage import snapshot
from bfx_server import Server

_EXPR = {"lambda": 0, "constant": 1, "expression": 2}


def _v2_dump(substrates: list[tuple], relationships: list[tuple]) -> bytes:
    """A version-2 dump, as servers before version 3 wrote it: a record per substrate
    and per relationship."""
    body = bytearray(b"BFXARENA" + struct.pack("<IQQ", 2, len(substrates), len(relationships)))
    for identity, expression_type, code, canonical, metadata, created, *_ in substrates:
        parts = [code.encode(), canonical.encode(), metadata]
        body += struct.pack("<QqB", identity, created, _EXPR[expression_type])
        body += b"".join(struct.pack("<I", len(p)) for p in parts) + b"".join(parts)
    for _rid, rel_type, source, target, bidirectional, constraints, created in relationships:
        body += struct.pack(
            "<QQBBqI",
            source,
            target,
            REL_TYPES.index(rel_type),
            bidirectional,
            created,
            len(constraints),
        )
        body += constraints
    return bytes(body) + struct.pack("<Q", xxhash.xxh3_64_intdigest(bytes(body)))


def _stored(data_dir) -> tuple[list, int]:
    with Registry(data_dir=data_dir) as reg:
        made = [reg.create("constant", str(i)) for i in range(20)]
        for a, b in itertools.pairwise(made):
            reg.relate("LINEAGE", a.identity, b.identity)
    return sorted(s.identity for s in made), 19


def _contents(reg: Registry) -> tuple[list[int], int]:
    return sorted(s.identity for s in reg.iter_substrates()), reg.stats()["total_relationships"]


def _dump_part(data_dir) -> tuple[bytes, bytes]:
    """The snapshot file split into (its header, the arena dump)."""
    _, offset = snapshot.read_header(data_dir)
    raw = (data_dir / snapshot.SNAPSHOT_NAME).read_bytes()
    return raw[:offset], raw[offset:]


def test_a_start_reads_the_version_3_snapshot_it_wrote(tmp_path, caplog):
    data_dir = tmp_path / "d"
    ids, rels = _stored(data_dir)
    _, dump = _dump_part(data_dir)
    assert dump[:8] == b"BFXARENA"
    assert struct.unpack_from("<I", dump, 8)[0] == 3
    with caplog.at_level(logging.INFO, logger="bfx.storage"), Registry(data_dir=data_dir) as reg:
        assert _contents(reg) == (ids, rels)
    assert "loading in full" not in caplog.text
    assert "ignoring the arena snapshot" not in caplog.text


def test_a_version_2_snapshot_still_loads(tmp_path, caplog):
    data_dir = tmp_path / "d"
    _stored(data_dir)
    with Registry(data_dir=data_dir) as reg:
        subs = [reg.arena.get(s.identity) for s in reg.iter_substrates()]
        edges = list(reg.arena.scan_edges(0, 1000)[0])
    head, _ = _dump_part(data_dir)
    # One substrate (and its edges) left out: what a start then holds tells whether it
    # read the snapshot (19 substrates) or loaded in full (20).
    left_out = subs[0][0]
    kept = [e for e in edges if left_out not in (e[2], e[3])]
    (data_dir / snapshot.SNAPSHOT_NAME).write_bytes(head + _v2_dump(subs[1:], kept))
    with caplog.at_level(logging.INFO, logger="bfx.storage"), Registry(data_dir=data_dir) as reg:
        assert _contents(reg) == (sorted(s[0] for s in subs[1:]), len(kept))
    assert "ignoring the arena snapshot" not in caplog.text


def _truncated(dump: bytes) -> bytes:
    return dump[: len(dump) // 2]


def _flipped(dump: bytes) -> bytes:
    at = len(dump) * 2 // 3
    return dump[:at] + bytes([dump[at] ^ 0x40]) + dump[at + 1 :]


def _version(dump: bytes) -> bytes:
    body = dump[:8] + struct.pack("<I", 9) + dump[12:-8]
    return body + struct.pack("<Q", xxhash.xxh3_64_intdigest(body))


def _checksum(dump: bytes) -> bytes:
    return dump[:-8] + struct.pack("<Q", (struct.unpack("<Q", dump[-8:])[0] + 1) % 2**64)


def _not_a_dump(dump: bytes) -> bytes:
    return b"\x00" * len(dump)


def _empty(dump: bytes) -> bytes:
    return b""


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncated, "truncated"),
        # Streamed, the records are checked as they arrive: a flip inside them may be
        # refused by those checks before the checksum at the end is compared.
        (_flipped, "corrupt arena dump"),
        (_version, "unsupported dump version 9"),
        (_checksum, "checksum mismatch"),
        (_not_a_dump, "not an arena dump"),
        (_empty, "not an arena dump"),
    ],
)
def test_a_damaged_snapshot_falls_back_to_a_full_load(tmp_path, caplog, damage, reason):
    data_dir = tmp_path / "d"
    ids, rels = _stored(data_dir)
    head, dump = _dump_part(data_dir)
    (data_dir / snapshot.SNAPSHOT_NAME).write_bytes(head + damage(dump))
    with caplog.at_level(logging.WARNING, logger="bfx.storage"), Registry(data_dir=data_dir) as reg:
        assert _contents(reg) == (ids, rels)
    assert "ignoring the arena snapshot" in caplog.text
    assert reason in caplog.text
    # The full load wrote a good snapshot again.
    _, fresh = _dump_part(data_dir)
    assert struct.unpack_from("<I", fresh, 8)[0] == 3
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bfx.storage"), Registry(data_dir=data_dir) as reg:
        assert _contents(reg) == (ids, rels)
    assert "ignoring the arena snapshot" not in caplog.text


def test_a_damaged_snapshot_header_falls_back_to_a_full_load(tmp_path):
    data_dir = tmp_path / "d"
    ids, rels = _stored(data_dir)
    path = data_dir / snapshot.SNAPSHOT_NAME
    raw = path.read_bytes()
    path.write_bytes(raw[:12] + b"{not json" + raw[21:])
    with Registry(data_dir=data_dir) as reg:
        assert _contents(reg) == (ids, rels)


@pytest.mark.e2e
def test_bfx_serve_with_a_damaged_snapshot_loads_in_full_and_serves(tmp_path):
    data_dir = tmp_path / "d"
    ids, _ = _stored(data_dir)
    head, dump = _dump_part(data_dir)
    (data_dir / snapshot.SNAPSHOT_NAME).write_bytes(head + _flipped(dump))
    srv = Server(tmp_path, "--data-dir", str(data_dir), "--workers", "2")
    try:
        status, body = srv.json("GET", "/api/v1/substrates?limit=100")
        assert status == 200, body
        assert sorted(int(s["substrate_id"], 16) for s in body["substrates"]) == ids
        assert srv.call("GET", "/api/v1/health/ready")[0] == 200
    finally:
        srv.stop()


def test_a_snapshot_of_many_records_round_trips_through_the_file(tmp_path):
    """Enough records that the core indexes their ids group by group and reads the
    relationships on a thread of their own (``Arena.load_file``): every id is found
    again, every relationship too, and the loaded arena dumps to the same bytes."""
    from bfx._core import Arena
    from bfx.capacity import Shape

    shape = Shape(80_000)
    arena = Arena()
    ids, wrote = arena.insert_many(shape.substrate_rows(0, shape.substrates))
    assert wrote
    assert all(isinstance(i, int) for i in ids)
    items = shape.relationship_items(0, shape.substrates, shape.substrates)
    _, wrote = arena.link_many((REL_TYPES[q], ids[i], ids[t], b, b"", None) for i, t, q, b in items)
    assert wrote
    for identity in ids[::7]:
        arena.remove(identity)  # free slots, and lists that lost edges, come back too
    path = tmp_path / "arena.snapshot"
    path.write_bytes(b"a header\n")
    arena.dump_file(path)
    loaded = Arena.load_file(path, len(b"a header\n"))
    edges = _all_edges(arena)
    assert len(edges) == arena.relationship_count > 150_000
    assert (len(loaded), loaded.relationship_count) == (len(arena), arena.relationship_count)
    assert sorted(loaded.ids()) == sorted(arena.ids())
    assert all(loaded.edge(edge[0]) == edge for edge in edges)
    assert loaded.dump() == arena.dump()
    # A flipped byte among the relationship records (read on the other thread) is the
    # checksum's to catch.
    raw = bytearray(path.read_bytes())
    raw[-100] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(errors.StorageError, match="checksum mismatch"):
        Arena.load_file(path, len(b"a header\n"))


def _all_edges(arena) -> list:
    edges, position = [], 0
    for _ in range(10_000):  # bounded: 1,000 a page
        page, position = arena.scan_edges(position, 1000)
        edges += page
        if position is None:
            return edges
    raise AssertionError("scan_edges did not end")
