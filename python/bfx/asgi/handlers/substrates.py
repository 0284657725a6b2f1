"""Handlers under ``/substrates``: records, invocation, operators, batches, search.

Each is one operation of :mod:`bfx.api.operations` (same name): typed input in, the
service's typed answer out.
"""

from __future__ import annotations

from typing import Any

from bfx.api import types as s
from bfx.asgi.base import PREFIX, Response, encode
from bfx.asgi.pipeline import Input
from bfx.services import Services

BASE = f"{PREFIX}/substrates"


def created(record: Any, url: str) -> Response:
    """201 with the new record's ``Location``."""
    return Response(201, encode(record), headers=[(b"location", url.encode())], value=record)


async def create_substrate(svc: Services, inp: Input) -> Response:
    d: s.CreateSubstrate = inp.body
    rec = await svc.substrates.create_async(d.expression_type, d.expression_code, d.metadata)
    return created(rec, f"{BASE}/{rec.substrate_id}")


def compose(svc: Services, inp: Input) -> Response:
    rec = svc.substrates.compose(inp.body)
    return created(rec, f"{BASE}/{rec.substrate_id}")


def get_substrate(svc: Services, inp: Input) -> s.Encoded:
    # The record as the core writes it: every GET of a record comes here.
    return svc.substrates.get_encoded(inp.params[0])


def update_substrate(svc: Services, inp: Input) -> s.SubstrateRecord:
    return svc.substrates.update(inp.params[0], inp.body.metadata)


def delete_substrate(svc: Services, inp: Input) -> None:
    svc.substrates.delete(inp.params[0])


def list_substrates(svc: Services, inp: Input) -> s.SubstratePage:
    return svc.substrates.list(inp.query)


def invoke(svc: Services, inp: Input) -> s.InvokeResponse:
    return svc.substrates.invoke(inp.params[0], inp.body.parameters)


def create_substrates(svc: Services, inp: Input) -> s.BatchResult:
    return svc.substrates.create_many(inp.body)


def invoke_many(svc: Services, inp: Input) -> s.BatchInvokeResult:
    cancelled = inp.cancelled
    return svc.substrates.invoke_many(
        inp.body, cancelled=None if cancelled is None else cancelled.is_set
    )


def search(svc: Services, inp: Input) -> s.SubstrateList:
    return svc.substrates.search(inp.query)


def query(svc: Services, inp: Input) -> s.SubstrateList:
    return svc.substrates.query(inp.body)


# --- operators ------------------------------------------------------------------------


def divide(svc: Services, inp: Input) -> s.DivideResponse:
    return svc.operators.divide(inp.params[0])


def multiply(svc: Services, inp: Input) -> s.MultiplyResponse:
    return svc.operators.multiply(inp.body.dimension_values)


def add(svc: Services, inp: Input) -> s.ArithmeticResponse:
    return svc.operators.add(inp.params[0], inp.body.value, inp.body.parameters)


def subtract(svc: Services, inp: Input) -> s.ArithmeticResponse:
    return svc.operators.subtract(inp.params[0], inp.body.value, inp.body.parameters)


def modulus(svc: Services, inp: Input) -> s.ModulusResponse:
    return svc.operators.modulus(inp.params[0], inp.body.modulus, inp.body.parameters)


def power(svc: Services, inp: Input) -> s.PowerResponse:
    return svc.operators.power(inp.params[0], inp.body.exponent, inp.body.parameters)


def root(svc: Services, inp: Input) -> s.PowerResponse:
    return svc.operators.root(inp.params[0], inp.body.degree, inp.body.parameters)


def promote(svc: Services, inp: Input) -> s.PromoteResponse:
    d: s.PromoteRequest = inp.body
    return svc.operators.promote(inp.params[0], d.delta, d.change_description, d.attribute_value)


def promote_sequence(svc: Services, inp: Input) -> s.PromoteSequenceResponse:
    d: s.PromoteSequenceRequest = inp.body
    return svc.operators.promote_sequence(inp.params[0], d.deltas, d.attribute_value)
