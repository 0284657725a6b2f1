"""Middleware: rate limits per principal (docs/security.md, "Rate limits").

It runs after ``body``, so a batch's cost is known exactly (the operation's ``cost`` per
item of its ``items`` field) and one request is one charge: nothing is spent on a request
that the body checks refuse, and nothing is charged twice. The caller is
``call.principal`` once authentication names one, else the client's address.

Operations without a scope (health, the docs pages, OpenAPI) are not limited. Every
answer of a limited operation, success or error, carries ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset``; over the limit the answer is 429
``rate_limited`` with ``Retry-After``. A storage that fails or stalls answers 503
``rate_limit_unavailable`` (fail closed): a limit that silently lapses is no limit.
"""

from __future__ import annotations

from bfx import errors
from bfx.asgi.base import Response
from bfx.asgi.metrics import RequestMetrics
from bfx.asgi.middleware.errors import error_answer
from bfx.asgi.pipeline import Call, Handle
from bfx.budget import Cancelled
from bfx.ratelimit import COOLDOWN, Decision, Limiter, LimiterUnavailable

__all__ = ["cost_of", "rate_limit", "who"]


def who(call: Call) -> tuple[str, ...]:
    """The key a caller is counted under: its principal, else its address (no port)."""
    if call.principal != "-":
        return ("bfx", "principal", call.principal)
    client = call.client
    host = client[0] if client else "unknown"
    return ("bfx", "address", str(host))


def cost_of(call: Call) -> int:
    """The operation's cost, times the items of a batch (an empty batch costs one)."""
    op = call.route.op
    if op.items is not None and call.body is not None:
        return int(op.cost * max(1, len(getattr(call.body, op.items))))
    return int(op.cost)


def _headers(d: Decision) -> list[tuple[bytes, bytes]]:
    return [
        (b"ratelimit-limit", str(d.limit).encode()),
        (b"ratelimit-remaining", str(d.remaining).encode()),
        (b"ratelimit-reset", str(d.reset).encode()),
    ]


class rate_limit:
    """A ``wrap(next_)`` factory (it must add headers to whatever answers below it)."""

    def __init__(self, limiter: Limiter, counters: RequestMetrics) -> None:
        self.limiter = limiter
        self.counters = counters

    def __call__(self, next_: Handle) -> Handle:
        limiter = self.limiter
        counters = self.counters

        async def handle(call: Call) -> Response:
            route = call.route
            if route is None or route.op.scope is None:
                return await next_(call)
            cost = cost_of(call)
            try:
                decision = await limiter.charge(who(call), cost)
            except LimiterUnavailable:
                counters.count_security_event("rate_limit_unavailable")
                return error_answer(
                    errors.RateLimitUnavailableError(
                        "the rate-limit storage is unavailable; retry shortly",
                        retry_after=int(COOLDOWN),
                    )
                )
            headers = _headers(decision)
            if not decision.allowed:
                counters.count_security_event("rate_limited")
                resp = error_answer(_refusal(decision))
                resp.headers = [*headers, (b"retry-after", str(decision.retry_after).encode())]
                return resp
            try:
                resp = await next_(call)
            except Exception as exc:
                if isinstance(exc, Cancelled):
                    raise  # a departed client: no answer to add headers to
                # The same answer the errors middleware would give, with the headers.
                resp = error_answer(exc)
            resp.headers = [*(resp.headers or ()), *headers]
            return resp

        return handle


def _refusal(d: Decision) -> errors.RateLimitedError:
    details = {
        "limit": d.limit,
        "remaining": d.remaining,
        "cost": d.cost,
        "retry_after": d.retry_after,
    }
    if d.cost > d.limit:
        # Never admitted however long one waits: the batch must be split.
        return errors.RateLimitedError(
            f"this request costs {d.cost}, more than the whole limit of {d.limit}; "
            "send fewer items per request",
            {**details, "reason": "cost_exceeds_limit"},
            retry_after=d.retry_after,
        )
    return errors.RateLimitedError(
        f"rate limit exceeded: this request costs {d.cost} and {d.remaining} of "
        f"{d.limit} remain; retry after {d.retry_after}s",
        details,
        retry_after=d.retry_after,
    )
