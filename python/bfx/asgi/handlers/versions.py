"""Handlers of version chains, aliases and lenses (DESIGN §9): each is one operation of
:mod:`bfx.api.operations` (same name)."""

from __future__ import annotations

from bfx.api import types as s
from bfx.asgi.base import PREFIX, Response
from bfx.asgi.handlers.substrates import created
from bfx.asgi.pipeline import Input
from bfx.services import Services


def create_version(svc: Services, inp: Input) -> Response:
    d: s.CreateVersion = inp.body
    rec = svc.versions.create(inp.params[0], d.expression_code, d.change_description)
    return created(rec, f"{PREFIX}/substrates/{rec.substrate_id}")


def versions(svc: Services, inp: Input) -> s.VersionList:
    return svc.versions.list(inp.params[0])


def rollback(svc: Services, inp: Input) -> s.VersionList:
    return svc.versions.rollback(inp.params[0], inp.params[1])


def put_alias(svc: Services, inp: Input) -> s.AliasRecord:
    d: s.PutAlias = inp.body
    return svc.aliases.put(inp.params[0], d.substrate_id)


def get_alias(svc: Services, inp: Input) -> s.AliasRecord:
    return svc.aliases.get(inp.params[0])


def delete_alias(svc: Services, inp: Input) -> None:
    svc.aliases.delete(inp.params[0])


def invoke_alias(svc: Services, inp: Input) -> s.InvokeResponse:
    d: s.InvokeRequest = inp.body
    return svc.aliases.invoke(inp.params[0], d.parameters)


def create_lens(svc: Services, inp: Input) -> Response:
    d: s.CreateLens = inp.body
    rec = svc.lenses.create(d.name, d.expression_code, d.parameters, d.description)
    return created(rec, f"{PREFIX}/lenses/{rec.name}")


def list_lenses(svc: Services, inp: Input) -> s.LensList:
    return svc.lenses.list()


def get_lens(svc: Services, inp: Input) -> s.LensRecord:
    return svc.lenses.get(inp.params[0])


def delete_lens(svc: Services, inp: Input) -> None:
    svc.lenses.delete(inp.params[0])


def apply_lens(svc: Services, inp: Input) -> s.LensApplied:
    d: s.ApplyLens = inp.body
    return svc.lenses.apply(
        inp.params[0], d.lens_name, d.parameters, d.dimension, d.substrate_parameters
    )
