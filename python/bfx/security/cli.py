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

__all__ = ["add_parser", "serve_problem"]


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
