"""Middleware: authentication and authorization (DESIGN.md §7, docs/security.md).

Runs after routing (it needs the operation's ``scope``) and freshness (so a key revoked
in another worker or node is seen on this very request), before the body is read (an
anonymous client cannot make the server read a body). A public operation (health,
docs, ``openapi.json``; ``scope`` None) and an ``OPTIONS`` preflight (answered by
routing) pass untouched. Otherwise: no credential, or one no authenticator accepts, is
a 401 ``unauthorized`` with ``WWW-Authenticate: Bearer``; a principal without the scope
is a 403 ``forbidden`` naming ``details.required_scope``. ``call.principal`` is set to the
principal's name (a key id, ``user:NAME``, ``jwt:SUBJECT``), which the access log
prints, and ``call.caller`` to the principal (``GET /auth/me`` reads it).

Live streams (an operation with ``live`` set) also take the credential from the query,
``?access_token=``, when no header carries one: a browser's EventSource and WebSocket
cannot send headers. Only there: a key in a URL can end up in a proxy's log or a
browser's history (docs/observability.md "Live streams").
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl

from bfx import errors
from bfx.asgi.base import Response
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware.errors import error_answer
from bfx.asgi.pipeline import Before, Call
from bfx.security.auth import (
    MAX_CREDENTIAL,
    Authenticator,
    KeyAuthenticator,
    credential_of,
    unauthorized,
)
from bfx.security.keys import now_us

__all__ = ["authenticate"]

_CHALLENGE = (b"www-authenticate", b"Bearer")


class authenticate(Before):
    def __init__(
        self, authenticators: Sequence[Authenticator], counters: RequestMetrics | None = None
    ) -> None:
        self.authenticators = tuple(authenticators)
        self.counters = counters
        # The common request repeats an API key that verified before: looked up first,
        # by the header's text, before any parsing (docs/security.md, "What it costs").
        keys = [a for a in self.authenticators if isinstance(a, KeyAuthenticator)]
        self._keys = keys[0] if keys else None

    def step(self, call: Call) -> Response | None:
        required = call.route.op.scope
        if required is None:
            return None
        keys = self._keys
        if keys is not None:
            hit = keys.remembered.get(call.header_text("x-api-key"))  # type: ignore[arg-type]
            if hit is not None:
                record, principal = hit
                expires = record.expires_us
                # KeyAuthenticator.recall's checks, inlined (on this path a call costs
                # more than they do): the key map still holds the very record the key
                # verified against, unexpired. Otherwise the full check below decides.
                if (
                    keys.source.keys.get(record.key_id) is record
                    and (expires is None or now_us() < expires)
                    and required in principal.allowed
                ):
                    call.principal = principal.name
                    call.caller = principal
                    return None
        try:
            credential = credential_of(call.header)
            if credential is None and call.route.op.live is not None:
                credential = _query_credential(call.query_string)
            if credential is None:
                raise unauthorized()
            for authenticator in self.authenticators:
                principal = authenticator.authenticate(credential)
                if principal is not None:
                    break
            else:
                raise unauthorized()
        except errors.UnauthorizedError as exc:
            if self.counters is not None:
                self.counters.count_security_event("unauthorized")
            resp = error_answer(exc)
            resp.headers = [*(resp.headers or ()), _CHALLENGE]
            return resp
        call.principal = principal.name
        call.caller = principal
        if required not in principal.allowed:
            if self.counters is not None:
                self.counters.count_security_event("forbidden")
            return error_answer(
                errors.ForbiddenError(
                    f"this credential lacks the scope {required}", {"required_scope": required}
                )
            )
        return None


def _query_credential(query_string: bytes | str) -> str | None:
    """``access_token`` of the query string (a live stream's), or None."""
    if not query_string:
        return None
    if type(query_string) is bytes:
        query_string = query_string.decode("latin-1")
    for name, value in parse_qsl(query_string):
        if name == "access_token":
            value = value.strip()
            if not value or len(value) > MAX_CREDENTIAL or not value.isascii():
                raise unauthorized()
            return value
    return None
