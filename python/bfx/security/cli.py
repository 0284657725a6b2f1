"""``bfx keys create|list|revoke`` and the secure-default check of ``bfx serve``.

The key commands work on the storage flags of every command, with or without a server
running on that store: they open it without loading the arena, and a server's workers
see a new or revoked key on their next request (the change log). The in-memory store is
refused: a key made there would vanish with this process.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

__all__ = ["add_parser", "add_serve_arguments", "jwt_problem", "serve_changes", "serve_problem"]

#: ``bfx serve`` flags of users, login and JWTs -> their settings (docs/security.md).
_JWT_FLAGS = (
    "jwt_ttl",
    "jwt_public_key",
    "jwt_jwks",
    "jwt_issuer",
    "jwt_audience",
    "login_failures_per_user",
    "login_failures_per_address",
)


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    """The login and JWT flags of ``bfx serve`` (each also read from its BFX_* variable;
    the HS256 secret only from ``BFX_JWT_SECRET``, never a flag that ``ps`` shows)."""
    from bfx.cli import _checked
    from bfx.ratelimit import parse_rate
    from bfx.settings import parse_ttl

    def ttl(text: str) -> int:
        try:
            return parse_ttl(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    g = p.add_argument_group(
        "users, login and JWTs (docs/security.md; the HS256 secret: env BFX_JWT_SECRET, "
        "else one kept in the store)"
    )
    g.add_argument(
        "--jwt-ttl",
        type=ttl,
        default=None,
        metavar="DURATION",
        help="lifetime of tokens from POST /auth/login: seconds or 15m, 1h; 1 minute to 1 "
        "day (env BFX_JWT_TTL; default 15m)",
    )
    g.add_argument(
        "--jwt-public-key",
        default=None,
        metavar="FILE",
        help="PEM public key of an external token issuer (RSA: RS256, EC P-256: ES256, "
        "Ed25519: EdDSA) (env BFX_JWT_PUBLIC_KEY)",
    )
    g.add_argument(
        "--jwt-jwks",
        default=None,
        metavar="FILE",
        help="JSON Web Key Set file of an external issuer, keys chosen by kid (env BFX_JWT_JWKS)",
    )
    g.add_argument(
        "--jwt-issuer",
        default=None,
        metavar="ISS",
        help="the iss an external issuer's tokens must carry (env BFX_JWT_ISSUER)",
    )
    g.add_argument(
        "--jwt-audience",
        default=None,
        metavar="AUD",
        help="the aud an external issuer's tokens must carry (env BFX_JWT_AUDIENCE)",
    )
    g.add_argument(
        "--login-failures-per-user",
        type=_checked(parse_rate),
        default=None,
        metavar="RATE",
        help="failed logins allowed per user name, per worker; then 429 (env "
        "BFX_LOGIN_FAILURES_PER_USER; default 10/15minutes)",
    )
    g.add_argument(
        "--login-failures-per-address",
        type=_checked(parse_rate),
        default=None,
        metavar="RATE",
        help="failed logins allowed per client address, per worker; then 429 (env "
        "BFX_LOGIN_FAILURES_PER_ADDRESS; default 50/15minutes)",
    )


def serve_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the login and JWT flags of ``bfx serve`` change."""
    return {n: getattr(args, n) for n in _JWT_FLAGS if getattr(args, n) is not None}


def jwt_problem(settings: Any) -> str | None:
    """Why the JWT settings cannot serve (exit 2): an incomplete external issuer, a key
    file that cannot be read or holds no usable key; or None."""
    from bfx.security.tokens import external_issuer

    try:
        external_issuer(
            settings.jwt_public_key, settings.jwt_jwks, settings.jwt_issuer, settings.jwt_audience
        )
    except ValueError as exc:
        return str(exc)
    return None


def _is_loopback(host: str) -> bool:
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere, so it counts as exposed


def serve_problem(host: str, auth: str, insecure: bool, storage: str) -> str | None:
    """Why ``bfx serve`` must not start with these settings (exit 2), or None."""
    from bfx.storage import is_memory

    if auth == "required" and is_memory(storage):
        return (
            "--auth required needs a durable store (--data-dir or --database-url): keys are "
            "made with `bfx keys create` on it, and --memory starts with none and keeps "
            "nothing"
        )
    if auth != "required" and not insecure and not _is_loopback(host):
        return (
            f"refusing to serve {host} without authentication: anyone who can reach it "
            "could create, delete and run code. Use --auth required (env BFX_AUTH=required) "
            "with keys from `bfx keys create`, or --insecure-no-auth to accept the risk "
            "(without authentication only a loopback address such as 127.0.0.1 is served)"
        )
    return None


def add_parser(sub: Any) -> None:
    """Register ``keys`` on a ``bfx`` subparsers object."""
    from bfx.cli import _add_storage_arguments

    p = sub.add_parser(
        "keys",
        help="create, list and revoke API keys (docs/security.md)",
        description="Manage the API keys of a store; a server running on it sees the change "
        "on its next request.",
    )
    ks = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    c = ks.add_parser("create", help="make a key and print it (once)")
    _add_storage_arguments(c, allow_memory=False)
    c.add_argument("--name", required=True, help="who or what the key is for")
    c.add_argument(
        "--scopes",
        required=True,
        help="comma-separated scopes, e.g. substrates:read,graph:read ('admin' implies all)",
    )
    c.add_argument("--expires", default=None, metavar="DURATION", help="e.g. 30d, 12h, 90m")
    c.add_argument("--json", action="store_true", help="print the HTTP API's answer")
    c.set_defaults(func=_create)
    ls = ks.add_parser("list", help="keys not revoked (no secrets)")
    _add_storage_arguments(ls, allow_memory=False)
    ls.add_argument("--json", action="store_true", help="print the HTTP API's answer")
    ls.set_defaults(func=_list)
    r = ks.add_parser("revoke", help="revoke a key by its id")
    _add_storage_arguments(r, allow_memory=False)
    r.add_argument("key_id", help="the key id (16 hex digits, as `bfx keys list` shows)")
    r.set_defaults(func=_revoke)


def _fail(message: str, code: int = 1) -> int:
    print(f"bfx: error: {message}", file=sys.stderr)
    return code


def _open(args: argparse.Namespace, *, create: bool) -> Any:
    from bfx.cli import _locator
    from bfx.storage import open_store

    options: dict[str, Any] = {"create": create}
    locator = _locator(args)
    if not locator.startswith(("postgresql://", "postgres://")):
        options["synchronous"] = args.sqlite_sync
    return open_store(locator, **options)


def _keys(store: Any) -> Any:
    from bfx.services.keys import LocalKeys

    return LocalKeys(lambda: store)


def _create(args: argparse.Namespace) -> int:
    from bfx.errors import BfxError
    from bfx.security.keys import parse_duration

    expires_at = None
    if args.expires is not None:
        try:
            expires_at = datetime.now(UTC) + timedelta(seconds=parse_duration(args.expires))
        except ValueError as exc:
            return _fail(f"--expires: {exc}", 2)
    try:
        store = _open(args, create=True)
    except BfxError as exc:
        return _fail(exc.message)
    try:
        made = _keys(store).create(args.name, args.scopes.split(","), expires_at)
    except BfxError as exc:
        return _fail(exc.message, 2 if exc.status == 422 else 1)
    finally:
        store.close()
    if args.json:
        print(msgspec.json.encode(made).decode())
    else:
        expires = made.expires_at.isoformat() if made.expires_at else "never"
        print(f"key id:  {made.key_id}\nname:    {made.name}\nscopes:  {' '.join(made.scopes)}")
        print(f"expires: {expires}\nkey:     {made.secret}")
        print("bfx: the key is shown only now; only a hash of it is stored", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from bfx.errors import BfxError

    try:
        store = _open(args, create=False)
    except BfxError as exc:
        return _fail(exc.message)
    try:
        found = _keys(store).list()
    except BfxError as exc:
        return _fail(exc.message)
    finally:
        store.close()
    if args.json:
        print(msgspec.json.encode(found).decode())
        return 0
    for k in found.keys:
        expires = k.expires_at.isoformat() if k.expires_at else "never"
        print(f"{k.key_id}  {k.name}  [{' '.join(k.scopes)}]  expires {expires}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from bfx.errors import BfxError

    try:
        store = _open(args, create=False)
    except BfxError as exc:
        return _fail(exc.message)
    try:
        _keys(store).revoke(args.key_id)
    except BfxError as exc:
        return _fail(exc.message)
    finally:
        store.close()
    print(f"bfx: key {args.key_id.strip().lower()} revoked")
    return 0
