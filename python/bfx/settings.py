"""Service settings, read from ``BFX_*`` environment variables (and the size, time and
count grammars their flags share).

Granian starts one interpreter per worker and each imports the app through a factory,
so the environment is the one channel every worker shares: ``bfx serve`` writes the
variables, :func:`Settings.from_env` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from bfx.ratelimit import parse_rate, parse_rate_storage

__all__ = ["Settings"]

MIB = 1024 * 1024
#: Where ``bfx serve`` keeps its data when told nothing else (relative to the cwd).
DEFAULT_DATA_DIR = "bfx-data"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the HTTP layer can be configured with."""

    #: Largest request body accepted (bytes); larger ones are a 413.
    body_limit: int = MIB
    #: ``POST /substrates/import`` carries whole exports, so it has its own, larger cap.
    import_body_limit: int = 64 * MIB
    #: Origins allowed to call the API from a browser; empty means no cross-origin access.
    #: ``"*"`` allows every origin.
    cors_origins: tuple[str, ...] = ()
    #: Where records live: ``"memory"``, a data directory (embedded SQLite), or a
    #: ``postgresql://`` URL (see :func:`bfx.storage.open_store`).
    storage: str = "memory"
    #: SQLite's ``synchronous``: ``normal`` survives ``kill -9``; ``full`` also a power cut.
    sqlite_synchronous: str = "normal"
    #: PostgreSQL: connections per worker for exports (a pool); one more export waits
    #: up to the connect timeout, then 503 ``overloaded``.
    export_connections: int = 4
    log_level: str = "info"
    # -- Slow and idle clients (docs/http.md "Limits"). The first is enforced by the app,
    # -- the others are handed to Granian by ``bfx serve``.
    #: Seconds a request body may take to arrive in full; then 408 ``request_timeout``.
    body_timeout: float = 10.0
    #: Seconds a client may take to send a request's headers (Granian closes the connection).
    header_timeout: float = 10.0
    #: Whether HTTP/1.1 connections are kept open between requests.
    keep_alive: bool = True
    #: Open connections per worker (Granian's ``backpressure``); more wait in the backlog.
    max_connections: int = 4096
    #: Connections the kernel queues for accepting (the listen backlog).
    backlog: int = 4096
    # -- Admission of work (docs/http.md "Limits"): what one request may ask for.
    #: Items in one batch (substrates, relationships, invocations); more is a 413.
    max_batch_items: int = 1000
    #: Bytes of a batch invoke's answer; computing stops past it with a 422.
    max_answer_bytes: int = 16 * MIB
    #: Seconds one batch invoke may spend in all (items not started in time fail).
    batch_time_budget: float = 5.0
    #: Nesting depth of any JSON request body (arrays and objects); deeper is a 422.
    max_body_depth: int = 32
    #: Threads for heavy routes (batches, search, query, graph algorithms, export, import).
    heavy_threads: int = 2
    #: Heavy requests that may wait for a thread; past it a 503 ``overloaded``.
    heavy_queue: int = 16
    # -- Metrics and logging (docs/observability.md).
    #: Count requests for the metrics (the metrics middleware); off: not assembled.
    metrics: bool = True
    #: One access-log line per request on stderr.
    access_log: bool = True
    #: ``text`` or ``json`` (one JSON object per line).
    log_format: str = "text"
    #: Bytes of access-log lines that may wait for a slow reader of stderr (a pipe
    #: nobody drains); past it lines are dropped and counted, never requests held up.
    access_log_buffer: int = 4 * MIB
    # -- Rate limits (docs/security.md "Rate limits").
    #: Per principal, e.g. ``600/minute``; empty: no rate limit.
    rate_limit: str = ""
    #: ``memory`` (per worker process) or a ``redis://`` URL (shared by workers and nodes).
    rate_limit_storage: str = "memory"
    # -- Security (docs/security.md).
    #: ``off`` (no credential needed) or ``required`` (an API key with the operation's
    #: scope on every route but health and the docs).
    auth: str = "off"
    # -- Result cache (docs/domain.md "Result cache").
    #: Bytes of invocation results each worker keeps (LRU); 0: off.
    result_cache_size: int = 64 * MIB
    # -- Pipelines (docs/domain.md "Pipelines").
    #: How deeply pipelines may nest (a pipeline of plain substrates has depth 1).
    pipeline_max_depth: int = 8
    # -- Users, login and JWTs (docs/security.md "Users and login", "JWT").
    #: HS256 key of bfx-issued tokens (env only: a flag would show in ``ps``); empty:
    #: the secret made once and kept in the store.
    jwt_secret: str = ""
    #: Seconds a bfx-issued token is valid.
    jwt_ttl: int = 900
    #: An external issuer's PEM public key file, or its JWKS file (at most one).
    jwt_public_key: str = ""
    jwt_jwks: str = ""
    #: The ``iss`` and ``aud`` an external issuer's tokens must carry.
    jwt_issuer: str = ""
    jwt_audience: str = ""
    #: Failed logins allowed per username and per client address (per worker).
    login_failures_per_user: str = "10/15minutes"
    login_failures_per_address: str = "50/15minutes"
    # -- Change feed (docs/observability.md "Change feed", docs/storage.md "Retention").
    #: Change-log entries kept; older ones are pruned (0: never). A follower behind
    #: them reloads in full; a feed ``since`` before them is a 410 ``changes_pruned``.
    changes_retention: int = 1_000_000
    #: Open streams per worker, of each kind (``/changes/stream``; the metric SSE and
    #: WebSocket streams together); past it a 503 ``overloaded``.
    stream_clients: int = 64
    #: Seconds between a stream's looks at the log (and the longest a shutdown waits).
    stream_poll: float = 0.5
    # -- Serving.
    #: Granian's interface for ``bfx serve``: ``rsgi`` (its own, faster) or ``asgi``; both
    #: drive the same request pipeline (docs/architecture.md).
    interface: str = "rsgi"
    #: The event loop of each ``bfx serve`` worker: ``uvloop`` (a dependency; libuv
    #: under asyncio's interface, a loop pass costs a fraction of asyncio's own) or
    #: ``asyncio`` (the standard library's, if uvloop misbehaves somewhere).
    loop: str = "uvloop"
    #: Whether ``bfx serve`` loads the arena once in its main process and forks the
    #: workers from it, so they share its memory (docs/storage.md, "Workers share the
    #: arena"); off: each worker loads its own.
    shared_arena: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the ``BFX_*`` variables of :data:`ENV_VARS` (a blank one counts
        as unset).

        Storage, first found: ``BFX_STORAGE`` (any locator, ``memory`` included),
        ``BFX_DATABASE_URL`` (PostgreSQL), ``BFX_DATA_DIR``; with none of them, the
        service's default data directory ``./bfx-data``."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        for name, (var, parse, _) in ENV_VARS.items():
            if env.get(var):
                try:
                    kwargs[name] = parse(env[var])
                except ValueError as exc:
                    # Named, so that `bfx serve` can say which variable is wrong (exit 2).
                    raise ValueError(f"{var}: {exc}") from None
        kwargs["storage"] = (
            env.get("BFX_STORAGE")
            or env.get("BFX_DATABASE_URL")
            or env.get("BFX_DATA_DIR")
            or DEFAULT_DATA_DIR
        )
        return cls(**kwargs)  # type: ignore[arg-type]

    def open_store(self) -> Any:
        """The store the settings name (opened, schema checked; not yet loaded)."""
        from bfx.storage import is_memory, open_store

        options: dict[str, Any] = {}
        if self.storage.startswith(("postgresql://", "postgres://")):
            options["export_connections"] = self.export_connections
        elif not is_memory(self.storage):
            options["synchronous"] = self.sqlite_synchronous
        store = open_store(self.storage, **options)
        store.set_retention(self.changes_retention)
        return store

    def open_registry(self) -> Any:
        """The registry the service runs on: the one place where storage gets chosen."""
        from bfx import Registry

        return Registry(
            storage=self.open_store(),
            result_cache_size=self.result_cache_size,
            pipeline_max_depth=self.pipeline_max_depth,
        )

    @property
    def shares_state_across_processes(self) -> bool:
        """Whether several worker processes see one registry: yes for a database
        (each follows its change log), no for the in-memory store."""
        from bfx.storage import is_memory

        return not is_memory(self.storage)

    def to_env(self) -> dict[str, str]:
        """The inverse of :meth:`from_env`, for handing settings to worker processes."""
        env = {var: show(getattr(self, name)) for name, (var, _, show) in ENV_VARS.items()}
        env["BFX_STORAGE"] = self.storage
        return env


_UNITS = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KB": 1024,
    "KIB": 1024,
    "M": MIB,
    "MB": MIB,
    "MIB": MIB,
    "G": 1024 * MIB,
    "GB": 1024 * MIB,
    "GIB": 1024 * MIB,
}


def parse_size(text: str) -> int:
    """``"1048576"``, ``"512K"``, ``"1MiB"``, ``"2 MB"`` -> bytes (binary units)."""
    raw = text.strip().upper().replace(" ", "")
    digits = raw.rstrip("BKMGI")
    unit = raw[len(digits) :]
    if not digits.isdigit() or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use bytes or K/M/G suffixes)")
    size = int(digits) * _UNITS[unit]
    if size < 1:
        raise ValueError(f"a size must be positive: {text!r}")
    return size


def split_origins(text: str) -> tuple[str, ...]:
    """Comma- or space-separated origins, trailing slashes dropped (browsers send none)."""
    parts = text.replace(",", " ").split()
    return tuple(p.rstrip("/") if p != "*" else p for p in parts)


def parse_seconds(text: str) -> float:
    """``"10"``, ``"2.5"``, ``"500ms"``, ``"30s"`` -> seconds (positive, finite)."""
    raw = text.strip().lower()
    scale = 1.0
    if raw.endswith("ms"):
        raw, scale = raw[:-2], 0.001
    elif raw.endswith("s"):
        raw = raw[:-1]
    try:
        value = float(raw) * scale
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (use seconds, e.g. 10, 2.5, 500ms)") from None
    if not 0 < value <= 86400:  # also refuses nan and inf
        raise ValueError(f"a duration must be more than 0 and at most 1 day: {text!r}")
    return value


def parse_count(text: str) -> int:
    """A positive whole number, e.g. a connection count."""
    raw = text.strip()
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"not a positive whole number: {text!r}")
    return int(raw)


def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``on/off``."""
    raw = text.strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no value: {text!r} (use 1 or 0)")


def parse_cache_size(text: str) -> int:
    """A size as :func:`parse_size`, or ``0``/``off`` to turn a cache off."""
    if text.strip().lower() in ("0", "off"):
        return 0
    return parse_size(text)


def parse_whole(text: str) -> int:
    """A whole number, 0 included (a queue that may be empty)."""
    raw = text.strip()
    if not raw.isdigit():
        raise ValueError(f"not a whole number: {text!r}")
    return int(raw)


#: ``--auth`` / ``BFX_AUTH`` values.
AUTH_MODES = ("off", "required")


def parse_auth(text: str) -> str:
    """``off`` or ``required``: anything else stops the service rather than serving
    without the authentication someone meant to ask for."""
    raw = text.strip().lower()
    if raw not in AUTH_MODES:
        raise ValueError(f"not an auth mode: {text!r} (use off or required)")
    return raw


def parse_jwt_secret(text: str) -> str:
    """At least 32 characters (RFC 7518: an HS256 key of at least 256 bits)."""
    if len(text.encode()) < 32:
        raise ValueError("a JWT secret needs at least 32 characters (e.g. openssl rand -hex 32)")
    return text


def parse_ttl(text: str) -> int:
    """A token lifetime: ``900``, ``15m``, ``1h`` -> seconds, from 1 minute to 1 day."""
    from bfx.security.keys import parse_duration

    raw = text.strip()
    seconds = int(raw) if raw.isdigit() else parse_duration(raw)
    if not 60 <= seconds <= 86400:
        raise ValueError(f"a token lifetime is from 1 minute to 1 day: {text!r}")
    return seconds


def _stripped(text: str) -> str:
    return text.strip()


INTERFACES = ("rsgi", "asgi")
LOOPS = ("uvloop", "asyncio")


def parse_loop(text: str) -> str:
    """``uvloop`` or ``asyncio``."""
    raw = text.strip().lower()
    if raw not in LOOPS:
        raise ValueError(f"not an event loop: {text!r} (use uvloop or asyncio)")
    return raw


def parse_interface(text: str) -> str:
    """``rsgi`` or ``asgi``."""
    raw = text.strip().lower()
    if raw not in INTERFACES:
        raise ValueError(f"not an interface: {text!r} (use rsgi or asgi)")
    return raw


def parse_pipeline_depth(text: str) -> int:
    """How deeply pipelines may nest: 1 to 64."""
    from bfx.domain.pipelines import MAX_DEPTH_LIMIT

    raw = text.strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DEPTH_LIMIT:
        raise ValueError(f"not a pipeline depth: {text!r} (a whole number, 1 to {MAX_DEPTH_LIMIT})")
    return int(raw)


def _lower(text: str) -> str:
    return text.strip().lower()


def _flag(value: bool) -> str:
    return "1" if value else "0"


#: Each setting's variable, how to read it and how to write it back (storage aside):
#: the one list ``from_env``, ``to_env`` and the docs' flag tables follow.
ENV_VARS: dict[str, tuple[str, Callable[[str], Any], Callable[[Any], str]]] = {
    "body_limit": ("BFX_BODY_LIMIT", parse_size, str),
    "import_body_limit": ("BFX_IMPORT_BODY_LIMIT", parse_size, str),
    "cors_origins": ("BFX_CORS_ORIGINS", split_origins, ",".join),
    "sqlite_synchronous": ("BFX_SQLITE_SYNC", _lower, str),
    "log_level": ("BFX_LOG_LEVEL", _lower, str),
    "body_timeout": ("BFX_BODY_TIMEOUT", parse_seconds, repr),
    "header_timeout": ("BFX_HEADER_TIMEOUT", parse_seconds, repr),
    "keep_alive": ("BFX_KEEP_ALIVE", parse_bool, _flag),
    "max_connections": ("BFX_MAX_CONNECTIONS", parse_count, str),
    "backlog": ("BFX_BACKLOG", parse_count, str),
    "max_batch_items": ("BFX_MAX_BATCH_ITEMS", parse_count, str),
    "max_answer_bytes": ("BFX_MAX_ANSWER_BYTES", parse_size, str),
    "batch_time_budget": ("BFX_BATCH_TIME_BUDGET", parse_seconds, repr),
    "max_body_depth": ("BFX_MAX_BODY_DEPTH", parse_count, str),
    "heavy_threads": ("BFX_HEAVY_THREADS", parse_count, str),
    "heavy_queue": ("BFX_HEAVY_QUEUE", parse_whole, str),
    "export_connections": ("BFX_EXPORT_CONNECTIONS", parse_count, str),
    "metrics": ("BFX_METRICS", parse_bool, _flag),
    "access_log": ("BFX_ACCESS_LOG", parse_bool, _flag),
    "log_format": ("BFX_LOG_FORMAT", _lower, str),
    "access_log_buffer": ("BFX_ACCESS_LOG_BUFFER", parse_size, str),
    "rate_limit": ("BFX_RATE_LIMIT", parse_rate, str),
    "rate_limit_storage": ("BFX_RATE_LIMIT_STORAGE", parse_rate_storage, str),
    "auth": ("BFX_AUTH", parse_auth, str),
    "result_cache_size": ("BFX_RESULT_CACHE_SIZE", parse_cache_size, str),
    "pipeline_max_depth": ("BFX_PIPELINE_MAX_DEPTH", parse_pipeline_depth, str),
    "jwt_secret": ("BFX_JWT_SECRET", parse_jwt_secret, str),
    "jwt_ttl": ("BFX_JWT_TTL", parse_ttl, str),
    "jwt_public_key": ("BFX_JWT_PUBLIC_KEY", _stripped, str),
    "jwt_jwks": ("BFX_JWT_JWKS", _stripped, str),
    "jwt_issuer": ("BFX_JWT_ISSUER", _stripped, str),
    "jwt_audience": ("BFX_JWT_AUDIENCE", _stripped, str),
    "login_failures_per_user": ("BFX_LOGIN_FAILURES_PER_USER", parse_rate, str),
    "login_failures_per_address": ("BFX_LOGIN_FAILURES_PER_ADDRESS", parse_rate, str),
    "interface": ("BFX_INTERFACE", parse_interface, str),
    "loop": ("BFX_LOOP", parse_loop, str),
    "changes_retention": ("BFX_CHANGES_RETENTION", parse_whole, str),
    "stream_clients": ("BFX_STREAM_CLIENTS", parse_count, str),
    "stream_poll": ("BFX_STREAM_POLL", parse_seconds, repr),
    "shared_arena": ("BFX_SHARED_ARENA", parse_bool, _flag),
}
