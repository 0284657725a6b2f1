"""The local :class:`~bfx.services.interfaces.KeyService`: API keys in the registry's
store (docs/security.md). Only a keyed hash of a key is stored; the secret is in the
one answer of :meth:`LocalKeys.create`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bfx import errors
from bfx.api import types as s
from bfx.security.keys import KeyRecord, digest, is_key_id, new_key, now_us, parse_scopes

if TYPE_CHECKING:
    from bfx.storage import Store

__all__ = ["LocalKeys", "key_answer"]


def _time(us: int | None) -> datetime | None:
    return None if us is None else datetime.fromtimestamp(us / 1e6, UTC)


def key_answer(record: KeyRecord) -> s.ApiKey:
    return s.ApiKey(
        key_id=record.key_id,
        name=record.name,
        scopes=list(record.scopes),
        created_at=_time(record.created_us),  # type: ignore[arg-type]
        expires_at=_time(record.expires_us),
    )


class LocalKeys:
    """Over the store ``store()`` returns (the registry's; ``bfx keys`` passes one
    opened without an arena)."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._get_store = store

    @property
    def _store(self) -> Store:
        return self._get_store()

    def create(
        self, name: str, scopes: Sequence[str], expires_at: datetime | None = None
    ) -> s.CreatedKey:
        """``create_key``: ValidationError for an empty name, an unknown scope or an
        expiry that is not in the future."""
        name = name.strip()
        if not name or len(name) > 100:
            raise errors.ValidationError("name must be 1-100 characters", {"field": "name"})
        granted = parse_scopes(scopes)
        created = now_us()
        expires_us = None
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise errors.ValidationError(
                    "expires_at needs a time zone", {"field": "expires_at"}
                )
            expires_us = int(expires_at.timestamp() * 1e6)
            if expires_us <= created:
                raise errors.ValidationError(
                    "expires_at must be in the future", {"field": "expires_at"}
                )
        key_id, key = new_key()
        record = KeyRecord(
            key_id=key_id,
            name=name,
            scopes=granted,
            digest=digest(self._store.key_secret, key),
            created_us=created,
            expires_us=expires_us,
        )
        self._store.add_key(record)
        shown = key_answer(record)
        return s.CreatedKey(
            key_id=shown.key_id,
            name=shown.name,
            scopes=shown.scopes,
            created_at=shown.created_at,
            expires_at=shown.expires_at,
            secret=key,
        )

    def list(self) -> s.KeyList:
        """``list_keys``: keys not revoked, oldest first, without secrets."""
        return s.KeyList(keys=[key_answer(r) for r in self._store.list_keys()])

    def revoke(self, key_id: str) -> None:
        """``revoke_key``: NotFoundError for a key id that names no key not yet revoked."""
        key_id = key_id.strip().lower()
        if not is_key_id(key_id) or not self._store.revoke_key(key_id, now_us()):
            raise errors.NotFoundError(f"no key {key_id!r} to revoke", {"key_id": key_id})
