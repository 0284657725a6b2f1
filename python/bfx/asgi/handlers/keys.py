"""API keys (scope ``admin``): create, list, revoke."""

from __future__ import annotations

from bfx.api import types as s
from bfx.asgi.pipeline import Input
from bfx.services import Services


def create_key(svc: Services, inp: Input) -> s.CreatedKey:
    body: s.CreateKey = inp.body
    return svc.keys.create(body.name, body.scopes, body.expires_at)


def list_keys(svc: Services, inp: Input) -> s.KeyList:
    return svc.keys.list()


def revoke_key(svc: Services, inp: Input) -> None:
    svc.keys.revoke(inp.params[0])
