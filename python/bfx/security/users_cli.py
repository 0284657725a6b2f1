"""``bfx users add|list|remove``: users who log in with a password (``POST /auth/login``).

Like ``bfx keys``, the commands work on the storage flags of every command, with or
without a server running on that store; a server's workers see an added or removed user
on their next request (the change log). The password comes from a prompt (asked twice),
or as one line of standard input with ``--password-stdin`` (for scripts: never on the
command line, where ``ps`` and shell history would show it).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

import msgspec

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    """Register ``users`` on a ``bfx`` subparsers object."""
    from bfx.cli import _add_storage_arguments

    p = sub.add_parser(
        "users",
        help="add, list and remove users who log in with a password (docs/security.md)",
        description="Manage the users of a store; a server running on it sees the change "
        "on its next request.",
    )
    us = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    a = us.add_parser("add", help="add a user (the password is prompted for)")
    _add_storage_arguments(a, allow_memory=False)
    a.add_argument("name", help="1-64 letters, digits and . _ @ -")
    a.add_argument(
        "--scopes",
        required=True,
        help="comma-separated scopes, e.g. substrates:read,graph:read ('admin' implies all)",
    )
    a.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password as one line of standard input instead of prompting",
    )
    a.set_defaults(func=_add)
    ls = us.add_parser("list", help="users and their scopes (never a password or hash)")
    _add_storage_arguments(ls, allow_memory=False)
    ls.add_argument("--json", action="store_true", help="one JSON array of users")
    ls.set_defaults(func=_list)
    r = us.add_parser("remove", help="remove a user (their tokens stop working at once)")
    _add_storage_arguments(r, allow_memory=False)
    r.add_argument("name")
    r.set_defaults(func=_remove)


def _fail(message: str, code: int = 1) -> int:
    print(f"bfx: error: {message}", file=sys.stderr)
    return code


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        line = sys.stdin.readline()
        return line.removesuffix("\n").removesuffix("\r")
    if not sys.stdin.isatty():
        return None
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def _add(args: argparse.Namespace) -> int:
    from bfx.errors import BfxError
    from bfx.security.cli import _open
    from bfx.security.keys import now_us
    from bfx.security.users import new_user

    try:
        password = _password(args)
    except ValueError as exc:
        return _fail(str(exc), 2)
    if password is None:
        return _fail("no terminal to ask for the password on: use --password-stdin", 2)
    try:
        record = new_user(args.name, args.scopes.split(","), password, now_us())
    except BfxError as exc:
        return _fail(exc.message, 2)
    try:
        store = _open(args, create=True)
    except BfxError as exc:
        return _fail(exc.message)
    try:
        store.add_user(record)
    except BfxError as exc:
        return _fail(exc.message)
    finally:
        store.close()
    print(f"bfx: user {record.name} added with scopes {' '.join(record.scopes)}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from bfx.errors import BfxError
    from bfx.security.cli import _open

    try:
        store = _open(args, create=False)
    except BfxError as exc:
        return _fail(exc.message)
    try:
        users = store.list_users()
    except BfxError as exc:
        return _fail(exc.message)
    finally:
        store.close()
    if args.json:
        shown = [{"username": u.name, "scopes": list(u.scopes)} for u in users]
        print(msgspec.json.encode(shown).decode())
        return 0
    for u in users:
        print(f"{u.name}  [{' '.join(u.scopes)}]")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from bfx.errors import BfxError
    from bfx.security.cli import _open

    try:
        store = _open(args, create=False)
    except BfxError as exc:
        return _fail(exc.message)
    try:
        removed = store.remove_user(args.name.strip())
    except BfxError as exc:
        return _fail(exc.message)
    finally:
        store.close()
    if not removed:
        return _fail(f"no user named {args.name.strip()!r}")
    print(f"bfx: user {args.name.strip()} removed")
    return 0
