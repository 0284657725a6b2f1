"""The service interface: one Protocol per noun of the API, and the container of them all.

HTTP handlers and the Python clients depend on these Protocols, never on the
:class:`~bfx.Registry`: the local implementation (:func:`bfx.services.local_services`)
composes a registry, and a remote or sharded implementation could stand in for it
without a handler or a caller changing.

Conventions, the same for every method:

- ids are ``int`` (already parsed; an id in a URL is the caller's to parse);
- single values and small flat bodies are plain arguments; batches, graph requests and
  queries with paging take their :mod:`bfx.api.types` Struct as decoded (``None`` means
  the Struct's defaults), so a service sees exactly what the operation declares;
- answers are the :mod:`bfx.api.types` Structs the API answers (``None`` for 204);
- failures raise :mod:`bfx.errors` classes, whose ``status`` is the HTTP status.

:data:`OPERATION_METHODS` maps each operation of :data:`bfx.api.operations.OPERATIONS`
(those with ``client=True``) to its ``(service, method)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from bfx.api import types as s
from bfx.security.auth import Principal

__all__ = [
    "AWAITED_METHODS",
    "ENCODED_METHODS",
    "EXPORT_MEDIA_TYPES",
    "LIVE_METHODS",
    "OPERATION_METHODS",
    "AliasService",
    "AuthService",
    "ChangeService",
    "GraphService",
    "KeyService",
    "LensService",
    "OperatorService",
    "RelationshipService",
    "Services",
    "SubstrateService",
    "SystemService",
    "TransferService",
    "VersionService",
]

#: Checked between steps of a long operation; True when nobody waits for the answer any
#: more (the client went away): the operation raises :class:`bfx.budget.Cancelled`.
Cancelled = Callable[[], bool]

Number = int | float
Parameters = dict[str, Any] | None
ExportFormat = Literal["json", "ndjson"]

#: The media type of each export format.
EXPORT_MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
}


class SubstrateService(Protocol):
    """Substrates: records, invocation, batches, search."""

    def create(
        self, expression_type: str, expression_code: str, metadata: dict[str, Any] | None = None
    ) -> s.SubstrateRecord:
        """``create_substrate``: SandboxError/ValidationError for rejected code,
        DuplicateError (``details.substrate_id`` names the existing one), CollisionError."""
        ...

    async def create_async(
        self, expression_type: str, expression_code: str, metadata: dict[str, Any] | None = None
    ) -> s.SubstrateRecord:
        """:meth:`create` for a coroutine on the event loop (the server): the commit is
        awaited, shared with the creates queued meanwhile."""
        ...

    def compose(self, request: s.ComposeRequest) -> s.SubstrateRecord:
        """``compose``: creates the pipeline the request's steps make (a substrate of
        type ``pipeline``); ValidationError naming the step for a missing one, a bad
        ``as`` or parameters, DuplicateError when it exists."""
        ...

    def get(self, substrate_id: int) -> s.SubstrateRecord:
        """``get_substrate``: NotFoundError for an unknown id."""
        ...

    def get_encoded(self, substrate_id: int) -> s.Encoded:
        """``get_substrate`` as the server answers it: the record of :meth:`get`,
        already its JSON (the same bytes msgspec writes for it)."""
        ...

    def update(self, substrate_id: int, metadata: dict[str, Any]) -> s.SubstrateRecord:
        """``update_substrate``: ``metadata`` is a JSON merge patch (RFC 7396) of the
        stored metadata; NotFoundError, LimitExceededError past 64 KiB."""
        ...

    def delete(self, substrate_id: int) -> None:
        """``delete_substrate``: the substrate and its relationships; InUseError (409)
        while a pipeline has it as a step."""
        ...

    def list(self, query: s.ListQuery | None = None) -> s.SubstratePage:
        """``list_substrates``: a page by id; ``query.cursor`` is the last id of the page
        before (a malformed one is a 400 ``invalid_id``)."""
        ...

    def search(self, query: s.SearchQuery | None = None) -> s.SubstrateList:
        """``search``: by name (in metadata) and type, oldest first."""
        ...

    def query(self, request: s.QueryRequest) -> s.SubstrateList:
        """``query``: filters on type, metadata and creation time, sorted by creation."""
        ...

    def create_many(self, request: s.BatchCreate) -> s.BatchResult:
        """``create_substrates``: one item per input, in order (BatchError when atomic)."""
        ...

    def invoke(self, substrate_id: int, parameters: Parameters = None) -> s.InvokeResponse:
        """``invoke``: InvocationError when the expression fails."""
        ...

    def invoke_many(
        self, request: s.BatchInvoke, *, cancelled: Cancelled | None = None
    ) -> s.BatchInvokeResult:
        """``invoke_many``: within the service's time and answer-size budget
        (ResultTooLargeError past it); :class:`bfx.budget.Cancelled` once ``cancelled()``."""
        ...


class OperatorService(Protocol):
    """The operators on a substrate's value (DESIGN.md: divide, multiply, arithmetic)."""

    def divide(self, substrate_id: int) -> s.DivideResponse:
        """``divide``."""
        ...

    def multiply(self, dimension_values: Sequence[Number]) -> s.MultiplyResponse:
        """``multiply``."""
        ...

    def add(
        self, substrate_id: int, value: Number, parameters: Parameters = None
    ) -> s.ArithmeticResponse:
        """``add``."""
        ...

    def subtract(
        self, substrate_id: int, value: Number, parameters: Parameters = None
    ) -> s.ArithmeticResponse:
        """``subtract``."""
        ...

    def modulus(
        self, substrate_id: int, modulus: Number, parameters: Parameters = None
    ) -> s.ModulusResponse:
        """``modulus``."""
        ...

    def power(
        self, substrate_id: int, exponent: Number, parameters: Parameters = None
    ) -> s.PowerResponse:
        """``power``."""
        ...

    def root(
        self, substrate_id: int, degree: Number, parameters: Parameters = None
    ) -> s.PowerResponse:
        """``root``."""
        ...

    def promote(
        self,
        substrate_id: int,
        delta: int | None = None,
        change_description: str | None = None,
        attribute_value: int | None = None,
    ) -> s.PromoteResponse:
        """``promote``: pure computation on the id (it need not name a substrate);
        ValidationError for a number outside u64 or both delta and description."""
        ...

    def promote_sequence(
        self, substrate_id: int, deltas: Sequence[int], attribute_value: int | None = None
    ) -> s.PromoteSequenceResponse:
        """``promote_sequence``: the identity after each delta, in order."""
        ...


class RelationshipService(Protocol):
    """Typed edges between substrates, their lists and statistics."""

    def create(self, request: s.CreateRelationship) -> s.RelationshipRecord:
        """``create_relationship``: ids in the body are text; a malformed one is a 422
        ``invalid_id`` naming the field."""
        ...

    async def create_async(self, request: s.CreateRelationship) -> s.RelationshipRecord:
        """:meth:`create` for a coroutine on the event loop (the server)."""
        ...

    def get(self, relationship_id: int) -> s.RelationshipRecord:
        """``get_relationship``."""
        ...

    def delete(self, relationship_id: int) -> None:
        """``delete_relationship``."""
        ...

    def create_many(self, request: s.BatchRelate) -> s.BatchResult:
        """``create_relationships``."""
        ...

    def outgoing(self, substrate_id: int, query: s.EdgeQuery | None = None) -> s.RelationshipPage:
        """``outgoing``: ``rel_type`` and its alias ``type`` must agree when both given."""
        ...

    def incoming(self, substrate_id: int, query: s.EdgeQuery | None = None) -> s.RelationshipPage:
        """``incoming``."""
        ...

    def list(self, query: s.RelationshipQuery | None = None) -> s.RelationshipPage:
        """``list_relationships``: ``query.source_id``/``target_id`` are text from the URL
        (a malformed one is a 400 ``invalid_id``)."""
        ...

    def stats(self) -> s.RelationshipStats:
        """``relationship_stats``: one O(V + E) pass."""
        ...


class GraphService(Protocol):
    """Graph algorithms over the relationships (``docs/graph.md``)."""

    def traverse(self, request: s.TraverseRequest) -> s.TraverseResponse:
        """``traverse``: LimitExceededError past ``HTTP_MAX_NODES``."""
        ...

    def shortest_path(
        self, source_id: int, target_id: int, query: s.PathQuery | None = None
    ) -> s.PathResponse:
        """``shortest_path``: NoPathError (404 ``no_path``) when none exists."""
        ...

    def cycles(self, query: s.CyclesQuery | None = None) -> s.CyclesResponse:
        """``cycles``."""
        ...

    def components(self, query: s.ComponentsQuery | None = None) -> s.ComponentsResponse:
        """``components``."""
        ...

    def pagerank(self, query: s.PageRankQuery | None = None) -> s.PageRankResponse:
        """``pagerank``."""
        ...


class TransferService(Protocol):
    """The whole registry out and in."""

    def export(self, format: ExportFormat = "json") -> Iterator[bytes]:
        """``export``: the records as chunks of one JSON document or of NDJSON lines
        (media type: :data:`EXPORT_MEDIA_TYPES`), pulled lazily."""
        ...

    def import_records(self, body: bytes, content_type: bytes | None = None) -> s.ImportResult:
        """``import_records``: a JSON document (``content_type`` None or
        application/json) or NDJSON lines; another media type is a 415. The first
        invalid record raises, naming its ``index`` (and ``line`` for NDJSON); the
        records before it are imported."""
        ...


class ChangeService(Protocol):
    """The change feed (DESIGN.md §8): what was written, in order."""

    def read(self, query: s.ChangesQuery | None = None) -> s.ChangePage:
        """``changes``: the published changes after ``query.since``, oldest first, at
        most ``query.limit``; ChangesPrunedError (410) when they are no longer kept."""
        ...


class SystemService(Protocol):
    def health(self) -> s.Health:
        """``health``."""
        ...

    def ready(self) -> s.Ready:
        """``health_ready``: the store answers (else :class:`~bfx.errors.NotReadyError`)."""
        ...

    def metrics(self) -> s.Metrics:
        """``metrics``: the registry's totals, every worker's counters."""
        ...

    def prometheus(self, accept: str) -> tuple[bytes, str]:
        """``prometheus`` (and ``metrics`` asked for text): the exposition of every
        worker in the format ``accept`` names, and its content type."""
        ...

    def metrics_ticks(self) -> AsyncIterator[str]:
        """``metrics_stream`` and ``metrics_ws``: the ``metrics`` document as JSON text,
        once a second, until the worker shuts down or the reader falls behind; taking
        one is refused with :class:`~bfx.errors.OverloadedError` past the worker's bound
        of open streams (docs/observability.md)."""
        ...


class KeyService(Protocol):
    """API keys (DESIGN.md §7): the admin operations."""

    def create(
        self, name: str, scopes: Sequence[str], expires_at: datetime | None = None
    ) -> s.CreatedKey:
        """``create_key``: the one answer holding the key's secret. ValidationError for
        an unknown scope or an expiry not in the future."""
        ...

    def list(self) -> s.KeyList:
        """``list_keys``: keys not revoked, without secrets."""
        ...

    def revoke(self, key_id: str) -> None:
        """``revoke_key``: NotFoundError when no such key is left to revoke."""
        ...


class AuthService(Protocol):
    """Users' login and who a caller is (DESIGN.md §7)."""

    def login(self, username: str, password: str, address: str = "unknown") -> s.AccessToken:
        """``login``: a short-lived bearer token. UnauthorizedError, the same for an
        unknown user and a wrong password; RateLimitedError after too many failures for
        the name or the client ``address``."""
        ...

    def me(self, caller: Principal | None) -> s.Me:
        """``me``: the caller's principal and scopes (None: authentication is off)."""
        ...


class VersionService(Protocol):
    """Version chains (DESIGN §9): a new version, the chain, a rollback."""

    def create(
        self, substrate_id: int, expression_code: str, change_description: str | None = None
    ) -> s.VersionCreated:
        """``create_version``: NotFoundError, SandboxError, DuplicateError (the code is a
        substrate already; ``details.version`` when a member of this chain)."""
        ...

    def list(self, substrate_id: int) -> s.VersionList:
        """``versions``: the chain of any member, oldest first."""
        ...

    def rollback(self, substrate_id: int, version_id: int) -> s.VersionList:
        """``rollback``: ValidationError (``reason: not_in_chain``) outside the chain."""
        ...


class AliasService(Protocol):
    """Aliases: names that follow a substrate's chain head."""

    def put(self, name: str, substrate_id: str) -> s.AliasRecord:
        """``put_alias``: ValidationError (name, id), NotFoundError (substrate)."""
        ...

    def get(self, name: str) -> s.AliasRecord:
        """``get_alias``: NotFoundError."""
        ...

    def delete(self, name: str) -> None:
        """``delete_alias``: NotFoundError."""
        ...

    def invoke(self, name: str, parameters: dict[str, Any] | None = None) -> s.InvokeResponse:
        """``invoke_alias``: AliasTargetDeletedError when the substrate was deleted."""
        ...


class LensService(Protocol):
    """Lenses: stored sandboxed expressions over a substrate's value."""

    def create(
        self,
        name: str,
        expression_code: str,
        parameters: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> s.LensRecord:
        """``create_lens``: SandboxError, ValidationError, DuplicateError."""
        ...

    def list(self) -> s.LensList:
        """``list_lenses``: the built-ins, then the stored ones by name."""
        ...

    def get(self, name: str) -> s.LensRecord:
        """``get_lens``: NotFoundError."""
        ...

    def delete(self, name: str) -> None:
        """``delete_lens``: NotFoundError; ConflictError for a built-in."""
        ...

    def apply(
        self,
        substrate_id: int,
        lens_name: str,
        parameters: dict[str, Any] | None = None,
        dimension: int | None = None,
        substrate_parameters: dict[str, Any] | None = None,
    ) -> s.LensApplied:
        """``apply_lens``: NotFoundError (substrate, lens), InvocationError."""
        ...


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the API does, by noun: what handlers and clients are given."""

    substrates: SubstrateService
    operators: OperatorService
    relationships: RelationshipService
    graph: GraphService
    transfer: TransferService
    system: SystemService
    keys: KeyService
    auth: AuthService
    versions: VersionService
    aliases: AliasService
    lenses: LensService
    changes: ChangeService


#: The live streams' operations (not client operations: ``Operation.live``) -> the
#: service method that feeds them.
LIVE_METHODS: dict[str, tuple[str, str]] = {
    "metrics_stream": ("system", "metrics_ticks"),
    "metrics_ws": ("system", "metrics_ticks"),
    # The change stream polls the feed's pages (bfx.asgi.change_stream).
    "changes_stream": ("changes", "read"),
}

#: The single creates (``Operation.runs == "write"``) -> the coroutine the server awaits
#: for them (its commit shared with the creates of the same loop pass); clients and
#: the library call the operation's plain method (:data:`OPERATION_METHODS`).
AWAITED_METHODS: dict[str, tuple[str, str]] = {
    "create_substrate": ("substrates", "create_async"),
    "create_relationship": ("relationships", "create_async"),
}

#: Operations the server answers with a record already encoded (``Encoded``: the core
#: writes it, skipping the Struct and its encoding) -> that method; clients and the
#: library call the operation's plain method (:data:`OPERATION_METHODS`).
ENCODED_METHODS: dict[str, tuple[str, str]] = {
    "get_substrate": ("substrates", "get_encoded"),
}

#: Operation name (``bfx.api.operations``) -> (attribute of :class:`Services`, method).
OPERATION_METHODS: dict[str, tuple[str, str]] = {
    # system
    "health": ("system", "health"),
    "health_ready": ("system", "ready"),
    "metrics": ("system", "metrics"),
    "prometheus": ("system", "prometheus"),
    # keys
    "create_key": ("keys", "create"),
    "list_keys": ("keys", "list"),
    "revoke_key": ("keys", "revoke"),
    # login
    "login": ("auth", "login"),
    "me": ("auth", "me"),
    # substrates
    "create_substrate": ("substrates", "create"),
    "list_substrates": ("substrates", "list"),
    "get_substrate": ("substrates", "get"),
    "update_substrate": ("substrates", "update"),
    "delete_substrate": ("substrates", "delete"),
    "compose": ("substrates", "compose"),
    "invoke": ("substrates", "invoke"),
    "create_substrates": ("substrates", "create_many"),
    "invoke_many": ("substrates", "invoke_many"),
    "search": ("substrates", "search"),
    "query": ("substrates", "query"),
    # operators
    "divide": ("operators", "divide"),
    "multiply": ("operators", "multiply"),
    "add": ("operators", "add"),
    "subtract": ("operators", "subtract"),
    "modulus": ("operators", "modulus"),
    "power": ("operators", "power"),
    "root": ("operators", "root"),
    "promote": ("operators", "promote"),
    "promote_sequence": ("operators", "promote_sequence"),
    # transfer
    "export": ("transfer", "export"),
    "import_records": ("transfer", "import_records"),
    # relationships
    "create_relationship": ("relationships", "create"),
    "list_relationships": ("relationships", "list"),
    "create_relationships": ("relationships", "create_many"),
    "relationship_stats": ("relationships", "stats"),
    "outgoing": ("relationships", "outgoing"),
    "incoming": ("relationships", "incoming"),
    "get_relationship": ("relationships", "get"),
    "delete_relationship": ("relationships", "delete"),
    # graph
    "traverse": ("graph", "traverse"),
    "shortest_path": ("graph", "shortest_path"),
    "cycles": ("graph", "cycles"),
    "components": ("graph", "components"),
    "pagerank": ("graph", "pagerank"),
    # versions, aliases, lenses
    "create_version": ("versions", "create"),
    "versions": ("versions", "list"),
    "rollback": ("versions", "rollback"),
    "put_alias": ("aliases", "put"),
    "get_alias": ("aliases", "get"),
    "delete_alias": ("aliases", "delete"),
    "invoke_alias": ("aliases", "invoke"),
    "create_lens": ("lenses", "create"),
    "list_lenses": ("lenses", "list"),
    "get_lens": ("lenses", "get"),
    "delete_lens": ("lenses", "delete"),
    "apply_lens": ("lenses", "apply"),
    # change feed
    "changes": ("changes", "read"),
}
