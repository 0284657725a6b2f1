"""The Rust arena from Python: typed errors, batches, threads, and a stateful
model test against a plain-Python registry."""

from __future__ import annotations

import itertools
import sys
import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bfx import errors
from bfx._core import REL_TYPES, Arena, relationship_id, substrate_id


def make(arena: Arena, code: str, meta: bytes = b"") -> int:
    return arena.insert("expression", code, code, meta)


def test_record_shape_and_typed_errors():
    a = Arena()
    sid = a.insert("lambda", "lambda  x: x", "lambda x: x", b'{"name":"id"}', 123)
    assert sid == substrate_id("lambda", "lambda x: x")
    assert a.get(sid) == (sid, "lambda", "lambda  x: x", "lambda x: x", b'{"name":"id"}', 123)
    assert a.get(hex(sid)) == a.get(sid)
    with pytest.raises(errors.DuplicateError) as dup:
        a.insert("lambda", "lambda x:x", "lambda x: x")
    assert dup.value.details == {"substrate_id": f"0x{sid:016X}"}
    with pytest.raises(errors.NotFoundError):
        a.get(1)
    with pytest.raises(errors.InvalidIdError):
        a.get(-1)
    with pytest.raises(errors.InvalidIdError):
        a.get(2**64)
    with pytest.raises(errors.ValidationError):
        a.insert("function", "x", "x")
    with pytest.raises(errors.InvalidRelationshipTypeError) as bad_type:
        a.link("FRIEND", sid, sid)
    assert "DEPENDENCY" in bad_type.value.details["allowed"]
    with pytest.raises(errors.NotFoundError) as missing:
        a.link("sibling", sid, 12345)
    assert missing.value.details == {"substrate_id": "0x0000000000003039"}
    with pytest.raises(errors.ValidationError):
        a.insert("expression", "x", "x", expected_id=7)
    assert a.find(1) is None


def test_relationship_listing_and_cascade():
    a = Arena()
    x, y, z = (make(a, c) for c in "xyz")
    xy = a.link("dependency", x, y)
    yz = a.link("Sibling", y, z, True, b'{"w":1}')
    assert xy == relationship_id(x, y, "DEPENDENCY")
    assert a.edge(yz)[1:6] == ("SIBLING", y, z, True, b'{"w":1}')
    assert {e[0] for e in a.outgoing(z)[1]} == {yz}
    assert {e[0] for e in a.incoming(y)[1]} == {xy, yz}
    assert a.outgoing(y, "dependency")[0] == 0
    with pytest.raises(errors.DuplicateError):
        a.link("DEPENDENCY", x, y)
    assert a.edges(source=x)[0] == 1
    assert a.edges(rel_type="SIBLING")[0] == 1
    assert a.remove(y) == 2
    assert a.relationship_count == 0
    with pytest.raises(errors.NotFoundError):
        a.edge(xy)
    with pytest.raises(errors.NotFoundError):
        a.outgoing(y)


def test_batches_report_each_item_and_atomic_writes_nothing():
    a = Arena()
    items = [
        ("expression", "a", "a", b"", None, None),
        ("expression", "a", "a", b"", None, None),
        ("nope", "b", "b", b"", None, None),
        ("expression", "c", "c", b"", 5, None),
    ]
    results, written = a.insert_many(items, atomic=True)
    assert not written
    assert len(a) == 0
    assert isinstance(results[0], int)
    assert isinstance(results[1], errors.DuplicateError)
    assert isinstance(results[2], errors.ValidationError)
    results, written = a.insert_many(items)
    assert written
    assert len(a) == 2
    assert a.get(results[3])[5] == 5
    got = a.get_many([results[0], 1, results[3]])
    assert got[1] is None
    assert got[0][0] == results[0]
    links, written = a.link_many(
        [("dependency", results[0], results[3], False, b"", None), ("bad", 1, 2, False, b"", None)]
    )
    assert isinstance(links[0], int)
    assert isinstance(links[1], errors.InvalidRelationshipTypeError)


def test_dump_and_load_round_trip_and_corruption():
    a = Arena()
    ids = [make(a, f"x + {i}", b'{"i":%d}' % i) for i in range(100)]
    for s, t in itertools.pairwise(ids):
        a.link("lineage", s, t)
    data = a.dump()
    b = Arena.from_dump(data)
    assert len(b) == 100
    assert b.relationship_count == 99
    assert all(b.get(i) == a.get(i) for i in ids)
    with pytest.raises(errors.StorageError):
        Arena.from_dump(data[:-1])
    with pytest.raises(errors.StorageError):
        Arena.from_dump(b"not a dump at all, but long enough to look")


def test_dump_file_streams_after_a_header_and_load_file_reads_from_an_offset(tmp_path):
    a = Arena()
    ids = [make(a, f"x * {i}", b'{"i":%d}' % i) for i in range(300)]
    for s, t in itertools.pairwise(ids):
        a.link("dependency", s, t, bidirectional=True)
    path = tmp_path / "snap"
    header = b"some header the caller owns\n"
    path.write_bytes(header)
    a.dump_file(path)
    assert path.read_bytes() == header + a.dump()
    b = Arena.load_file(path, len(header))
    assert len(b) == 300
    assert b.relationship_count == 299
    assert all(b.get(i) == a.get(i) for i in ids)
    # A wrong offset, a cut file, a missing one: clear errors, never a partial arena.
    with pytest.raises(errors.StorageError):
        Arena.load_file(path, len(header) + 1)
    with pytest.raises(errors.StorageError):
        Arena.load_file(path)
    cut = tmp_path / "cut"
    cut.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(errors.StorageError):
        Arena.load_file(cut, len(header))
    with pytest.raises(FileNotFoundError):
        Arena.load_file(tmp_path / "missing")
    with pytest.raises(FileNotFoundError):
        a.dump_file(tmp_path / "no-such-dir" / "snap")


def test_pages_are_complete_and_ordered():
    a = Arena()
    ids = sorted(make(a, f"y * {i}") for i in range(250))
    seen, cursor = [], None
    while True:
        page, cursor = a.page(cursor, 64)
        seen += [r[0] for r in page]
        if cursor is None:
            break
    assert seen == ids


def test_many_threads_at_once():
    """Writers, readers and deleters on one arena: no crash, no lost update,
    and the counts add up at the end."""
    a = Arena()
    base = [make(a, f"base{i}") for i in range(50)]
    failures: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            items = [("expression", f"t{t}_{i}", f"t{t}_{i}", b"", None, None) for i in range(2000)]
            for chunk in range(0, 2000, 100):
                results, _ = a.insert_many(items[chunk : chunk + 100])
                assert all(isinstance(r, int) for r in results)
            for i in range(500):
                a.link("adjacency", base[i % 50], substrate_id("expression", f"t{t}_{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def reader() -> None:
        try:
            for _ in range(300):
                for b in base[:10]:
                    a.get(b)
                    a.outgoing(b, limit=10)
                a.page(None, 50)
        except BaseException as exc:  # pragma: no cover
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not failures, failures
    assert len(a) == 50 + 4 * 2000
    assert a.relationship_count == 4 * 500
    assert sum(a.outgoing(b)[0] for b in base) == 4 * 500


CODES = [f"v{i}" for i in range(12)]


class ArenaMachine(RuleBasedStateMachine):
    """Random insert/delete/link/unlink/query sequences agree with a model."""

    def __init__(self) -> None:
        super().__init__()
        self.arena = Arena()
        self.nodes: dict[int, str] = {}
        self.edges: dict[int, tuple[int, int, str, bool]] = {}

    @staticmethod
    def sid(code: str) -> int:
        return substrate_id("expression", code)

    @rule(code=st.sampled_from(CODES), meta=st.binary(max_size=8))
    def insert(self, code, meta):
        sid = self.sid(code)
        if sid in self.nodes:
            with pytest.raises(errors.DuplicateError):
                self.arena.insert("expression", code, code, meta)
        else:
            assert self.arena.insert("expression", code, code, meta) == sid
            self.nodes[sid] = code

    @rule(code=st.sampled_from(CODES))
    def delete(self, code):
        sid = self.sid(code)
        if sid in self.nodes:
            gone = [r for r, (s, t, _, _) in self.edges.items() if sid in (s, t)]
            assert self.arena.remove(sid) == len(gone)
            del self.nodes[sid]
            for r in gone:
                del self.edges[r]
        else:
            with pytest.raises(errors.NotFoundError):
                self.arena.remove(sid)

    @rule(
        s=st.sampled_from(CODES),
        t=st.sampled_from(CODES),
        rel=st.sampled_from(REL_TYPES[:3]),
        bidi=st.booleans(),
    )
    def link(self, s, t, rel, bidi):
        source, target = self.sid(s), self.sid(t)
        rid = relationship_id(source, target, rel)
        if source not in self.nodes or target not in self.nodes:
            with pytest.raises(errors.NotFoundError):
                self.arena.link(rel, source, target, bidi)
        elif rid in self.edges:
            with pytest.raises(errors.DuplicateError):
                self.arena.link(rel, source, target, bidi)
        else:
            assert self.arena.link(rel, source, target, bidi) == rid
            self.edges[rid] = (source, target, rel, bidi)

    @precondition(lambda self: self.edges)
    @rule(data=st.data())
    def unlink(self, data):
        rid = data.draw(st.sampled_from(sorted(self.edges)))
        self.arena.unlink(rid)
        del self.edges[rid]

    @rule(code=st.sampled_from(CODES), rel=st.none() | st.sampled_from(REL_TYPES[:3]))
    def neighbours(self, code, rel):
        sid = self.sid(code)
        if sid not in self.nodes:
            with pytest.raises(errors.NotFoundError):
                self.arena.outgoing(sid)
            return
        total, page = self.arena.outgoing(sid, rel)
        want = {
            r
            for r, (s, t, kind, b) in self.edges.items()
            if (s == sid or (b and t == sid)) and rel in (None, kind)
        }
        assert total == len(page)
        assert {e[0] for e in page} == want
        total, page = self.arena.incoming(sid, rel)
        want = {
            r
            for r, (s, t, kind, b) in self.edges.items()
            if (t == sid or (b and s == sid)) and rel in (None, kind)
        }
        assert {e[0] for e in page} == want

    @invariant()
    def counts_agree(self):
        assert len(self.arena) == len(self.nodes)
        assert self.arena.relationship_count == len(self.edges)

    def teardown(self):
        for sid, code in self.nodes.items():
            assert self.arena.get(sid)[2] == code


TestArenaMachine = ArenaMachine.TestCase
TestArenaMachine.settings = settings(stateful_step_count=40)


def test_failing_writes_beside_readers_do_not_deadlock():
    """Errors are built as Python exceptions only after the lock is released,
    and nobody waits for the lock holding the GIL: failing writes (whose
    exception constructors are Python code that may switch threads) beside
    readers and detached scans must all finish."""
    a = Arena()
    ids = [make(a, f"w{i}") for i in range(200)]
    a.link("sibling", ids[0], ids[1])
    stop_after = 3000
    failures: list[BaseException] = []

    def failing_writer() -> None:
        try:
            for i in range(stop_after):
                with pytest.raises(errors.DuplicateError):
                    a.insert("expression", f"w{i % 200}", f"w{i % 200}")
                with pytest.raises(errors.DuplicateError):
                    a.link("sibling", ids[0], ids[1])
                with pytest.raises(errors.NotFoundError):
                    a.unlink(i + 1)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def reader() -> None:
        try:
            for i in range(stop_after):
                a.get(ids[i % 200])
                assert ids[i % 200] in a
                if i % 50 == 0:
                    a.page(None, 100)
                    a.scan(0, 100)
        except BaseException as exc:  # pragma: no cover
            failures.append(exc)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=failing_writer, daemon=True) for _ in range(3)]
        threads += [threading.Thread(target=reader, daemon=True) for _ in range(3)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
    finally:
        sys.setswitchinterval(old)
    assert not any(th.is_alive() for th in threads), "threads deadlocked"
    assert not failures, failures
