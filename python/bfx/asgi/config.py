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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``BFX_BODY_LIMIT``, ``BFX_IMPORT_BODY_LIMIT``,
        ``BFX_CORS_ORIGINS`` (comma separated), the storage, ``BFX_SQLITE_SYNC`` and
        ``BFX_LOG_LEVEL``.

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
