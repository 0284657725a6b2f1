"""The local :class:`~bfx.services.interfaces.AuthService`: login against the store's
users, and who a caller is (docs/security.md, "Users and login")."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from bfx import errors
from bfx.api import types as s
from bfx.api.operations import SCOPES
from bfx.security.auth import Principal
from bfx.security.login import LoginGuard
from bfx.security.tokens import TokenIssuer
from bfx.security.users import check_password

if TYPE_CHECKING:
    from bfx.storage import Store

__all__ = ["DEFAULT_LOGIN_FAILURES", "LocalAuth"]

#: Failed logins allowed per username and per client address (``--login-failures``).
DEFAULT_LOGIN_FAILURES = ("10/15minutes", "50/15minutes")


def _failed() -> errors.UnauthorizedError:
    # One message for an unknown name and a wrong password alike.
    return errors.UnauthorizedError("wrong user name or password")


class LocalAuth:
    """Over the store ``store()`` returns; tokens signed with ``secret`` (the store's
    ``jwt_secret`` unless ``BFX_JWT_SECRET`` is set), valid for ``ttl`` seconds."""

    def __init__(
        self,
        store: Callable[[], Store],
        *,
        ttl: int = 900,
        secret: bytes | None = None,
        guard: LoginGuard | None = None,
    ) -> None:
        self._get_store = store
        self._ttl = ttl
        self._secret = secret
        self._issuer: TokenIssuer | None = None
        self._guard = guard or LoginGuard(*DEFAULT_LOGIN_FAILURES)

    @property
    def issuer(self) -> TokenIssuer:
        if self._issuer is None:  # the store's secret is known once it is open
            secret = self._secret or self._get_store().jwt_secret
            self._issuer = TokenIssuer(secret, self._ttl)
        return self._issuer

    def login(self, username: str, password: str, address: str = "unknown") -> s.AccessToken:
        """``login``: a bearer token for a user's name and password. UnauthorizedError
        (the same for an unknown name and a wrong password, after the same argon2 work);
        RateLimitedError when the name or the address has too many recent failures."""
        self._guard.check(username, address)
        user = self._get_store().users.get(username)
        if not check_password(user, password) or user is None:
            self._guard.failed(username, address)
            raise _failed()
        token = self.issuer.issue(user)
        return s.AccessToken(access_token=token, token_type="bearer", expires_in=self._ttl)

    def me(self, caller: Principal | None) -> s.Me:
        """``me``: the caller's principal and scopes (None: authentication is off, and
        every caller may do everything)."""
        if caller is None:
            return s.Me(principal="-", kind="anonymous", scopes=list(SCOPES))
        name = caller.name
        kind = "user" if name.startswith("user:") else "jwt" if name.startswith("jwt:") else "key"
        return s.Me(principal=name, kind=kind, scopes=[x for x in SCOPES if x in caller.scopes])
