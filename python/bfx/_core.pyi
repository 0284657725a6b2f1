"""Type stubs for the native module ``bfx._core`` (rust/src/py/)."""

import os
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

from bfx.errors import BfxError

__version__: Final[str]
REL_TYPES: Final[tuple[str, ...]]
EXPRESSION_TYPES: Final[tuple[str, ...]]

IdLike = int | str
# (id, expression_type, code, canonical, metadata_json, created_at_us); invocation
# counts are not in the arena (bfx.invocations)
SubstrateRecord = tuple[int, str, str, str, bytes, int]
# (id, rel_type, source, target, bidirectional, constraints_json, created_at_us)
EdgeRecord = tuple[int, str, int, int, bool, bytes, int]

def substrate_id(expression_type: str, canonical: str) -> int: ...
def relationship_id(source: IdLike, target: IdLike, rel_type: str) -> int: ...
def format_id(id: IdLike) -> str: ...
def parse_id(id: IdLike) -> int: ...
def normalize_rel_type(name: str) -> str: ...
def now_us() -> int: ...
def utc_datetime(us: int) -> datetime: ...
def json_nesting_exceeds(text: bytes, limit: int) -> bool: ...
def add_count(counts: dict[int, int], key: int, n: int = 1) -> int: ...
def call_numeric(
    function: Any,
    params: Any,
    bits: int,
    max_items: int,
    allowed: frozenset[str] | None,
    miss: Any,
) -> Any: ...
def call_numeric_many(
    function: Any,
    by_dict: bool,
    batch: list[Any],
    start: int,
    out: list[Any],
    bits: int,
    max_items: int,
    allowed: frozenset[str] | None,
) -> int: ...

class Arena:
    def __init__(self, substrates: int = 0, relationships: int = 0) -> None: ...
    @staticmethod
    def from_dump(data: bytes) -> Arena: ...
    def dump(self) -> bytes: ...
    @staticmethod
    def load_file(path: str | os.PathLike[str], offset: int = 0) -> Arena: ...
    def dump_file(self, path: str | os.PathLike[str]) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, id: IdLike) -> bool: ...
    @property
    def relationship_count(self) -> int: ...
    def insert(
        self,
        expression_type: str,
        code: str,
        canonical: str,
        metadata: bytes = b"",
        created_at: int | None = None,
        expected_id: IdLike | None = None,
    ) -> int: ...
    def insert_many(
        self,
        items: Iterable[tuple[str, str, str, bytes, int | None, IdLike | None]],
        atomic: bool = False,
        dry_run: bool = False,
    ) -> tuple[list[int | BfxError], bool]: ...
    def get(self, id: IdLike) -> SubstrateRecord: ...
    def get_json(self, id: IdLike, invocations: int) -> bytes: ...
    def find(self, id: IdLike) -> SubstrateRecord | None: ...
    def get_many(self, ids: Iterable[IdLike]) -> list[SubstrateRecord | None]: ...
    def remove(self, id: IdLike) -> int: ...
    def page(
        self, after: IdLike | None = None, limit: int = 100
    ) -> tuple[list[SubstrateRecord], int | None]: ...
    def scan(
        self, position: int = 0, limit: int = 1000
    ) -> tuple[list[SubstrateRecord], int | None]: ...
    def scan_edges(
        self, position: int = 0, limit: int = 1000
    ) -> tuple[list[EdgeRecord], int | None]: ...
    def ids(self) -> list[int]: ...
    def link(
        self,
        rel_type: str,
        source: IdLike,
        target: IdLike,
        bidirectional: bool = False,
        constraints: bytes = b"",
        created_at: int | None = None,
    ) -> int: ...
    def link_many(
        self,
        items: Iterable[tuple[str, IdLike, IdLike, bool, bytes, int | None]],
        atomic: bool = False,
        dry_run: bool = False,
    ) -> tuple[list[int | BfxError], bool]: ...
    def reserve(self, substrates: int, relationships: int) -> None: ...
    def load_substrates(
        self, rows: Iterable[tuple[str, str, str, bytes | None, int, int]]
    ) -> tuple[int, BfxError] | None: ...
    def load_relationships(
        self, rows: Iterable[tuple[str, int, int, int, bytes | None, int]]
    ) -> tuple[int, BfxError] | None: ...
    def load_sqlite(
        self,
        module: str,
        database: str,
        seq_query: str,
        substrates_query: str,
        relationships_query: str,
        seq: int,
        busy_ms: int,
    ) -> str | None: ...
    def unlink(self, rid: IdLike) -> None: ...
    def edge(self, rid: IdLike) -> EdgeRecord: ...
    def outgoing(
        self, id: IdLike, rel_type: str | None = None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[EdgeRecord]]: ...
    def incoming(
        self, id: IdLike, rel_type: str | None = None, offset: int = 0, limit: int | None = None
    ) -> tuple[int, list[EdgeRecord]]: ...
    def edges(
        self,
        rel_type: str | None = None,
        source: IdLike | None = None,
        target: IdLike | None = None,
        offset: int = 0,
        limit: int | None = None,
    ) -> tuple[int, list[EdgeRecord]]: ...
    def memory(self) -> dict[str, int]: ...

# ---- graph algorithms (rust/src/py_graph.rs; semantics in docs/graph.md) ----

def graph_traverse(
    arena: Arena,
    start: IdLike,
    direction: str = "outgoing",
    max_depth: int = 3,
    rel_types: list[str] | None = None,
    max_nodes: int = 10_000,
) -> tuple[list[tuple[int, int, int, int | None]], list[tuple[int, str, int, int, bool]], bool]: ...
def graph_bfs(
    arena: Arena,
    start: IdLike,
    direction: str = "outgoing",
    max_depth: int = 3,
    rel_types: list[str] | None = None,
) -> list[list[int]]: ...
def graph_shortest_path(
    arena: Arena,
    source: IdLike,
    target: IdLike,
    direction: str = "outgoing",
    rel_types: list[str] | None = None,
) -> list[int] | None: ...
def graph_cycles(
    arena: Arena,
    limit: int = 100,
    max_work: int = 20_000_000,
    rel_types: list[str] | None = None,
    max_length: int | None = None,
    max_ids: int | None = None,
) -> tuple[bool, list[list[int]], bool]: ...
def graph_components(
    arena: Arena,
    offset: int = 0,
    limit: int = 100,
    member_limit: int = 1000,
    rel_types: list[str] | None = None,
) -> tuple[int, list[tuple[int, list[int]]]]: ...
def graph_pagerank(
    arena: Arena,
    damping: float = 0.85,
    tol: float = 1e-6,
    max_iter: int = 100,
    offset: int = 0,
    limit: int | None = None,
    rel_types: list[str] | None = None,
) -> tuple[int, list[tuple[int, float]], int, bool]: ...
def graph_stats(arena: Arena) -> dict[str, object]: ...

class RequestCounters:
    """A worker's per-request counters (rust/src/observe.rs): histograms, the minute's
    ring, the Prometheus cells."""

    active: int
    def __init__(self) -> None: ...
    def begin(self, call: object) -> None: ...
    def record(
        self,
        status: int,
        elapsed: float,
        now: float,
        route: str | None = None,
        method: str = "GET",
    ) -> None: ...
    def finish(self, status: int, started: float, route: str | None, method: str) -> None: ...
    def finish_logged(
        self,
        status: int,
        started: float,
        route: str | None,
        method: str,
        lines: AccessLines,
        client: object,
        nbytes: int,
        principal: str,
    ) -> bool: ...
    def cells(self) -> list[tuple[str | None, str, int, list[float]]]: ...
    def hist(self) -> list[int]: ...
    def ring(self) -> tuple[list[int], int]: ...

class AccessLines:
    """The access log's lines of one loop pass, handed in one piece to a thread that
    writes them to ``fd`` (never waiting for a slow reader: past a bound, lines are
    dropped and counted)."""

    def __init__(self, json: bool, fd: int = 2, held_max: int = ...) -> None: ...
    def push(
        self,
        client: object,
        method: str,
        route: str,
        status: int,
        seconds: float,
        nbytes: int,
        principal: str = "-",
    ) -> bool: ...
    def flush(self) -> None: ...
    def drain(self, timeout: float) -> bool: ...
    @property
    def dropped(self) -> int: ...

REQUEST_BUCKETS: tuple[float, ...]
REQUEST_FINE_BOUNDS: tuple[float, ...]
REQUEST_METHODS: tuple[str, ...]
ACCESS_LOG_HELD_MAX: int
