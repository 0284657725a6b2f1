"""The local :class:`~bfx.services.interfaces.SubstrateService` and
:class:`~bfx.services.interfaces.OperatorService`: the domain's substrates and
operators, answers as api Structs."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from msgspec import Raw

from bfx import errors
from bfx.api import types as s
from bfx.budget import BatchBudget
from bfx.domain import promotion
from bfx.domain import search as scans
from bfx.identity import field_id as body_id
from bfx.identity import format_id
from bfx.paging import Page
from bfx.services import records
from bfx.services.inputs import query_id

if TYPE_CHECKING:
    from bfx.domain.operators import Operators
    from bfx.domain.substrates import Substrates

__all__ = ["LocalOperators", "LocalSubstrates"]

_LIST = s.ListQuery()
_SEARCH = s.SearchQuery()


class LocalSubstrates:
    """Substrates of the domain (:class:`~bfx.domain.substrates.Substrates`). A batch
    invoke is bounded by ``max_answer_bytes`` (its answer's JSON size) and
    ``batch_time_budget`` (seconds, shared by its items); None: unbounded."""

    def __init__(
        self,
        substrates: Substrates,
        *,
        max_answer_bytes: int | None = None,
        batch_time_budget: float | None = None,
    ) -> None:
        self._substrates = substrates
        self._arena = substrates.arena
        self._counts = substrates.counts
        self._max_answer_bytes = max_answer_bytes
        self._batch_time_ms = None if batch_time_budget is None else batch_time_budget * 1000.0

    def create(
        self, expression_type: str, expression_code: str, metadata: dict[str, Any] | None = None
    ) -> s.SubstrateRecord:
        return records.substrate_row(
            self._substrates.create(expression_type, expression_code, metadata)
        )

    async def create_async(
        self, expression_type: str, expression_code: str, metadata: dict[str, Any] | None = None
    ) -> s.SubstrateRecord:
        return records.substrate_row(
            await self._substrates.create_async(expression_type, expression_code, metadata)
        )

    def compose(self, request: s.ComposeRequest) -> s.SubstrateRecord:
        steps = [
            {"substrate_id": p.substrate_id, "as": p.as_, "parameters": p.parameters}
            for p in request.pipeline
        ]
        return records.substrate_row(
            self._substrates.compose(
                steps, request.aggregate, name=request.name, metadata=request.metadata
            )
        )

    def get(self, substrate_id: int) -> s.SubstrateRecord:
        return records.substrate(self._arena.get(substrate_id), self._counts.get(substrate_id, 0))

    def get_encoded(self, substrate_id: int) -> s.Encoded:
        return Raw(self._arena.get_json(substrate_id, self._counts.get(substrate_id, 0)))

    def update(self, substrate_id: int, metadata: dict[str, Any]) -> s.SubstrateRecord:
        row = self._substrates.update(substrate_id, metadata)
        return records.substrate_row(row, self._counts.get(substrate_id, 0))

    def delete(self, substrate_id: int) -> None:
        self._substrates.delete(substrate_id)

    def _records(self, found: Iterable[tuple[Any, ...]]) -> list[s.SubstrateRecord]:
        counts = self._counts
        return [records.substrate(r, counts.get(r[0], 0)) for r in found]

    def list(self, query: s.ListQuery | None = None) -> s.SubstratePage:
        q = query or _LIST
        found, nxt = self._substrates.page(q.limit, query_id(q.cursor, "cursor"))
        return s.SubstratePage(
            substrates=self._records(found),
            next_cursor=records.optional_hex(nxt),
            count=len(self._arena),
        )

    def _list(self, found: Page[Any]) -> s.SubstrateList:
        return s.SubstrateList(
            substrates=self._records(found), count=found.count, next_cursor=found.next_cursor
        )

    def search(self, query: s.SearchQuery | None = None) -> s.SubstrateList:
        q = query or _SEARCH
        return self._list(scans.search(self._substrates.scan(), q.name, q.type, q.limit, q.cursor))

    def query(self, request: s.QueryRequest) -> s.SubstrateList:
        d = request
        return self._list(
            scans.query(self._substrates.scan(), d.filters, d.sort, d.limit, d.cursor)
        )

    def create_many(self, request: s.BatchCreate) -> s.BatchResult:
        items = [
            {
                "expression_type": x.expression_type,
                "expression_code": x.expression_code,
                "metadata": x.metadata,
            }
            for x in request.substrates
        ]
        outcome = self._substrates.create_many(items, atomic=request.atomic)
        return records.batch_result(outcome, "substrate_id")

    def invoke(
        self, substrate_id: int, parameters: dict[str, Any] | None = None
    ) -> s.InvokeResponse:
        inv = self._substrates.invoke(substrate_id, parameters)
        return s.InvokeResponse(
            substrate_id=format_id(inv.substrate),
            result=inv.result,
            invocation_time_ms=inv.elapsed_ms,
        )

    def invoke_many(
        self, request: s.BatchInvoke, *, cancelled: Callable[[], bool] | None = None
    ) -> s.BatchInvokeResult:
        invocations = request.invocations
        results: list[s.BatchInvokeItem | None] = [None] * len(invocations)
        calls: list[tuple[int, dict[str, Any] | None]] = []
        where: list[int] = []
        for i, item in enumerate(invocations):
            try:
                calls.append(
                    (body_id(item.substrate_id, f"invocations[{i}].substrate_id"), item.parameters)
                )
                where.append(i)
            except errors.InvalidIdError as exc:
                results[i] = s.BatchInvokeItem(index=i, status=exc.status, error=records.error(exc))
        budget = BatchBudget(
            time_ms=self._batch_time_ms, max_bytes=self._max_answer_bytes, cancelled=cancelled
        )
        answers = self._substrates.invoke_many(calls, budget=budget) if calls else []
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
        return s.BatchInvokeResult(results=results)  # type: ignore[arg-type]


class LocalOperators:
    """The domain's operators (:class:`~bfx.domain.operators.Operators`)."""

    def __init__(self, operators: Operators) -> None:
        self._operators = operators

    def divide(self, substrate_id: int) -> s.DivideResponse:
        dims = self._operators.divide(substrate_id)
        return s.DivideResponse(
            substrate_id=format_id(substrate_id),
            dimensions=[
                s.Dimension(level=d["level"], name=d["name"], description=d["description"])
                for d in dims
            ],
            fibonacci_sequence=[d["level"] for d in dims],
        )

    def multiply(self, dimension_values: Sequence[int | float]) -> s.MultiplyResponse:
        r = self._operators.multiply(dimension_values)
        return s.MultiplyResponse(
            operation="multiply",
            unity_value=r.unity_value,
            unity_hex=r.unity_hex,
            dimensions_collapsed=r.dimensions_collapsed,
        )

    def _arith(
        self, op: str, substrate_id: int, value: int | float, parameters: dict[str, Any] | None
    ) -> s.ArithmeticResponse:
        r = getattr(self._operators, op)(substrate_id, value, parameters)
        return s.ArithmeticResponse(
            substrate_id=format_id(substrate_id),
            operation=op,
            original_value=r.original_value,
            value=r.value,
            new_value=r.new_value,
        )

    def add(
        self, substrate_id: int, value: int | float, parameters: dict[str, Any] | None = None
    ) -> s.ArithmeticResponse:
        return self._arith("add", substrate_id, value, parameters)

    def subtract(
        self, substrate_id: int, value: int | float, parameters: dict[str, Any] | None = None
    ) -> s.ArithmeticResponse:
        return self._arith("subtract", substrate_id, value, parameters)

    def modulus(
        self, substrate_id: int, modulus: int | float, parameters: dict[str, Any] | None = None
    ) -> s.ModulusResponse:
        r = self._operators.modulus(substrate_id, modulus, parameters)
        return s.ModulusResponse(
            substrate_id=format_id(substrate_id),
            value=r.value,
            modulus=r.modulus,
            expressed=r.expressed,
            residue=r.residue,
        )

    def _power_like(
        self, op: str, substrate_id: int, arg: int | float, parameters: dict[str, Any] | None
    ) -> s.PowerResponse:
        r = getattr(self._operators, op)(substrate_id, arg, parameters)
        return s.PowerResponse(
            substrate_id=format_id(substrate_id),
            operation=op,
            original_value=r.original_value,
            result_value=r.result_value,
        )

    def power(
        self, substrate_id: int, exponent: int | float, parameters: dict[str, Any] | None = None
    ) -> s.PowerResponse:
        return self._power_like("power", substrate_id, exponent, parameters)

    def root(
        self, substrate_id: int, degree: int | float, parameters: dict[str, Any] | None = None
    ) -> s.PowerResponse:
        return self._power_like("root", substrate_id, degree, parameters)

    def promote(
        self,
        substrate_id: int,
        delta: int | None = None,
        change_description: str | None = None,
        attribute_value: int | None = None,
    ) -> s.PromoteResponse:
        p = promotion.promote(substrate_id, delta, change_description, attribute_value)
        return s.PromoteResponse(
            substrate_id=format_id(p.identity),
            delta=p.delta,
            attribute_value=p.attribute_value,
            new_identity=p.new_identity,
            new_identity_hex=format_id(p.new_identity),
        )

    def promote_sequence(
        self, substrate_id: int, deltas: Sequence[int], attribute_value: int | None = None
    ) -> s.PromoteSequenceResponse:
        steps = promotion.promote_sequence(substrate_id, deltas, attribute_value)
        attr = promotion.DEFAULT_ATTRIBUTE_VALUE if attribute_value is None else attribute_value
        final = steps[-1].new_identity if steps else substrate_id
        return s.PromoteSequenceResponse(
            substrate_id=format_id(substrate_id),
            attribute_value=attr,
            steps=[
                s.PromotionStep(
                    delta=x.delta,
                    new_identity=x.new_identity,
                    new_identity_hex=format_id(x.new_identity),
                )
                for x in steps
            ],
            final_identity=final,
            final_identity_hex=format_id(final),
        )
