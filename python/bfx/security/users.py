"""Users: names, scopes and argon2id password hashes, the record every store keeps
(``bfx.storage``), and the password check of ``POST /auth/login``.

Passwords are guessable, so unlike API keys (``bfx.security.keys``) they get a slow,
memory-hard hash: argon2id with OWASP's parameters (2 passes over 19 MiB, one lane:
about 20 ms of one core on a quiet machine, 100 ms on the loaded 2-core test machine,
where argon2-cffi's default of 64 MiB and 4 lanes took 500 ms — a login must not cost
half a second of both cores). Only the encoded hash
(``$argon2id$v=19$m=19456,t=2,p=1$salt$hash``) is stored; it names its own parameters,
so hashes made with other ones still verify.

No answer and no timing tells a caller whether a user exists: a login for an unknown
name verifies the password against a dummy hash made with the same parameters, so it
costs what a wrong password costs, and both fail the same way.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bfx import errors
from bfx.security.keys import parse_scopes

__all__ = [
    "MAX_PASSWORD",
    "UserRecord",
    "check_password",
    "check_username",
    "hash_password",
    "new_user",
    "prepare",
    "user_scopes",
]

#: A user name: a letter or digit, then up to 63 of letters, digits and ``._@-`` (an
#: e-mail address fits); case is kept, and names differing only in case are distinct.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: Longest password accepted (characters), so that a login body cannot make argon2
#: hash megabytes; shortest one ``bfx users add`` accepts.
MAX_PASSWORD = 1024
MIN_PASSWORD = 8


@dataclass(frozen=True, slots=True)
class UserRecord:
    """What a store keeps of one user: never the password."""

    #: 64 random bits: tokens carry it (``uid``), so a user removed and added again
    #: under the same name does not revive the old tokens.
    user_id: str
    name: str
    scopes: tuple[str, ...]
    #: The argon2id hash in PHC string form.
    password_hash: str
    created_us: int


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)  # argon2id


@cache
def _dummy_hash() -> str:
    # Made once per process with the same parameters as real hashes (see module doc).
    return _hasher().hash(secrets.token_urlsafe(16))


def prepare() -> None:
    """Make the dummy hash now (a server's start), so that the first login for an
    unknown name does not take longer than the others."""
    _dummy_hash()


def check_username(name: str) -> str:
    """The name, stripped; ValidationError when it is not a valid user name."""
    name = name.strip()
    if _NAME.fullmatch(name) is None:
        raise errors.ValidationError(
            "a user name is 1-64 letters, digits and . _ @ - (starting with a letter or digit)",
            {"field": "username"},
        )
    return name


def user_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    return parse_scopes(scopes)


def hash_password(password: str) -> str:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise errors.ValidationError(
            f"a password is {MIN_PASSWORD}-{MAX_PASSWORD} characters", {"field": "password"}
        )
    return _hasher().hash(password)


def new_user(name: str, scopes: Iterable[str], password: str, created_us: int) -> UserRecord:
    return UserRecord(
        user_id=secrets.token_hex(8),
        name=check_username(name),
        scopes=user_scopes(scopes),
        password_hash=hash_password(password),
        created_us=created_us,
    )


def check_password(record: UserRecord | None, password: str) -> bool:
    """Whether ``password`` is the user's; for ``record`` None (no such user) the dummy
    hash is verified, so the answer (False) takes as long as a wrong password's.
    argon2 compares digests in constant time."""
    too_long = len(password) > MAX_PASSWORD  # never a stored one: refused, same cost
    encoded = record.password_hash if record is not None and not too_long else _dummy_hash()
    try:
        ok = _hasher().verify(encoded, password[:MAX_PASSWORD])
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    return ok and record is not None and not too_long
