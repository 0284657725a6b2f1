"""The operation table: every operation of the v1 API, declared once, as data.

Each :class:`Operation` says what the server routes and decodes, what OpenAPI documents,
what the clients call it and send, the scope it needs and what it costs a rate limit. The
server (``bfx.asgi``) looks its handlers up by ``name``; nothing here does I/O or imports
the server.

Adding an operation: its types in :mod:`bfx.api.types`, one entry here (with a working
``example`` when it has a body), a handler of the same name in ``bfx.asgi.handlers``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from bfx.api import types as t
from bfx.api.examples import EXAMPLES, IMPORT_EXAMPLE

__all__ = [
    "AUTHENTICATED",
    "BY_NAME",
    "ID_PARAMS",
    "OPERATIONS",
    "PREFIX",
    "SCOPES",
    "Operation",
]

PREFIX = "/api/v1"

#: DESIGN.md §7 (declared with the types: ``bfx.api.types.SCOPES``).
SCOPES = t.SCOPES

#: Not a scope a key or user can hold: an operation declaring it admits any caller whose
#: credential holds (401 without one, never 403), such as ``GET /auth/me``.
AUTHENTICATED = "authenticated"

#: Where a handler runs: on the event loop (microseconds), in a plain thread (quick but
#: not microseconds), or in the bounded heavy pool (may touch the whole registry).
#: ``write``: a single create, checked on the loop, whose handler awaits its commit:
#: over a durable store the creates of one loop pass share one commit, written on the
#: loop when the store need not wait, else on the write thread (group commit,
#: ``bfx.group_commit``); in memory it is written at once. ``store``: any other write
#: (an update, a delete, a version, an alias, a lens, a key): over a durable store on
#: the engine's write thread, since its commit may wait for another process's write lock
#: and the loop must not wait with it; in memory on the loop.
Runs = Literal["loop", "light", "heavy", "write", "store"]


#: Path parameters that are 64-bit ids.
ID_PARAMS = frozenset({"id", "rid", "src", "dst", "version_id"})


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation of the API."""

    #: snake_case name: the Python client's method, camelCase in TypeScript (DESIGN §10).
    name: str
    method: str
    #: Path template under the server root, ``{id}`` style parameters.
    path: str
    summary: str
    tag: str
    #: The scope required (DESIGN §7); None: public (health, docs, login);
    #: :data:`AUTHENTICATED`: any valid credential.
    scope: str | None
    #: Rate-limit cost; a batch costs this per item of its ``items`` field.
    cost: int = 1
    #: msgspec type of the JSON body; ``bytes`` for a raw body; None: no body.
    body: Any = None
    query: Any = None
    #: Type of a 2xx JSON answer (None: no body).
    response: Any = None
    status: int = 200
    #: Error statuses beyond those any body or query can produce.
    errors: tuple[int, ...] = ()
    runs: Runs = "loop"
    #: The body field holding a batch's items (bounded by the service's item cap).
    items: str | None = None
    #: Which body limit applies: the general one or the import one.
    body_limit: Literal["body_limit", "import_body_limit"] = "body_limit"
    content_types: tuple[str, ...] = ("application/json",)
    #: A body that works as written (OpenAPI shows it; tests post it).
    example: Any = None
    #: Part of the client surface (docs pages, static files and live streams are not).
    client: bool = True
    #: A live stream: ``sse`` (text/event-stream) or ``ws`` (a WebSocket); None: an
    #: ordinary answer. Live streams also take the credential as ``?access_token=``
    #: (browsers cannot set headers on them) and are left out of the generated clients.
    live: Literal["sse", "ws"] | None = None
    #: Whether sending it again after an unknown outcome (the connection broke after the
    #: request went out) is harmless: reads, pure computations, deletes, and single
    #: creates (the same content has the same id: a repeat is a 409 duplicate). Clients
    #: retry a request that is not only when it cannot have been processed (docs/clients.md).
    idempotent: bool = True
    param_names: tuple[str, ...] = field(init=False)
    #: For each path parameter: whether it is a 64-bit id (parsed to an int before the
    #: handler runs, 400 ``invalid_id`` when malformed).
    id_params: tuple[bool, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.scope is not None and self.scope not in (*SCOPES, AUTHENTICATED):
            raise ValueError(f"{self.name}: unknown scope {self.scope!r}")
        names = tuple(s[1:-1] for s in self.path.split("/") if s.startswith("{"))
        object.__setattr__(self, "param_names", names)
        object.__setattr__(self, "id_params", tuple(n in ID_PARAMS for n in names))


_S = f"{PREFIX}/substrates"
_R = f"{PREFIX}/relationships"
_ID_ERRORS = (400, 404)
_INVOKE_ERRORS = (400, 404, 422)


def _ex(kind: Any) -> Any:
    return EXAMPLES[kind.__name__]


OPERATIONS: tuple[Operation, ...] = (
    # --- system -------------------------------------------------------------------------
    Operation("health", "GET", f"{PREFIX}/health", "Liveness", "system", None, response=t.Health),
    Operation(
        "health_ready",
        "GET",
        f"{PREFIX}/health/ready",
        "Readiness: 200 when the store answers, else 503 not_ready",
        "system",
        None,
        response=t.Ready,
        errors=(503,),
        # The probe may wait on the database (bounded): never on the event loop.
        runs="light",
    ),
    Operation(
        "metrics",
        "GET",
        f"{PREFIX}/metrics",
        "Counters of this worker (JSON); with Accept: text/plain or "
        "application/openmetrics-text, the Prometheus exposition of every worker",
        "system",
        "metrics:read",
        response=t.Metrics,
        content_types=("application/json", "text/plain", "application/openmetrics-text"),
        # Reading every worker's metric files takes milliseconds: off the event loop.
        runs="light",
    ),
    Operation(
        "prometheus",
        "GET",
        "/metrics",
        "The Prometheus exposition, summed over every worker (docs/observability.md)",
        "system",
        "metrics:read",
        response=str,
        content_types=("text/plain", "application/openmetrics-text"),
        runs="light",
    ),
    Operation(
        "metrics_stream",
        "GET",
        f"{PREFIX}/metrics/stream",
        "The metrics document (as GET /metrics answers it) once a second, as Server-Sent "
        "Events (event: metrics)",
        "system",
        "metrics:read",
        query=t.StreamQuery,
        response=str,
        content_types=("text/event-stream",),
        errors=(503,),
        client=False,
        live="sse",
    ),
    Operation(
        "metrics_ws",
        "GET",
        f"{PREFIX}/metrics/ws",
        "The metrics stream over a WebSocket: one JSON text message a second",
        "system",
        "metrics:read",
        query=t.StreamQuery,
        status=101,
        content_types=(),
        errors=(426, 503),
        client=False,
        live="ws",
    ),
    Operation(
        "dashboard",
        "GET",
        f"{PREFIX}/dashboard",
        "The live dashboard (a page over the metrics and change streams)",
        "system",
        None,
        response=str,
        content_types=("text/html",),
        client=False,
    ),
    Operation(
        "openapi",
        "GET",
        f"{PREFIX}/openapi.json",
        "This document",
        "system",
        None,
        response=dict,
        client=False,
    ),
    Operation(
        "docs",
        "GET",
        f"{PREFIX}/docs",
        "Swagger UI",
        "system",
        None,
        response=str,
        content_types=("text/html",),
        client=False,
    ),
    Operation(
        "redoc",
        "GET",
        f"{PREFIX}/redoc",
        "ReDoc",
        "system",
        None,
        response=str,
        content_types=("text/html",),
        client=False,
    ),
    Operation(
        "static",
        "GET",
        f"{PREFIX}/static/{{name}}",
        "Files of the docs pages",
        "system",
        None,
        response=str,
        errors=(404,),
        content_types=("text/javascript", "text/css"),
        client=False,
    ),
    # --- change feed (DESIGN.md §8; docs/observability.md "Change feed") --------------------
    Operation(
        "changes",
        "GET",
        f"{PREFIX}/changes",
        "What was written after a sequence number, in order: creates, deletes and "
        "updates of substrates and relationships (410 changes_pruned past the retention)",
        "changes",
        "substrates:read",
        query=t.ChangesQuery,
        response=t.ChangePage,
        errors=(410, 422),
        # One indexed read of the database's log: quick, but I/O, so not on the loop.
        runs="light",
    ),
    Operation(
        "changes_stream",
        "GET",
        f"{PREFIX}/changes/stream",
        "The change feed as Server-Sent Events (event: change, id: seq), live; resumed "
        "with Last-Event-ID or since",
        "changes",
        "substrates:read",
        query=t.ChangeStreamQuery,
        response=str,
        errors=(410, 422, 503),
        runs="light",
        content_types=("text/event-stream",),
        client=False,
        # A browser's EventSource (the dashboard) cannot send a header: ?access_token=.
        live="sse",
    ),
    # --- API keys (DESIGN.md §7) ------------------------------------------------------------
    Operation(
        "create_key",
        "POST",
        f"{PREFIX}/keys",
        "Create an API key (the answer holds its secret, once)",
        "keys",
        "admin",
        body=t.CreateKey,
        response=t.CreatedKey,
        status=201,
        errors=(422,),
        example=_ex(t.CreateKey),
        idempotent=False,
        runs="store",
    ),
    Operation(
        "list_keys",
        "GET",
        f"{PREFIX}/keys",
        "API keys not revoked (no secrets)",
        "keys",
        "admin",
        response=t.KeyList,
    ),
    Operation(
        "revoke_key",
        "DELETE",
        f"{PREFIX}/keys/{{key_id}}",
        "Revoke an API key (every worker refuses it from the next request on)",
        "keys",
        "admin",
        status=204,
        errors=(404,),
        runs="store",
    ),
    # --- login (DESIGN.md §7) ---------------------------------------------------------------
    Operation(
        "login",
        "POST",
        f"{PREFIX}/auth/login",
        "Log in with a user name and password: a short-lived bearer token",
        "auth",
        None,  # public: failed logins have their own limit (docs/security.md)
        body=t.Login,
        response=t.AccessToken,
        errors=(401, 429),
        runs="heavy",  # argon2 costs milliseconds: bounded threads, 503 when all are busy
        example=_ex(t.Login),
    ),
    Operation(
        "me",
        "GET",
        f"{PREFIX}/auth/me",
        "Who the credential names, and its scopes",
        "auth",
        AUTHENTICATED,
        response=t.Me,
    ),
    # --- substrates -----------------------------------------------------------------------
    Operation(
        "create_substrate",
        "POST",
        _S,
        "Create a substrate",
        "substrates",
        "substrates:write",
        body=t.CreateSubstrate,
        response=t.SubstrateRecord,
        status=201,
        errors=(409, 422),
        example=_ex(t.CreateSubstrate),
        runs="write",
    ),
    Operation(
        "list_substrates",
        "GET",
        _S,
        "List substrates by id, a page at a time (count = all substrates)",
        "substrates",
        "substrates:read",
        query=t.ListQuery,
        response=t.SubstratePage,
        errors=(400, 422),
    ),
    Operation(
        "get_substrate",
        "GET",
        f"{_S}/{{id}}",
        "Get a substrate",
        "substrates",
        "substrates:read",
        response=t.SubstrateRecord,
        errors=_ID_ERRORS,
    ),
    Operation(
        "update_substrate",
        "PATCH",
        f"{_S}/{{id}}",
        "Update a substrate's metadata (JSON merge patch); the id stays",
        "substrates",
        "substrates:write",
        body=t.UpdateSubstrate,
        response=t.SubstrateRecord,
        errors=(400, 404, 422),
        example=_ex(t.UpdateSubstrate),
        runs="store",
    ),
    Operation(
        "delete_substrate",
        "DELETE",
        f"{_S}/{{id}}",
        "Delete a substrate and its edges (409 in_use while a pipeline has it as a step)",
        "substrates",
        "substrates:write",
        status=204,
        errors=(400, 404, 409),
        runs="store",
    ),
    # Pipelines (DESIGN.md §9, docs/domain.md): the seed's spelling of a create.
    Operation(
        "compose",
        "POST",
        f"{_S}/compose",
        "Create a pipeline of substrates (a substrate of type pipeline)",
        "substrates",
        "substrates:write",
        body=t.ComposeRequest,
        response=t.SubstrateRecord,
        status=201,
        errors=(409, 422),
        example=_ex(t.ComposeRequest),
        runs="store",
    ),
    Operation(
        "invoke",
        "POST",
        f"{_S}/{{id}}/invoke",
        "Invoke a substrate",
        "substrates",
        "substrates:invoke",
        body=t.InvokeRequest,
        response=t.InvokeResponse,
        errors=_INVOKE_ERRORS,
        example=_ex(t.InvokeRequest),
    ),
    Operation(
        "divide",
        "POST",
        f"{_S}/{{id}}/divide",
        "The 9 Fibonacci dimensions",
        "operators",
        "substrates:read",
        response=t.DivideResponse,
        errors=_ID_ERRORS,
    ),
    Operation(
        "multiply",
        "POST",
        f"{_S}/multiply",
        "Multiply dimension values",
        "operators",
        "substrates:invoke",
        body=t.MultiplyRequest,
        response=t.MultiplyResponse,
        errors=(422,),
        example=_ex(t.MultiplyRequest),
    ),
    *(
        Operation(
            name,
            "POST",
            f"{_S}/{{id}}/{name}",
            summary,
            "operators",
            "substrates:invoke",
            body=body,
            response=response,
            errors=_INVOKE_ERRORS,
            example=_ex(body),
        )
        for name, summary, body, response in (
            ("add", "Add to a substrate's value", t.ValueRequest, t.ArithmeticResponse),
            ("subtract", "Subtract from a substrate's value", t.ValueRequest, t.ArithmeticResponse),
            ("modulus", "Value modulo m", t.ModulusRequest, t.ModulusResponse),
            ("power", "Value to a power", t.PowerRequest, t.PowerResponse),
            ("root", "Root of the value", t.RootRequest, t.PowerResponse),
        )
    ),
    # Promotion: pure computation on the id (DESIGN.md §9, docs/domain.md).
    Operation(
        "promote",
        "POST",
        f"{_S}/{{id}}/promote",
        "Promote an identity: id XOR attribute_value XOR delta (nothing is stored)",
        "operators",
        "substrates:read",
        body=t.PromoteRequest,
        response=t.PromoteResponse,
        errors=(400, 422),
        example=_ex(t.PromoteRequest),
    ),
    Operation(
        "promote_sequence",
        "POST",
        f"{_S}/{{id}}/promote/sequence",
        "Promote an identity through a list of deltas, in order (nothing is stored)",
        "operators",
        "substrates:read",
        body=t.PromoteSequenceRequest,
        response=t.PromoteSequenceResponse,
        errors=(400, 422),
        example=_ex(t.PromoteSequenceRequest),
    ),
    Operation(
        "create_substrates",
        "POST",
        f"{_S}/batch",
        "Create many substrates",
        "substrates",
        "substrates:write",
        body=t.BatchCreate,
        response=t.BatchResult,
        errors=(413, 422),
        runs="heavy",
        items="substrates",
        example=_ex(t.BatchCreate),
        idempotent=False,
    ),
    Operation(
        "invoke_many",
        "POST",
        f"{_S}/batch/invoke",
        "Invoke many substrates",
        "substrates",
        "substrates:invoke",
        body=t.BatchInvoke,
        response=t.BatchInvokeResult,
        errors=(413, 422),
        runs="heavy",
        items="invocations",
        example=_ex(t.BatchInvoke),
    ),
    Operation(
        "search",
        "GET",
        f"{_S}/search",
        "Search by metadata name and type, oldest first, paged by cursor",
        "substrates",
        "substrates:read",
        cost=5,
        query=t.SearchQuery,
        response=t.SubstrateList,
        errors=(422,),
        runs="heavy",
    ),
    Operation(
        "query",
        "POST",
        f"{_S}/query",
        "Filter and sort substrates, paged by cursor",
        "substrates",
        "substrates:read",
        cost=5,
        body=t.QueryRequest,
        response=t.SubstrateList,
        errors=(422,),
        runs="heavy",
        example=_ex(t.QueryRequest),
    ),
    # --- transfer -------------------------------------------------------------------------
    Operation(
        "export",
        "GET",
        f"{_S}/export",
        "Export everything (json or ndjson)",
        "transfer",
        "transfer",
        cost=100,
        query=t.ExportQuery,
        response=t.ExportDocument,
        errors=(422,),
        runs="heavy",
        content_types=("application/json", "application/x-ndjson"),
    ),
    Operation(
        "import_records",
        "POST",
        f"{_S}/import",
        "Import an export (json or ndjson)",
        "transfer",
        "transfer",
        cost=100,
        body=bytes,
        response=t.ImportResult,
        errors=(400, 404, 409, 415, 422),
        runs="heavy",
        body_limit="import_body_limit",
        content_types=("application/json", "application/x-ndjson"),
        example=IMPORT_EXAMPLE,
        idempotent=False,
    ),
    # --- relationships --------------------------------------------------------------------
    Operation(
        "create_relationship",
        "POST",
        _R,
        "Create a typed edge",
        "relationships",
        "relationships:write",
        body=t.CreateRelationship,
        response=t.RelationshipRecord,
        status=201,
        errors=(404, 409, 422),
        example=_ex(t.CreateRelationship),
        runs="write",
    ),
    Operation(
        "list_relationships",
        "GET",
        _R,
        "Edges filtered by type, source, target, paged by cursor (or offset)",
        "relationships",
        "relationships:read",
        query=t.RelationshipQuery,
        response=t.RelationshipPage,
        errors=(400, 422),
    ),
    Operation(
        "create_relationships",
        "POST",
        f"{_R}/batch",
        "Create many edges",
        "relationships",
        "relationships:write",
        body=t.BatchRelate,
        response=t.BatchResult,
        errors=(413, 422),
        runs="heavy",
        items="relationships",
        example=_ex(t.BatchRelate),
        idempotent=False,
    ),
    Operation(
        "relationship_stats",
        "GET",
        f"{_R}/stats",
        "Edge counts, degrees, isolated nodes",
        "relationships",
        "relationships:read",
        cost=10,
        response=t.RelationshipStats,
        runs="light",
    ),
    *(
        Operation(
            direction,
            "GET",
            f"{_R}/{direction}/{{id}}",
            f"Edges {word} a substrate, newest first, paged by cursor (or offset)",
            "relationships",
            "relationships:read",
            query=t.EdgeQuery,
            response=t.RelationshipPage,
            errors=(400, 404, 422),
        )
        for direction, word in (("outgoing", "out of"), ("incoming", "into"))
    ),
    Operation(
        "get_relationship",
        "GET",
        f"{_R}/{{rid}}",
        "Get an edge",
        "relationships",
        "relationships:read",
        response=t.RelationshipRecord,
        errors=_ID_ERRORS,
    ),
    Operation(
        "delete_relationship",
        "DELETE",
        f"{_R}/{{rid}}",
        "Delete an edge (409 in_use for a pipeline's COMPOSITION edge to its step)",
        "relationships",
        "relationships:write",
        status=204,
        errors=(400, 404, 409),
        runs="store",
    ),
    # --- graph algorithms -----------------------------------------------------------------
    Operation(
        "traverse",
        "POST",
        f"{_R}/traverse",
        "Breadth-first traversal with depths, crossed edges and paths",
        "graph",
        "graph:read",
        cost=10,
        body=t.TraverseRequest,
        response=t.TraverseResponse,
        errors=(404, 422),
        runs="heavy",
        example=_ex(t.TraverseRequest),
    ),
    Operation(
        "shortest_path",
        "GET",
        f"{_R}/path/{{src}}/{{dst}}",
        "Shortest path (fewest steps); 404 no_path when there is none",
        "graph",
        "graph:read",
        cost=10,
        query=t.PathQuery,
        response=t.PathResponse,
        errors=(400, 404, 422),
        runs="heavy",
    ),
    Operation(
        "cycles",
        "GET",
        f"{_R}/cycles",
        "Whether the graph has cycles, and some",
        "graph",
        "graph:read",
        cost=50,
        query=t.CyclesQuery,
        response=t.CyclesResponse,
        errors=(422,),
        runs="heavy",
    ),
    Operation(
        "components",
        "GET",
        f"{_R}/components",
        "Strongly connected components, largest first, paged",
        "graph",
        "graph:read",
        cost=50,
        query=t.ComponentsQuery,
        response=t.ComponentsResponse,
        errors=(422,),
        runs="heavy",
    ),
    Operation(
        "pagerank",
        "GET",
        f"{_R}/pagerank",
        "PageRank scores, highest first, paged",
        "graph",
        "graph:read",
        cost=100,
        query=t.PageRankQuery,
        response=t.PageRankResponse,
        errors=(422,),
        runs="heavy",
    ),
    # --- versions, aliases, lenses (DESIGN §9; docs/domain.md) ------------------------------
    Operation(
        "create_version",
        "POST",
        f"{_S}/{{id}}/versions",
        "Create the next version of a substrate's chain (a LINEAGE edge links it); "
        "it becomes the chain's head",
        "versions",
        "substrates:write",
        body=t.CreateVersion,
        response=t.VersionCreated,
        status=201,
        errors=(400, 404, 409, 422),
        example=_ex(t.CreateVersion),
        idempotent=False,
        runs="store",
    ),
    Operation(
        "versions",
        "GET",
        f"{_S}/{{id}}/versions",
        "The version chain of a substrate (any member): its head, versions oldest first, "
        "and every head move",
        "versions",
        "substrates:read",
        response=t.VersionList,
        errors=_ID_ERRORS,
    ),
    Operation(
        "rollback",
        "POST",
        f"{_S}/{{id}}/rollback/{{version_id}}",
        "Move the chain's head to one of its versions (recorded as a history entry); "
        "422 not_in_chain for a substrate outside the chain",
        "versions",
        "substrates:write",
        response=t.VersionList,
        errors=(400, 404, 422),
        idempotent=False,
        runs="store",
    ),
    Operation(
        "put_alias",
        "PUT",
        f"{PREFIX}/aliases/{{name}}",
        "Point a name at a substrate (it follows the substrate's chain head)",
        "aliases",
        "substrates:write",
        body=t.PutAlias,
        response=t.AliasRecord,
        errors=(404, 422),
        example=_ex(t.PutAlias),
        runs="store",
    ),
    Operation(
        "get_alias",
        "GET",
        f"{PREFIX}/aliases/{{name}}",
        "An alias, and the substrate it answers with now",
        "aliases",
        "substrates:read",
        response=t.AliasRecord,
        errors=(404,),
    ),
    Operation(
        "delete_alias",
        "DELETE",
        f"{PREFIX}/aliases/{{name}}",
        "Remove an alias",
        "aliases",
        "substrates:write",
        status=204,
        errors=(404,),
        runs="store",
    ),
    Operation(
        "invoke_alias",
        "POST",
        f"{PREFIX}/aliases/{{name}}/invoke",
        "Invoke the substrate an alias answers with now; 404 alias_target_deleted when "
        "its substrate was deleted",
        "aliases",
        "substrates:invoke",
        body=t.InvokeRequest,
        response=t.InvokeResponse,
        errors=(404, 422),
        example=_ex(t.InvokeRequest),
    ),
    Operation(
        "create_lens",
        "POST",
        f"{PREFIX}/lenses",
        "Store a lens: a sandboxed expression over z and parameters with defaults",
        "lenses",
        "substrates:write",
        body=t.CreateLens,
        response=t.LensRecord,
        status=201,
        errors=(409, 422),
        example=_ex(t.CreateLens),
        runs="store",
    ),
    Operation(
        "list_lenses",
        "GET",
        f"{PREFIX}/lenses",
        "Every lens: the built-ins, then the stored ones by name",
        "lenses",
        "substrates:read",
        response=t.LensList,
    ),
    Operation(
        "get_lens",
        "GET",
        f"{PREFIX}/lenses/{{name}}",
        "A lens",
        "lenses",
        "substrates:read",
        response=t.LensRecord,
        errors=(404,),
    ),
    Operation(
        "delete_lens",
        "DELETE",
        f"{PREFIX}/lenses/{{name}}",
        "Remove a stored lens (409 for a built-in)",
        "lenses",
        "substrates:write",
        status=204,
        errors=(404, 409),
        runs="store",
    ),
    Operation(
        "apply_lens",
        "POST",
        f"{_S}/{{id}}/apply-lens",
        "Apply a lens to a substrate's value (its result, or a Fibonacci level)",
        "lenses",
        "substrates:invoke",
        body=t.ApplyLens,
        response=t.LensApplied,
        errors=_INVOKE_ERRORS,
        example=_ex(t.ApplyLens),
    ),
)

BY_NAME: dict[str, Operation] = {op.name: op for op in OPERATIONS}
if len(BY_NAME) != len(OPERATIONS):
    raise RuntimeError("operation names must be unique")
