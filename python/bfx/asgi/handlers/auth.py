"""Login (public, failures limited) and who the caller is (any valid credential)."""

from __future__ import annotations

from bfx.api import types as s
from bfx.asgi.pipeline import Input
from bfx.services import Services


def login(svc: Services, inp: Input) -> s.AccessToken:
    body: s.Login = inp.body
    # The peer's address without its port (as the rate limit counts anonymous callers).
    address = str(inp.client[0]) if inp.client else "unknown"
    return svc.auth.login(body.username, body.password, address)


def me(svc: Services, inp: Input) -> s.Me:
    return svc.auth.me(inp.caller)
