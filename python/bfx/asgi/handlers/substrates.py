"""Routes under ``/substrates``: records, invocation, operators, batches, search."""

from __future__ import annotations

from typing import Any

from bfx import errors
from bfx.api import types as s
from bfx.asgi import records
from bfx.asgi.base import PREFIX, Request, Response, body_id, encode, no_content, path_id, query_id
from bfx.budget import BatchBudget
from bfx.identity import format_id
from bfx.paging import Page

BASE = f"{PREFIX}/substrates"


def _created(rec: s.SubstrateRecord) -> Response:
    location = f"{BASE}/{rec.substrate_id}".encode()
    return Response(201, encode(rec), headers=[(b"location", location)], value=rec)


def create_substrate(req: Request) -> Response:
    d: s.CreateSubstrate = req.data
    sub = req.registry.create(d.expression_type, d.expression_code, d.metadata)
    return _created(records.substrate(sub))


def get_substrate(req: Request) -> Response:
    return Response(200, encode(records.substrate(req.registry.get(path_id(req.params[0])))))


def delete_substrate(req: Request) -> Response:
    req.registry.delete(path_id(req.params[0]))
    return no_content()


def list_substrates(req: Request) -> Response:
    q: s.ListQuery = req.query(s.ListQuery)
    items, nxt = req.registry.list(limit=q.limit, cursor=query_id(q.cursor, "cursor"))
    page = s.SubstratePage(
        substrates=[records.substrate(x) for x in items],
        next_cursor=records.optional_hex(nxt),
        count=len(req.registry),
    )
    return Response(200, encode(page))


def invoke(req: Request) -> Response:
    sid = path_id(req.params[0])
    inv = req.registry.invoke(sid, req.data.parameters)
    answer = s.InvokeResponse(
        substrate_id=format_id(inv.substrate),
        result=inv.result,
        invocation_time_ms=inv.elapsed_ms,
    )
    return Response(200, encode(answer), value=answer)


def divide(req: Request) -> Response:
    sid = path_id(req.params[0])
    dims = req.registry.divide(sid)
    return Response(
        200,
        encode(
            s.DivideResponse(
                substrate_id=format_id(sid),
                dimensions=[
                    s.Dimension(level=d["level"], name=d["name"], description=d["description"])
                    for d in dims
                ],
                fibonacci_sequence=[d["level"] for d in dims],
            )
        ),
    )


def multiply(req: Request) -> Response:
    r = req.registry.multiply(req.data.dimension_values)
    return Response(
        200,
        encode(
            s.MultiplyResponse(
                operation="multiply",
                unity_value=r["unity_value"],
                unity_hex=r.get("unity_hex"),
                dimensions_collapsed=r["dimensions_collapsed"],
            )
        ),
    )


def _arith(req: Request, op: str) -> Response:
    sid = path_id(req.params[0])
    d: s.ValueRequest = req.data
    r = getattr(req.registry, op)(sid, d.value, d.parameters)
    return Response(
        200,
        encode(
            s.ArithmeticResponse(
                substrate_id=format_id(sid),
                operation=op,
                original_value=r["original_value"],
                value=r["value"],
                new_value=r["new_value"],
            )
        ),
    )


def add(req: Request) -> Response:
    return _arith(req, "add")


def subtract(req: Request) -> Response:
    return _arith(req, "subtract")


def modulus(req: Request) -> Response:
    sid = path_id(req.params[0])
    d: s.ModulusRequest = req.data
    r = req.registry.modulus(sid, d.modulus, d.parameters)
    return Response(
        200,
        encode(
            s.ModulusResponse(
                substrate_id=format_id(sid),
                value=r["value"],
                modulus=r["modulus"],
                expressed=r["expressed"],
                residue=r["residue"],
            )
        ),
    )


def _power_like(req: Request, op: str, arg: Any) -> Response:
    sid = path_id(req.params[0])
    r = getattr(req.registry, op)(sid, arg, req.data.parameters)
    return Response(
        200,
        encode(
            s.PowerResponse(
                substrate_id=format_id(sid),
                operation=op,
                original_value=r["original_value"],
                result_value=r["result_value"],
            )
        ),
    )


def power(req: Request) -> Response:
    return _power_like(req, "power", req.data.exponent)


def root(req: Request) -> Response:
    return _power_like(req, "root", req.data.degree)


# --- batches ------------------------------------------------------------------------


def create_substrates(req: Request) -> Response:
    d: s.BatchCreate = req.data
    items = [
        {
            "expression_type": x.expression_type,
            "expression_code": x.expression_code,
            "metadata": x.metadata,
        }
        for x in d.substrates
    ]
    outcome = req.registry.create_many(items, atomic=d.atomic)
    results = []
    for i, r in enumerate(outcome):
        if isinstance(r, errors.BfxError):
            results.append(s.BatchItem(index=i, status=r.status, error=records.error(r)))
        else:
            results.append(s.BatchItem(index=i, status=201, substrate_id=format_id(r.identity)))
    answer = s.BatchResult(results=results)
    return Response(200, encode(answer), value=answer)


def invoke_many(req: Request) -> Response:
    d: s.BatchInvoke = req.data
    results: list[s.BatchInvokeItem | None] = [None] * len(d.invocations)
    calls: list[tuple[int, dict[str, Any] | None]] = []
    where: list[int] = []
    for i, item in enumerate(d.invocations):
        try:
            calls.append(
                (body_id(item.substrate_id, f"invocations[{i}].substrate_id"), item.parameters)
            )
            where.append(i)
        except errors.InvalidIdError as exc:
            results[i] = s.BatchInvokeItem(index=i, status=exc.status, error=records.error(exc))
    settings = req.app.settings
    cancelled = req.cancelled
    budget = BatchBudget(
        time_ms=settings.batch_time_budget * 1000.0,
        max_bytes=settings.max_answer_bytes,
        cancelled=None if cancelled is None else cancelled.is_set,
    )
    answers = req.registry.invoke_many(calls, budget=budget) if calls else []
    for i, r in zip(where, answers, strict=True):
        if isinstance(r, errors.BfxError):
            results[i] = s.BatchInvokeItem(index=i, status=r.status, error=records.error(r))
        else:
            results[i] = s.BatchInvokeItem(
                index=i,
                status=200,
                substrate_id=format_id(r.substrate),
                result=r.result,
                invocation_time_ms=r.elapsed_ms,
            )
    answer = s.BatchInvokeResult(results=results)  # type: ignore[arg-type]
    return Response(200, encode(answer), value=answer)


# --- search and query ---------------------------------------------------------------


def search(req: Request) -> Response:
    q: s.SearchQuery = req.query(s.SearchQuery)
    found = req.registry.search(name=q.name, expression_type=q.type, limit=q.limit, cursor=q.cursor)
    return _substrate_list(found)


def query(req: Request) -> Response:
    d: s.QueryRequest = req.data
    found = req.registry.query(d.filters, sort=d.sort, limit=d.limit, cursor=d.cursor)
    return _substrate_list(found)


def _substrate_list(found: Page[Any]) -> Response:
    return Response(
        200,
        encode(
            s.SubstrateList(
                substrates=[records.substrate(x) for x in found],
                count=found.count,
                next_cursor=found.next_cursor,
            )
        ),
    )


_E422 = (400, 404, 422)
