"""Middleware: CORS — no cross-origin access unless origins are configured.

With no origins configured no ``Access-Control-*`` header is ever sent, so browsers keep
other sites out. A configured origin (or ``*``) gets the header on every answer and a
preflight answer naming the route's methods. No credentials: the API has no cookies or
auth for a browser to carry.
"""

from __future__ import annotations

from collections.abc import Iterable

from bfx.asgi.base import Response
from bfx.asgi.pipeline import Around, Call

__all__ = ["Cors", "cors"]

Headers = list[tuple[bytes, bytes]]

_MAX_AGE = b"600"
_EXPOSE = (
    b"allow, content-length, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset"
)


class Cors:
    def __init__(self, origins: Iterable[str]) -> None:
        origins = tuple(origins)
        self.any = "*" in origins
        self.origins = frozenset(o.encode("latin-1") for o in origins if o != "*")
        self.enabled = self.any or bool(self.origins)

    def allow_origin(self, origin: bytes | None) -> bytes | None:
        """The ``Access-Control-Allow-Origin`` value for this request, or None."""
        if origin is None or not self.enabled:
            return None
        if self.any:
            return b"*"
        return origin if origin in self.origins else None

    def simple(self, origin: bytes | None) -> Headers:
        """Headers for an ordinary (non-preflight) answer."""
        allowed = self.allow_origin(origin)
        if allowed is None:
            return []
        headers = [
            (b"access-control-allow-origin", allowed),
            # Browsers hide other headers from scripts: the rate-limit ones are for them.
            (b"access-control-expose-headers", _EXPOSE),
        ]
        if allowed != b"*":
            headers.append((b"vary", b"origin"))
        return headers

    def preflight(
        self,
        origin: bytes | None,
        method: bytes | None,
        request_headers: bytes | None,
        allow: tuple[str, ...],
    ) -> Headers:
        """Headers for an ``OPTIONS`` preflight; empty when the browser must refuse."""
        allowed = self.allow_origin(origin)
        if allowed is None or method is None or method.decode("latin-1") not in allow:
            return []
        headers = [
            (b"access-control-allow-origin", allowed),
            (b"access-control-allow-methods", ", ".join(allow).encode()),
            (b"access-control-max-age", _MAX_AGE),
        ]
        if request_headers:
            # Nothing in the API depends on request headers beyond content-type, so any
            # header the browser asks about may be sent.
            headers.append((b"access-control-allow-headers", request_headers))
        if allowed != b"*":
            headers.append((b"vary", b"origin"))
        return headers


class cors(Around):
    """Adds the policy's headers to every answer, errors included; a preflight (an
    ``OPTIONS`` answered 204 with ``Allow``) gets the preflight headers instead."""

    def __init__(self, policy: Cors) -> None:
        self.policy = policy

    def leave(self, call: Call, resp: Response) -> Response:
        origin = call.header(b"origin")
        if origin is None:
            return resp
        allow = _allow(resp) if call.method == "OPTIONS" and resp.status == 204 else None
        if allow is not None:
            extra = self.policy.preflight(
                origin,
                call.header(b"access-control-request-method"),
                call.header(b"access-control-request-headers"),
                allow,
            )
        else:
            extra = self.policy.simple(origin)
        if extra:
            resp.headers = [*(resp.headers or ()), *extra]
        return resp


def _allow(resp: Response) -> tuple[str, ...] | None:
    for name, value in resp.headers or ():
        if name == b"allow":
            return tuple(m.strip() for m in value.decode("latin-1").split(","))
    return None
