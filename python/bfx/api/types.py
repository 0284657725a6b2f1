"""Request and response types of the v1 API, as frozen msgspec Structs.

These types are the contract: the server's decoders validate with them, its encoder and
the clients' decoders read them, and the OpenAPI document is generated from them
(:mod:`bfx.api.openapi`). Request types forbid unknown fields so that a misspelt field is
a 422 naming it rather than silently ignored. Nothing here does I/O.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Raw, Struct, UnsetType, field

from bfx import graph, paging
from bfx._core import EXPRESSION_TYPES

# Page sizes: one bound for every list route (bfx.paging), so no request can ask for the
# whole registry; every number a list takes has an upper bound (422 naming it beyond).
MAX_PAGE = paging.MAX_PAGE
Limit = Annotated[int, Meta(ge=1, le=MAX_PAGE, description=f"page size, 1..{MAX_PAGE}")]
Offset = Annotated[
    int,
    Meta(
        ge=0,
        le=paging.MAX_OFFSET,
        description=(
            f"how many matches to skip, 0..{paging.MAX_OFFSET} (past the total: an empty "
            "page); an alias of cursor"
        ),
    ),
]
PageCursor = Annotated[
    str,
    Meta(
        max_length=200,
        description="opaque: the next_cursor of the previous page of the same list",
    ),
]
NextCursor = Annotated[
    str | None, Meta(description="the cursor of the next page; null on the last page")
]
Total = Annotated[int, Meta(description="total matches, not the page length")]
HexId = Annotated[
    str,
    Meta(
        description="1-16 hex digits, optional 0x/0X, any case; answers use 0x + 16 upper-case",
        examples=["0x000000000000002A"],
    ),
]
#: A 64-bit id as a number: it exceeds 2^53, so clients must read it without loss
#: (JavaScript: BigInt); the schema says so with format uint64.
Identity = Annotated[
    int,
    Meta(
        ge=0,
        description="the 64-bit id as an unsigned integer",
        # msgspec bounds only fit int64; the schema states the u64 range for clients.
        extra_json_schema={"format": "uint64", "maximum": 2**64 - 1},
    ),
]
Number = int | float
JsonObject = dict[str, Any]
#: A stored JSON object (a record's metadata or constraints) in an answer: the stored
#: bytes as a ``msgspec.Raw``, embedded in the JSON as they are — never decoded and
#: encoded again on a read. ``msgspec.json.decode(record.metadata)`` gives the dict.
StoredObject = Annotated[Raw, Meta(extra_json_schema={"type": "object"})]
#: An answer already encoded as its operation's ``response`` type, sent as it is: what
#: the core writes itself for the hottest read (``SubstrateService.get_encoded``).
Encoded = Raw
#: The core's list (``bfx._core.EXPRESSION_TYPES``), as a type the decoders check.
ExpressionType = Literal[EXPRESSION_TYPES]  # type: ignore[valid-type]


class _Request(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class _Query(Struct, kw_only=True, frozen=True):
    """Query strings ignore unknown keys (cache busters, tracking parameters)."""


class _Response(Struct, kw_only=True, frozen=True):
    pass


# --- errors and system -------------------------------------------------------------


class ErrorBody(_Response):
    """Every error answer: a stable code, a human message, and details (always an object)."""

    error: str
    message: str
    details: JsonObject = {}


class Health(_Response):
    status: str
    timestamp: datetime
    version: str


class Ready(_Response):
    """The readiness probe's answer: this worker's store answers."""

    status: str
    timestamp: datetime
    #: ``memory``, ``sqlite`` or ``postgresql``.
    storage: str


class TopInvoked(_Response):
    substrate_id: str
    invocations: int


class StorageInfo(_Response):
    """Where this worker's records come from, and how far it has followed the log."""

    backend: str
    durable: bool
    #: The last change-log sequence number applied by this worker (0 in memory).
    change_seq: int


class ResultCacheInfo(_Response):
    """This worker's result cache (docs/domain.md "Result cache"); all 0 when off."""

    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int


class Connected(_Response):
    substrate_id: HexId
    #: Relationship ends at the substrate (as in ``/relationships/stats``).
    connections: int


class Metrics(_Response):
    """Counters of the whole service (every Granian worker's, added up; a dead
    worker's requests included) plus the registry's totals (docs/observability.md)."""

    total_substrates: int
    total_relationships: int
    uptime_seconds: float
    version: str
    #: The worker that answered.
    worker_pid: int
    #: Live workers whose counters are summed here (up to a second behind, the
    #: answering worker's own aside).
    workers: int
    total_requests: int
    requests_per_second: float
    requests_per_second_1m: float
    avg_response_time_ms: float
    p50_response_time_ms: float
    p95_response_time_ms: float
    p99_response_time_ms: float
    total_errors: int
    error_rate: float
    errors_by_status_class: dict[str, int]
    error_rate_by_status_class: dict[str, float]
    responses_by_status: dict[str, int]
    total_invocations: int
    failed_invocations: int
    avg_invocation_time_ms: float
    total_creations: int
    total_divisions: int
    #: Security events of this worker by name: ``unauthorized`` (401), ``forbidden``
    #: (403), ``rate_limited`` (429), ``rate_limit_unavailable`` (docs/security.md).
    security_events: dict[str, int]
    memory_usage_mb: float
    cpu_usage_percent: float
    active_requests: int
    most_invoked_substrates: list[TopInvoked]
    storage: StorageInfo
    #: Lookups of the compiled-expression cache (every invocation makes one) that hit
    #: and missed, over every worker (the result cache's own figures: ``result_cache``).
    compiled_cache_hits: int
    compiled_cache_misses: int
    #: The whole-graph figures (docs/observability.md), recomputed off the event loop
    #: when the registry changed; None only while the first computation runs.
    graph_depth: int | None
    graph_density: float | None
    most_connected_substrates: list[Connected]
    #: Substrates by length of ``expression_code`` (characters), in bins.
    substrate_size_distribution: dict[str, int]
    #: How old the graph figures are (seconds).
    graph_figures_age_seconds: float | None
    #: Invocation results served from this worker's cache (hits) or computed (misses).
    result_cache: ResultCacheInfo | None = None


# --- substrates -----------------------------------------------------------------------


class CreateSubstrate(_Request):
    expression_type: ExpressionType
    expression_code: str
    metadata: JsonObject | None = None


class PipelineStep(_Request):
    """One step of a pipeline (docs/domain.md "Pipelines")."""

    substrate_id: HexId
    as_: (
        Annotated[
            str,
            Meta(
                pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
                description="the parameter name under which this step receives the "
                "previous step's result (not on the first step)",
            ),
        ]
        | None
    ) = field(default=None, name="as")
    parameters: Annotated[JsonObject, Meta(description="fixed parameters of this step")] | None = (
        None
    )


class ComposeRequest(_Request):
    """``POST /substrates/compose``: a pipeline, created as a substrate of type
    ``pipeline`` (its code: the canonical JSON of the steps and aggregate)."""

    pipeline: Annotated[
        list[PipelineStep], Meta(min_length=1, max_length=100, description="the steps, in order")
    ]
    name: Annotated[str, Meta(description="stored as metadata.name")] | None = None
    aggregate: Literal["last", "sum", "product", "list"] | None = None
    metadata: JsonObject | None = None


class UpdateSubstrate(_Request):
    """``PATCH /substrates/{id}``: a JSON merge patch (RFC 7396) of the metadata."""

    metadata: Annotated[
        JsonObject,
        Meta(description="merged into the stored metadata: null removes a key, objects merge"),
    ]


class SubstrateRecord(_Response):
    substrate_id: HexId
    identity: Identity
    created_at: datetime
    expression_type: str
    expression_code: str
    canonical_code: str
    metadata: StoredObject
    invocations: int


class SubstratePage(_Response):
    substrates: list[SubstrateRecord]
    next_cursor: HexId | None
    count: Annotated[int, Meta(description="total substrates, not the page length")]


class SubstrateList(_Response):
    """A page of search or query matches, oldest first (or newest with -created_at)."""

    substrates: list[SubstrateRecord]
    count: Total
    next_cursor: NextCursor


class StreamQuery(_Query):
    """The live streams' query (docs/observability.md "Live streams")."""

    access_token: (
        Annotated[
            str,
            Meta(
                max_length=4096,
                description="an API key or JWT, for browsers (EventSource and WebSocket "
                "cannot send headers); X-API-Key or Authorization take precedence",
            ),
        ]
        | None
    ) = None


class ListQuery(_Query):
    limit: Limit = 100
    cursor: HexId | None = None


class SearchQuery(_Query):
    name: str | None = None
    type: str | None = None
    limit: Limit = 100
    cursor: PageCursor | None = None


class QueryRequest(_Request):
    filters: JsonObject = {}
    sort: Literal["created_at", "-created_at"] = "created_at"
    limit: Limit = 100
    cursor: PageCursor | None = None


class InvokeRequest(_Request):
    parameters: JsonObject | None = None


class InvokeResponse(_Response):
    substrate_id: HexId
    result: Any
    invocation_time_ms: float


class Dimension(_Response):
    level: int
    name: str
    description: str


class DivideResponse(_Response):
    substrate_id: HexId
    dimensions: list[Dimension]
    fibonacci_sequence: list[int]


class MultiplyRequest(_Request):
    dimension_values: list[Number]


class MultiplyResponse(_Response):
    operation: str
    unity_value: Number
    unity_hex: str | None
    dimensions_collapsed: int


class ValueRequest(_Request):
    value: Number
    parameters: JsonObject | None = None


class ArithmeticResponse(_Response):
    substrate_id: HexId
    operation: str
    original_value: Number
    value: Number
    new_value: Number


class ModulusRequest(_Request):
    modulus: Number
    parameters: JsonObject | None = None


class ModulusResponse(_Response):
    substrate_id: HexId
    value: Number
    modulus: Number
    expressed: Number
    residue: Number


class PowerRequest(_Request):
    exponent: Annotated[Number, Meta(description="0 .. 2^64-1 (floats for float values)")]
    parameters: JsonObject | None = None


class RootRequest(_Request):
    degree: Annotated[Number, Meta(description="the root's degree, >= 1")]
    parameters: JsonObject | None = None


class PowerResponse(_Response):
    substrate_id: HexId
    operation: str
    original_value: Number
    result_value: Number


# --- promotion (DESIGN.md §9, docs/domain.md) -------------------------------------------

#: A u64 in a body: msgspec's bounds fit int64 only, so the range is checked by the
#: domain (422 naming the field) and stated here for the schema.
U64 = Annotated[
    int,
    Meta(
        description="an unsigned 64-bit integer, 0..2^64-1",
        extra_json_schema={"format": "uint64", "minimum": 0, "maximum": 2**64 - 1},
    ),
]


class PromoteRequest(_Request):
    delta: U64 | None = None
    change_description: (
        Annotated[str, Meta(description="delta = FNV-1a-64 of its UTF-8 bytes")] | None
    ) = None
    attribute_value: Annotated[U64, Meta(description="default 798336")] | None = None


class PromoteResponse(_Response):
    substrate_id: HexId
    delta: Identity
    attribute_value: Identity
    new_identity: Identity
    new_identity_hex: HexId


class PromoteSequenceRequest(_Request):
    deltas: Annotated[list[U64], Meta(max_length=1000, description="applied in order, <= 1000")]
    attribute_value: Annotated[U64, Meta(description="default 798336")] | None = None


class PromotionStep(_Response):
    delta: Identity
    new_identity: Identity
    new_identity_hex: HexId


class PromoteSequenceResponse(_Response):
    substrate_id: HexId
    attribute_value: Identity
    steps: Annotated[list[PromotionStep], Meta(description="one per delta: the identity after it")]
    final_identity: Identity
    final_identity_hex: HexId


# --- batches ---------------------------------------------------------------------------


class BatchCreate(_Request):
    substrates: list[CreateSubstrate]
    atomic: bool = False


class BatchItem(_Response, omit_defaults=True):
    """One item of a batch answer; ``status`` is the HTTP status the item alone would get."""

    index: int
    status: int
    substrate_id: HexId | UnsetType = UNSET
    relationship_id: HexId | UnsetType = UNSET
    error: ErrorBody | UnsetType = UNSET


class BatchResult(_Response):
    results: list[BatchItem]


class InvocationItem(_Request):
    substrate_id: HexId
    parameters: JsonObject | None = None


class BatchInvoke(_Request):
    invocations: list[InvocationItem]


class BatchInvokeItem(_Response, omit_defaults=True):
    index: int
    status: int
    substrate_id: HexId | UnsetType = UNSET
    result: Any | UnsetType = UNSET
    invocation_time_ms: float | UnsetType = UNSET
    error: ErrorBody | UnsetType = UNSET


class BatchInvokeResult(_Response):
    results: list[BatchInvokeItem]


# --- relationships --------------------------------------------------------------------


class CreateRelationship(_Request):
    rel_type: Annotated[str, Meta(description="one of the 17 types, any case")]
    source_id: HexId
    target_id: HexId
    bidirectional: bool = False
    constraints: JsonObject | None = None


class RelationshipRecord(_Response):
    relationship_id: HexId
    rel_type: str
    source_id: HexId
    target_id: HexId
    bidirectional: bool
    constraints: StoredObject
    created_at: datetime


class RelationshipPage(_Response):
    relationships: list[RelationshipRecord]
    count: Total
    next_cursor: NextCursor


class BatchRelate(_Request):
    relationships: list[CreateRelationship]
    atomic: bool = False


class EdgeQuery(_Query):
    rel_type: str | None = None
    type: Annotated[str | None, Meta(description="alias of rel_type")] = None
    limit: Limit = 100
    cursor: PageCursor | None = None
    offset: Offset | None = None


class RelationshipQuery(_Query):
    type: str | None = None
    rel_type: Annotated[str | None, Meta(description="alias of type")] = None
    source_id: HexId | None = None
    target_id: HexId | None = None
    limit: Limit = 100
    cursor: PageCursor | None = None
    offset: Offset | None = None


class RelationshipStats(_Response):
    total_relationships: int
    total_substrates: int
    by_type: dict[str, int]
    avg_connections_per_substrate: float
    max_connections: int
    isolated_substrates: int


# --- export / import ------------------------------------------------------------------


#: The largest valid change sequence number (the databases store a signed 64-bit one).
MAX_SEQ = 2**63 - 1
Since = Annotated[
    int,
    Meta(
        ge=0,
        le=MAX_SEQ,
        description="answer the changes after this sequence number (0: from the start)",
    ),
]


class ChangesQuery(_Query):
    since: Since = 0
    limit: Annotated[int, Meta(ge=1, le=MAX_PAGE, description=f"changes, 1..{MAX_PAGE}")] = 100


class ChangeStreamQuery(StreamQuery):
    #: None: from the ``Last-Event-ID`` header, else from now on.
    since: Since | None = None


class Change(_Response):
    #: Strictly increasing, not contiguous (unpublished log entries are skipped).
    seq: int
    op: Annotated[
        str,
        Meta(
            description="substrate_created, substrate_deleted, substrate_updated, "
            "relationship_created or relationship_deleted"
        ),
    ]
    #: The substrate's or relationship's id.
    id: HexId


class ChangePage(_Response):
    changes: list[Change]
    #: The ``since`` of the next call: nothing after it is left out.
    next_since: int


class ExportQuery(_Query):
    format: Literal["json", "ndjson"] = "json"


class ExportDocument(_Response):
    substrates: list[SubstrateRecord]
    relationships: list[RelationshipRecord]


#: An alias's or lens's name (``bfx.domain.names``).
Name = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="1-64 ASCII letters, digits, '.', '_' or '-', starting with a letter or digit",
    ),
]


class ImportSubstrate(Struct, kw_only=True):
    """An exported substrate record; fields a record may carry but import recomputes
    (``identity``, ``canonical_code``, ``invocations``) are accepted and checked by the
    registry."""

    expression_type: str
    expression_code: str
    substrate_id: HexId | UnsetType = UNSET
    identity: int | UnsetType = UNSET
    canonical_code: str | UnsetType = UNSET
    metadata: JsonObject | None = None
    created_at: datetime | UnsetType = UNSET
    invocations: int | UnsetType = UNSET


class ImportRelationship(Struct, kw_only=True):
    rel_type: str
    source_id: HexId
    target_id: HexId
    relationship_id: HexId | UnsetType = UNSET
    bidirectional: bool = False
    constraints: JsonObject | None = None
    created_at: datetime | UnsetType = UNSET


class ImportVersion(Struct, kw_only=True, forbid_unknown_fields=True):
    substrate_id: HexId
    version: Annotated[int, Meta(ge=1)]
    change_description: str | None = None
    created_at: datetime


class ImportHeadMove(Struct, kw_only=True, forbid_unknown_fields=True):
    entry: Annotated[int, Meta(ge=1)]
    head: HexId
    action: Literal["created", "version", "rollback"]
    created_at: datetime


class ImportChain(Struct, kw_only=True):
    """An exported version chain: its members (versions 1..n) must be imported first."""

    chain_id: HexId
    head: HexId
    versions: list[ImportVersion]
    history: list[ImportHeadMove]


class ImportAlias(Struct, kw_only=True):
    name: Name
    substrate_id: HexId
    created_at: datetime | UnsetType = UNSET


class ImportLens(Struct, kw_only=True):
    name: Name
    expression_code: str
    parameters: JsonObject | None = None
    description: str | None = None
    created_at: datetime | UnsetType = UNSET


class ImportDocument(_Request):
    substrates: list[ImportSubstrate] = []
    relationships: list[ImportRelationship] = []
    #: Since schema 4; an older export has none of these.
    chains: list[ImportChain] = []
    aliases: list[ImportAlias] = []
    lenses: list[ImportLens] = []


class ImportSubstrateLine(ImportSubstrate, tag_field="kind", tag="substrate"):
    """NDJSON import: each line is an exported record with ``kind``."""

    pass


class ImportRelationshipLine(ImportRelationship, tag_field="kind", tag="relationship"):
    pass


class ImportChainLine(ImportChain, tag_field="kind", tag="chain"):
    pass


class ImportAliasLine(ImportAlias, tag_field="kind", tag="alias"):
    pass


class ImportLensLine(ImportLens, tag_field="kind", tag="lens"):
    pass


ImportLine = (
    ImportSubstrateLine
    | ImportRelationshipLine
    | ImportChainLine
    | ImportAliasLine
    | ImportLensLine
)


class ImportResult(_Response, omit_defaults=True):
    """The last three appear when the import held any (since schema 4)."""

    imported_substrates: int
    imported_relationships: int
    skipped: int
    imported_chains: int = 0
    imported_aliases: int = 0
    imported_lenses: int = 0


# --- graph algorithms ---------------------------------------------------------------

#: The HTTP bound on nodes per traversal (the Registry allows more in process).
HTTP_MAX_NODES = 10_000
#: Ids per component over HTTP (the Registry allows more in process).
HTTP_MAX_MEMBERS = 10_000

Direction = Literal["outgoing", "incoming", "both"]
TypeList = Annotated[
    str | None,
    Meta(description="comma-separated relationship types (any case); all types when absent"),
]
GraphLimit = Annotated[
    int, Meta(ge=1, le=paging.MAX_PAGE, description=f"page size, 1..{paging.MAX_PAGE}")
]
Cursor = PageCursor | None


class TraverseRequest(_Request):
    start_substrate_id: HexId
    direction: Direction = "outgoing"
    max_depth: Annotated[
        int, Meta(ge=0, description=f"steps from the start, 0..{graph.MAX_DEPTH}")
    ] = 3
    relationship_types: list[str] | None = None
    include_substrates: bool = False
    max_nodes: Annotated[
        int, Meta(ge=1, description=f"nodes returned, start included, 1..{HTTP_MAX_NODES}")
    ] = 1000


class TraversedNode(_Response, omit_defaults=True):
    substrate_id: HexId
    depth: int
    substrate: SubstrateRecord | None = None


class CrossedEdge(_Response):
    relationship_id: HexId
    rel_type: str
    source_id: HexId
    target_id: HexId
    bidirectional: bool


class TraverseResponse(_Response):
    start_substrate_id: HexId
    nodes: list[TraversedNode]
    edges: list[CrossedEdge]
    paths: Annotated[
        list[list[HexId]],
        Meta(description="one per node, in the order of nodes: the ids from the start to it"),
    ]
    truncated: Annotated[bool, Meta(description="max_nodes stopped the walk")]


class PathQuery(_Query):
    direction: Direction = "outgoing"
    relationship_types: TypeList = None


class PathResponse(_Response):
    source_id: HexId
    target_id: HexId
    path: list[HexId]
    length: Annotated[int, Meta(description="number of steps")]


class CyclesQuery(_Query):
    limit: Annotated[
        int, Meta(ge=0, le=graph.MAX_CYCLES, description=f"cycles listed, 0..{graph.MAX_CYCLES}")
    ] = 100
    max_length: (
        Annotated[
            int,
            Meta(
                ge=1,
                description=(
                    f"only cycles of at most this many nodes, 1..{graph.MAX_CYCLE_LENGTH}"
                ),
            ),
        ]
        | None
    ) = None
    relationship_types: TypeList = None


class CyclesResponse(_Response):
    has_cycle: bool
    cycles: list[list[HexId]]
    truncated: Annotated[bool, Meta(description="more cycles may exist than listed")]


class ComponentsQuery(_Query):
    limit: GraphLimit = 100
    cursor: Cursor = None
    member_limit: Annotated[
        int,
        Meta(ge=1, le=HTTP_MAX_MEMBERS, description=f"ids per component, 1..{HTTP_MAX_MEMBERS}"),
    ] = 1000
    relationship_types: TypeList = None


class Component(_Response):
    size: int
    substrate_ids: list[HexId]
    truncated: Annotated[bool, Meta(description="substrate_ids cut to member_limit")]


class ComponentsResponse(_Response):
    components: list[Component]
    count: Annotated[int, Meta(description="number of components")]
    next_cursor: str | None


class PageRankQuery(_Query):
    damping: Annotated[float, Meta(ge=0.0, le=1.0, description="0..1")] = 0.85
    tol: Annotated[
        float,
        Meta(
            ge=graph.MIN_PAGERANK_TOL,
            le=graph.MAX_PAGERANK_TOL,
            description=f"stop when the L1 change < n * tol; {graph.MIN_PAGERANK_TOL:g}..1",
        ),
    ] = 1e-6
    max_iter: Annotated[
        int,
        Meta(
            ge=1,
            le=graph.MAX_PAGERANK_ITER,
            description=(
                f"1..{graph.MAX_PAGERANK_ITER}; a work budget may stop it earlier "
                "(converged: false)"
            ),
        ),
    ] = 100
    limit: GraphLimit = 100
    cursor: Cursor = None
    relationship_types: TypeList = None


class Score(_Response):
    substrate_id: HexId
    score: float


class PageRankResponse(_Response):
    scores: list[Score]
    count: Annotated[int, Meta(description="number of substrates ranked")]
    iterations: int
    converged: bool
    next_cursor: str | None


# --- API keys (DESIGN.md §7, docs/security.md) ------------------------------------------

#: DESIGN.md §7: every operation requires exactly one of these (or none: public).
SCOPES = (
    "substrates:read",
    "substrates:write",
    "substrates:invoke",
    "relationships:read",
    "relationships:write",
    "graph:read",
    "transfer",
    "metrics:read",
    "admin",
)
#: A scope, as a type the decoders check.
Scope = Literal[SCOPES]  # type: ignore[valid-type]


class CreateKey(_Request):
    name: Annotated[str, Meta(min_length=1, max_length=100, description="who or what it is for")]
    scopes: Annotated[
        list[Scope], Meta(min_length=1, max_length=9, description="`admin` implies every scope")
    ]
    #: When it stops working (in the future, with a time zone); null: never.
    expires_at: (
        Annotated[datetime, Meta(tz=True, description="with a time zone, in the future")] | None
    ) = None


class ApiKey(_Response):
    """A key as listed: never its secret."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None


class CreatedKey(ApiKey):
    """The one answer that holds the key: send it as ``X-API-Key`` or
    ``Authorization: Bearer``. Only a hash of it is kept."""

    secret: str


class KeyList(_Response):
    """Every key not revoked (expired ones included), oldest first."""

    keys: list[ApiKey]


# --- users and login (DESIGN.md §7, docs/security.md) ---------------------------------------


class Login(_Request):
    # Bounded so that a login body cannot make argon2 hash megabytes; a name or password
    # that is too long is a 422, which says nothing about whether a user exists.
    username: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class AccessToken(_Response):
    """A bfx-issued JWT (HS256): send it as ``Authorization: Bearer <access_token>``."""

    access_token: str
    token_type: Literal["bearer"]
    #: Seconds until it expires (``--jwt-ttl``); then log in again.
    expires_in: int


class Me(_Response):
    """Who the credential names and what it may do."""

    #: As the access log prints it: a key id, ``user:NAME``, ``jwt:SUBJECT``, or ``-``
    #: when authentication is off.
    principal: str
    kind: Literal["key", "user", "jwt", "anonymous"]
    scopes: list[str]


# --- versions, aliases, lenses (DESIGN §9; docs/domain.md) ----------------------------


class CreateVersion(_Request):
    """``POST /substrates/{id}/versions``: the new version's code (same type and metadata)."""

    expression_code: str
    change_description: Annotated[str, Meta(max_length=1000)] | None = None


class VersionCreated(SubstrateRecord):
    """The new substrate's record, with its place in the chain."""

    version: Annotated[int, Meta(ge=1, description="1 is the substrate the chain began at")]
    chain_id: Annotated[HexId, Meta(description="the id of the chain's version 1")]
    change_description: str | None


class VersionEntry(_Response):
    version: int
    substrate_id: HexId
    change_description: str | None
    created_at: datetime


class HeadMove(_Response):
    """One move of a chain's head, oldest first: ``created`` (the chain began),
    ``version`` (a new version became the head) or ``rollback``."""

    entry: int
    head: HexId
    action: Literal["created", "version", "rollback"]
    created_at: datetime


class VersionList(_Response):
    chain_id: HexId
    head: HexId
    versions: Annotated[list[VersionEntry], Meta(description="oldest first")]
    history: list[HeadMove]


class PutAlias(_Request):
    substrate_id: HexId


class AliasRecord(_Response):
    name: str
    substrate_id: Annotated[HexId, Meta(description="the substrate it was pointed at")]
    target_id: Annotated[
        HexId | None,
        Meta(description="what it answers with now: that substrate's chain head; "
             "null when the substrate was deleted"),
    ]  # fmt: skip
    created_at: datetime


class CreateLens(_Request):
    name: Name
    expression_code: Annotated[str, Meta(description="an expression over z and the parameters")]
    parameters: Annotated[JsonObject, Meta(description="parameter names and defaults")] | None = (
        None
    )
    description: Annotated[str, Meta(max_length=1000)] | None = None


class LensRecord(_Response):
    name: str
    expression_code: str
    parameters: JsonObject
    description: str | None
    builtin: bool
    created_at: datetime | None


class LensList(_Response):
    lenses: list[LensRecord]


class ApplyLens(_Request):
    lens_name: Name
    parameters: Annotated[JsonObject, Meta(description="the lens's, over its defaults")] | None = (
        None
    )
    dimension: (
        Annotated[int, Meta(ge=0, le=8, description="observe this Fibonacci level")] | None
    ) = None
    substrate_parameters: (
        Annotated[JsonObject, Meta(description="the invocation's (without dimension)")] | None
    ) = None


class LensApplied(_Response):
    substrate_id: HexId
    lens_name: str
    value: Any
    result: Any
