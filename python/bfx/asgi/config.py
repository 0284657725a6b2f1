"""Service settings, read from ``BFX_*`` environment variables.

Granian starts one interpreter per worker and each imports the app through a factory,
so the environment is the one channel every worker shares: ``bfx serve`` writes the
variables, :func:`Settings.from_env` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import msgspec

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
    # -- Logging.
    #: One access-log line per request on stderr.
    access_log: bool = True
    #: ``text`` or ``json`` (one JSON object per line).
    log_format: str = "text"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``BFX_BODY_LIMIT``, ``BFX_IMPORT_BODY_LIMIT``,
        ``BFX_CORS_ORIGINS`` (comma separated), the storage, ``BFX_SQLITE_SYNC`` and
        ``BFX_LOG_LEVEL``; the slow-client bounds ``BFX_BODY_TIMEOUT``,
        ``BFX_HEADER_TIMEOUT`` (seconds), ``BFX_KEEP_ALIVE`` (``1``/``0``),
        ``BFX_MAX_CONNECTIONS`` and ``BFX_BACKLOG``.

        Storage, first found: ``BFX_STORAGE`` (any locator, ``memory`` included),
        ``BFX_DATABASE_URL`` (PostgreSQL), ``BFX_DATA_DIR``; with none of them, the
        service's default data directory ``./bfx-data``."""
        env = os.environ if environ is None else environ
        kwargs: dict[str, object] = {}
        if env.get("BFX_BODY_LIMIT"):
            kwargs["body_limit"] = parse_size(env["BFX_BODY_LIMIT"])
        if env.get("BFX_IMPORT_BODY_LIMIT"):
            kwargs["import_body_limit"] = parse_size(env["BFX_IMPORT_BODY_LIMIT"])
        if env.get("BFX_CORS_ORIGINS"):
            kwargs["cors_origins"] = split_origins(env["BFX_CORS_ORIGINS"])
        kwargs["storage"] = (
            env.get("BFX_STORAGE")
            or env.get("BFX_DATABASE_URL")
            or env.get("BFX_DATA_DIR")
            or DEFAULT_DATA_DIR
        )
        if env.get("BFX_SQLITE_SYNC"):
            kwargs["sqlite_synchronous"] = env["BFX_SQLITE_SYNC"].lower()
        if env.get("BFX_LOG_LEVEL"):
            kwargs["log_level"] = env["BFX_LOG_LEVEL"].lower()
        for name in ("body_timeout", "header_timeout"):
            if env.get(f"BFX_{name.upper()}"):
                kwargs[name] = parse_seconds(env[f"BFX_{name.upper()}"])
        for name in ("max_connections", "backlog"):
            if env.get(f"BFX_{name.upper()}"):
                kwargs[name] = parse_count(env[f"BFX_{name.upper()}"])
        if env.get("BFX_KEEP_ALIVE"):
            kwargs["keep_alive"] = parse_bool(env["BFX_KEEP_ALIVE"])
        for name in ("max_batch_items", "max_body_depth", "heavy_threads", "heavy_queue"):
            if env.get(f"BFX_{name.upper()}"):
                kwargs[name] = _admission_count(name, env[f"BFX_{name.upper()}"])
        if env.get("BFX_MAX_ANSWER_BYTES"):
            kwargs["max_answer_bytes"] = parse_size(env["BFX_MAX_ANSWER_BYTES"])
        if env.get("BFX_BATCH_TIME_BUDGET"):
            kwargs["batch_time_budget"] = parse_seconds(env["BFX_BATCH_TIME_BUDGET"])
        if env.get("BFX_ACCESS_LOG"):
            kwargs["access_log"] = parse_bool(env["BFX_ACCESS_LOG"])
        if env.get("BFX_LOG_FORMAT"):
            kwargs["log_format"] = env["BFX_LOG_FORMAT"].lower()
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """The inverse of :meth:`from_env`, for handing settings to worker processes."""
        env = {
            "BFX_BODY_LIMIT": str(self.body_limit),
            "BFX_IMPORT_BODY_LIMIT": str(self.import_body_limit),
            "BFX_CORS_ORIGINS": ",".join(self.cors_origins),
            "BFX_LOG_LEVEL": self.log_level,
            "BFX_STORAGE": self.storage,
            "BFX_SQLITE_SYNC": self.sqlite_synchronous,
            "BFX_BODY_TIMEOUT": repr(self.body_timeout),
            "BFX_HEADER_TIMEOUT": repr(self.header_timeout),
            "BFX_KEEP_ALIVE": "1" if self.keep_alive else "0",
            "BFX_MAX_CONNECTIONS": str(self.max_connections),
            "BFX_BACKLOG": str(self.backlog),
            "BFX_MAX_BATCH_ITEMS": str(self.max_batch_items),
            "BFX_MAX_ANSWER_BYTES": str(self.max_answer_bytes),
            "BFX_BATCH_TIME_BUDGET": repr(self.batch_time_budget),
            "BFX_MAX_BODY_DEPTH": str(self.max_body_depth),
            "BFX_HEAVY_THREADS": str(self.heavy_threads),
            "BFX_HEAVY_QUEUE": str(self.heavy_queue),
            "BFX_ACCESS_LOG": "1" if self.access_log else "0",
            "BFX_LOG_FORMAT": self.log_format,
        }
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


def _admission_count(name: str, text: str) -> int:
    if name == "heavy_queue":  # 0 is allowed: a busy pool then answers 503 at once
        raw = text.strip()
        if not raw.isdigit():
            raise ValueError(f"not a whole number: {text!r}")
        return int(raw)
    return parse_count(text)
