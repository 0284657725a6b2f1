"""JWT access tokens: the ones bfx issues at login (HS256) and those of an external
issuer (RS256, ES256, EdDSA), checked by :class:`JwtAuthenticator` beside the API-key
authenticator (``bfx.security.auth``).

Which key checks a token is decided by bfx's configuration, never by the token alone: a
token whose header says ``HS256`` is checked with bfx's own secret only, one that says
``RS256``/``ES256``/``EdDSA`` with the external issuer's public keys only, each key bound
to its one algorithm. So ``alg: none`` is refused, and so is the classic confusion of an
HS256 token signed with the issuer's *public* key (it is checked against bfx's secret,
which is not public). ``exp`` and ``nbf`` are checked with :data:`LEEWAY` seconds for
clock skew; ``iss`` and ``aud`` must equal the configured ones (``bfx`` for bfx's own).

A bfx token names its user (``sub``) and the user's id (``uid``): it holds only while
that very user exists in the store's user map (kept current by the change log), so a
removed user's tokens fail on the next request in every worker; its scopes are those of
the ``scope`` claim that the user still holds.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from bfx.security.auth import Principal, unauthorized
from bfx.security.users import UserRecord

__all__ = [
    "ASYMMETRIC",
    "BFX_AUDIENCE",
    "BFX_ISSUER",
    "LEEWAY",
    "ExternalIssuer",
    "JwtAuthenticator",
    "TokenIssuer",
    "external_issuer",
    "load_external_keys",
]

BFX_ISSUER = "bfx"
BFX_AUDIENCE = "bfx"
#: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
LEEWAY = 30
#: The algorithms accepted from an external issuer, one per key type.
ASYMMETRIC = ("RS256", "ES256", "EdDSA")
#: A subject that is safe to print in the access log (no spaces, no control characters).
_SUBJECT = re.compile(r"[\x21-\x7e]{1,128}")
#: Verified tokens remembered (token -> principal, expiry), so that a client sending
#: the same token again costs a dict lookup, not a signature check; cleared when full.
_CACHE_SIZE = 4096


class TokenIssuer:
    """Issues bfx's HS256 access tokens at login."""

    def __init__(self, secret: bytes, ttl: int) -> None:
        self._secret = secret
        self.ttl = ttl

    def issue(self, user: UserRecord) -> str:
        now = int(time.time())
        claims = {
            "iss": BFX_ISSUER,
            "aud": BFX_AUDIENCE,
            "sub": user.name,
            "uid": user.user_id,
            "scope": " ".join(user.scopes),
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")


@dataclass(frozen=True, slots=True)
class ExternalIssuer:
    """An external issuer: its public keys (by ``kid``; ``None`` for a key without one)
    with the one algorithm each is for, and the ``iss`` and ``aud`` its tokens must name."""

    keys: Mapping[str | None, tuple[str, Any]]
    issuer: str
    audience: str


def _alg_of(key: Any) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    raise ValueError("the key must be an RSA, EC P-256 or Ed25519 public key")


def load_external_keys(
    public_key: str | None, jwks: str | None
) -> dict[str | None, tuple[str, Any]]:
    """The keys of ``--jwt-public-key FILE`` (one PEM public key) or ``--jwt-jwks FILE``
    (a JSON Web Key Set): ``{kid: (algorithm, key)}``. ValueError, saying why, for a file
    that cannot be read or holds no usable key."""
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    if public_key:
        try:
            key = load_pem_public_key(Path(public_key).read_bytes())
        except OSError as exc:
            raise ValueError(f"--jwt-public-key {public_key}: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise ValueError(
                f"--jwt-public-key {public_key}: not a PEM public key (-----BEGIN PUBLIC KEY-----)"
            ) from None
        try:
            return {None: (_alg_of(key), key)}
        except ValueError as exc:
            raise ValueError(f"--jwt-public-key {public_key}: {exc}") from None
    if not jwks:
        return {}
    try:
        document = json.loads(Path(jwks).read_text("utf-8"))
    except OSError as exc:
        raise ValueError(f"--jwt-jwks {jwks}: {exc.strerror}") from None
    except ValueError:
        raise ValueError(f"--jwt-jwks {jwks}: not JSON") from None
    found: dict[str | None, tuple[str, Any]] = {}
    entries = document.get("keys") if isinstance(document, dict) else None
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        # Symmetric ("oct") keys are never taken from a key set: that would let anyone
        # holding the set sign tokens.
        if entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        try:
            jwk = jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        if jwk.algorithm_name not in ASYMMETRIC:
            continue
        try:
            if _alg_of(jwk.key) != jwk.algorithm_name:
                continue
        except ValueError:
            continue
        found[jwk.key_id] = (jwk.algorithm_name, jwk.key)
    if not found:
        raise ValueError(f'--jwt-jwks {jwks}: no RS256, ES256 or EdDSA signing key in its "keys"')
    return found


def external_issuer(
    public_key: str, jwks: str, issuer: str, audience: str
) -> ExternalIssuer | None:
    """The external issuer ``--jwt-public-key``/``--jwt-jwks``, ``--jwt-issuer`` and
    ``--jwt-audience`` describe, or None without a key file. ValueError, saying why, for
    an incomplete or contradictory setting or a file without a usable key: a token
    check that silently skipped ``iss`` or ``aud`` would accept another service's tokens."""
    if not public_key and not jwks:
        if issuer or audience:
            raise ValueError("--jwt-issuer and --jwt-audience need --jwt-public-key or --jwt-jwks")
        return None
    if public_key and jwks:
        raise ValueError("give --jwt-public-key or --jwt-jwks, not both")
    if not issuer or not audience:
        raise ValueError(
            "an external issuer needs --jwt-issuer and --jwt-audience (the iss and aud its "
            "tokens must carry)"
        )
    return ExternalIssuer(load_external_keys(public_key, jwks), issuer, audience)


class JwtAuthenticator:
    """Claims credentials shaped like a JWT; checks bfx's own (HS256, against the store's
    users) and, when one is configured, an external issuer's."""

    def __init__(
        self,
        secret: bytes,
        users: Callable[[], Mapping[str, UserRecord]],
        external: ExternalIssuer | None = None,
    ) -> None:
        self._secret = secret
        self._users = users
        self._external = external
        self._cache: dict[str, tuple[Principal, float, UserRecord | None]] = {}

    def authenticate(self, credential: str) -> Principal | None:
        # The shape only (a header starting ``{"``, three parts): PyJWT checks the rest,
        # and a regular expression over the whole token cost 4 µs of the 7 µs a
        # remembered token took.
        if not credential.startswith("eyJ") or credential.count(".") != 2:
            return None
        hit = self._cache.get(credential)
        if hit is not None:
            principal, expires, user = hit
            if time.time() < expires + LEEWAY and (
                user is None or self._users().get(user.name) is user
            ):
                return principal
            del self._cache[credential]
        try:
            alg = jwt.get_unverified_header(credential).get("alg")
            if alg == "HS256":
                principal, expires, user = self._bfx(credential)
            elif alg in ASYMMETRIC and self._external is not None:
                principal, expires, user = self._from_external(credential, alg)
            else:
                raise unauthorized()
        except jwt.PyJWTError:
            raise unauthorized() from None
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[credential] = (principal, expires, user)
        return principal

    def _bfx(self, token: str) -> tuple[Principal, float, UserRecord | None]:
        claims = jwt.decode(
            token,
            self._secret,
            algorithms=["HS256"],
            audience=BFX_AUDIENCE,
            issuer=BFX_ISSUER,
            leeway=LEEWAY,
            options={"require": ["exp", "iat", "nbf", "sub", "uid"]},
        )
        user = self._users().get(claims["sub"])
        if user is None or user.user_id != claims["uid"]:
            raise unauthorized()  # removed (perhaps added again: a new uid)
        granted = frozenset(_scopes(claims)) & frozenset(user.scopes)
        return Principal(f"user:{user.name}", granted), float(claims["exp"]), user

    def _from_external(self, token: str, alg: str) -> tuple[Principal, float, None]:
        external = self._external
        assert external is not None
        kid = jwt.get_unverified_header(token).get("kid")
        found = external.keys.get(kid)
        if found is None and len(external.keys) == 1:
            found = next(iter(external.keys.values()))  # a lone key answers any kid
        if found is None or found[0] != alg:
            raise unauthorized()
        claims = jwt.decode(
            token,
            found[1],
            algorithms=[found[0]],
            audience=external.audience,
            issuer=external.issuer,
            leeway=LEEWAY,
            options={"require": ["exp", "sub", "iss", "aud"]},
        )
        subject = claims["sub"]
        if not isinstance(subject, str) or _SUBJECT.fullmatch(subject) is None:
            raise unauthorized()
        return Principal(f"jwt:{subject}", frozenset(_scopes(claims))), float(claims["exp"]), None


def _scopes(claims: Mapping[str, Any]) -> list[str]:
    """The known scopes of the space-separated ``scope`` claim (others are ignored)."""
    from bfx.api.operations import SCOPES

    raw = claims.get("scope", "")
    if not isinstance(raw, str):
        return []
    return [s for s in raw.split() if s in SCOPES]
