"""Rate limits per principal (DESIGN.md §7): a moving window kept in process memory or in
Redis, through the ``limits`` package. Nothing here speaks HTTP: the middleware
(``bfx.asgi.middleware.rate_limit``) turns a :class:`Decision` into headers and answers.

Why a moving window: it remembers when each unit of cost was spent, so no 60-second span
ever holds more than the limit (a fixed window lets twice the limit through across a
window boundary; the sliding-window counter estimates the previous window and can be off
by as much). Its price is memory: one timestamp per unit spent within the window, per
principal (600/minute: at most 600 numbers a principal). In Redis the check and the charge
are one Lua script, so workers and nodes sharing a Redis never admit more than the limit
together (docs/security.md, "Rate limits").
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any, NamedTuple

__all__ = [
    "REDIS_SCHEMES",
    "Decision",
    "Limiter",
    "LimiterUnavailable",
    "check_storage",
    "parse_rate",
    "parse_rate_storage",
]

#: The Redis locators ``--rate-limit-storage`` takes besides ``memory``.
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://")
#: Seconds one request may wait for the storage in all (connect, script, answer): a
#: Redis that is down or stalled costs a request this much at most, never a hang.
STORAGE_TIMEOUT = 0.5
#: After a storage failure, seconds during which requests are refused at once without
#: asking it again, so an outage does not hold every request for the full timeout.
COOLDOWN = 1.0


def parse_rate(text: str) -> str:
    """``600/minute``, ``10/second``, ``5000 per hour``, ``100/5minutes``: validated (one
    rate, at least 1) and returned as written, stripped."""
    from limits import parse_many

    raw = text.strip()
    try:
        items = parse_many(raw)
    except ValueError:
        raise ValueError(
            f"not a rate: {text!r} (use N/second, N/minute, N/hour or N/day, e.g. 600/minute)"
        ) from None
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(f"give one rate of at least 1, e.g. 600/minute: {text!r}")
    return raw


def parse_rate_storage(text: str) -> str:
    """``memory`` (each worker process counts on its own) or a Redis URL."""
    raw = text.strip()
    if raw.lower() == "memory":
        return "memory"
    if raw.startswith(REDIS_SCHEMES):
        return raw
    raise ValueError(f"rate-limit storage must be memory or a redis:// URL: {text!r}")


def check_storage(locator: str) -> str | None:
    """Why the storage cannot be used (a Redis that does not answer a PING), or None."""
    if locator == "memory":
        return None
    import redis

    client = redis.Redis.from_url(
        locator.replace("redis+unix://", "unix://", 1),
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"rate-limit storage {_safe(locator)} does not answer: {exc}"
    finally:
        client.close()
    return None


def _safe(locator: str) -> str:
    """The locator without its password, for messages."""
    scheme, sep, rest = locator.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


class LimiterUnavailable(Exception):
    """The storage failed or did not answer within :data:`STORAGE_TIMEOUT`."""


class Decision(NamedTuple):
    """One request's charge: admitted or not, and the window as it stands after it."""

    allowed: bool
    limit: int
    remaining: int
    #: Whole seconds until the oldest charge in the window expires (quota comes back).
    reset: int
    cost: int

    @property
    def retry_after(self) -> int:
        return max(1, self.reset)


class Limiter:
    """One rate for every principal, kept in ``storage`` (``memory`` or a Redis URL).

    Used from one event loop (one per worker process); the memory storage is per process.
    ``timeout``: how long a charge may wait on Redis (tests on a loaded machine raise it).
    """

    def __init__(
        self, rate: str, storage: str = "memory", timeout: float = STORAGE_TIMEOUT
    ) -> None:
        from limits import parse
        from limits.aio.strategies import MovingWindowRateLimiter
        from limits.storage import storage_from_string

        self.rate = parse_rate(rate)
        self.item = parse(self.rate)
        self.storage_locator = parse_rate_storage(storage)
        if self.storage_locator == "memory":
            backend: Any = storage_from_string("async+memory://")
        else:
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            backend = storage_from_string(
                "async+" + self.storage_locator,
                implementation="redispy",
                # Storage errors come out as limits.errors.StorageError.
                wrap_exceptions=True,
                # A URL's own ?socket_timeout= wins over these (redis-py's from_url).
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # One quick retry (a pooled connection the server closed); redis-py's
                # default backs off for seconds, longer than a request should wait.
                retry=Retry(NoBackoff(), 1),
            )
        self.strategy = MovingWindowRateLimiter(backend)
        self.timeout = timeout
        self._down_until = 0.0

    async def aclose(self) -> None:
        """Close the Redis connections (a worker's exit does it too; tests call this)."""
        bridge = getattr(self.strategy.storage, "bridge", None)
        if bridge is not None:
            await bridge.storage.aclose()

    @property
    def limit(self) -> int:
        return int(self.item.amount)

    async def charge(self, who: tuple[str, ...], cost: int) -> Decision:
        """Spend ``cost`` of ``who``'s limit if it all fits (nothing is spent otherwise).

        Raises :class:`LimiterUnavailable` when the storage fails or is slow; for
        :data:`COOLDOWN` seconds after that, at once."""
        from limits.errors import StorageError

        if time.monotonic() < self._down_until:
            raise LimiterUnavailable("rate-limit storage unavailable (recent failure)")
        try:
            async with asyncio.timeout(self.timeout):
                allowed = await self.strategy.hit(self.item, *who, cost=cost)
                stats = await self.strategy.get_window_stats(self.item, *who)
        except (StorageError, TimeoutError, OSError) as exc:
            self._down_until = time.monotonic() + COOLDOWN
            raise LimiterUnavailable(f"rate-limit storage unavailable: {exc!r}") from exc
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        return Decision(allowed, self.limit, max(0, stats.remaining), reset, cost)
