"""Who is calling: authenticators turn a credential into a :class:`Principal`.

The middleware (``bfx.asgi.middleware.auth``) asks each authenticator of its list in
turn; the first that claims the credential decides. :class:`KeyAuthenticator` claims API
keys (``bfx_...``); a JWT authenticator would claim tokens and stand beside it.

Nothing an answer says, nor how long it takes, tells a caller whether a key id exists:
an unknown key id is hashed and compared like a known one, against a dummy digest, with
``hmac.compare_digest``; every failure is the same 401.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bfx import errors
from bfx.security.keys import KEY_PREFIX, KeyRecord, grants, hasher, now_us, parse_key_id

__all__ = ["Authenticator", "KeyAuthenticator", "Principal", "credential_of", "unauthorized"]

#: Longest credential read: a key is 64 characters, a JWT a few hundred.
MAX_CREDENTIAL = 4096
#: Verified keys a worker remembers (the map is emptied when full).
REMEMBERED = 4096


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its name in logs (a key id, never a secret), its scopes,
    and ``allowed``: every scope an operation may require that it passes (what
    :func:`~bfx.security.keys.grants` says, worked out once per principal rather than
    per request)."""

    name: str
    scopes: frozenset[str]
    allowed: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        from bfx.api.types import SCOPES  # the API table imports much more than this module

        every = (*SCOPES, "authenticated")
        object.__setattr__(self, "allowed", frozenset(s for s in every if grants(self.scopes, s)))


class Authenticator(Protocol):
    def authenticate(self, credential: str) -> Principal | None:
        """The principal the credential names; None when it is not this
        authenticator's kind; raises :class:`~bfx.errors.UnauthorizedError` when it is
        but does not hold (unknown, malformed, expired, revoked)."""
        ...


def unauthorized() -> errors.UnauthorizedError:
    # One message for every failure: it must not say which check failed.
    return errors.UnauthorizedError(
        "a valid credential is required (X-API-Key or Authorization: Bearer)"
    )


def credential_of(header: Callable[[bytes], bytes | None]) -> str | None:
    """The credential of a request (``header``: the call's header lookup, whichever
    protocol adapter made it): ``X-API-Key``, else ``Authorization: Bearer``; None
    without either. A header that is there but unreadable is a 401."""
    raw = header(b"x-api-key")
    if raw is not None:
        raw = raw.strip()  # a pasted key often carries a stray space or newline
    else:
        auth = header(b"authorization")
        if auth is None:
            return None
        scheme, _, rest = auth.partition(b" ")
        if scheme.lower() != b"bearer":
            raise unauthorized()
        raw = rest.strip()
    if not raw or len(raw) > MAX_CREDENTIAL:
        raise unauthorized()
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise unauthorized() from None


class KeySource(Protocol):
    """Where the usable keys are (a store): read as an attribute on each request, not
    through a call, since the store replaces the map whole on a reload."""

    keys: Mapping[str, KeyRecord]


class KeyAuthenticator:
    """API keys, checked against the store's in-memory key map (``Store.keys``, which
    the change log keeps current in every worker): a keyed hash and a dict lookup, no
    I/O (about 2 µs).

    A key that verified is remembered (at most :data:`REMEMBERED` of them), so the next
    request with it skips the parse and the hash: it is let through only while the key
    map still holds the very record it verified against (a revocation or a new record
    replaces it) and that record is still usable (not expired). Only keys that matched
    their digest are remembered, so a guess never takes the short path."""

    def __init__(self, source: KeySource, secret: bytes) -> None:
        self.source = source
        self._hash = hasher(secret)
        self._dummy = self._hash("")
        #: Keys that verified, by the key as sent (what a request hands the middleware,
        #: which looks here first), with the record they verified against.
        self.remembered: dict[str, tuple[KeyRecord, Principal]] = {}

    def recall(self, sent: str) -> Principal | None:
        """The principal of a key that verified before and still holds (the key map
        still has the very record it verified against, and it has not expired); None
        otherwise. The middleware asks this first: a dict lookup, no parse, no hash."""
        hit = self.remembered.get(sent)
        if hit is None:
            return None
        record, principal = hit
        expires = record.expires_us  # record.usable(), inlined: the hot path
        if self.source.keys.get(record.key_id) is record and (
            expires is None or now_us() < expires
        ):
            return principal
        del self.remembered[sent]
        return None

    def authenticate(self, credential: str) -> Principal | None:
        principal = self.recall(credential)
        if principal is not None:
            return principal
        if not credential.startswith(KEY_PREFIX):
            return None
        key_id = parse_key_id(credential)
        found = self.source.keys.get(key_id) if key_id is not None else None
        # Hash and compare whatever was found, so that an unknown id costs the same.
        expected = found.digest if found is not None else self._dummy
        matches = hmac.compare_digest(expected, self._hash(credential))
        if found is None or not matches or not found.usable():
            raise unauthorized()
        principal = Principal(found.key_id, frozenset(found.scopes))
        if len(self.remembered) >= REMEMBERED:
            self.remembered.clear()
        self.remembered[credential] = (found, principal)
        return principal
