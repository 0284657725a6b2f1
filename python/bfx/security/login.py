"""Failed logins, limited per username and per client address (docs/security.md, "Login").

Each failed login is charged to its username and to its client address, in moving
windows of their own (the ``limits`` package, as ``bfx.ratelimit``); a login whose name
or address has no failure left is refused with 429 ``rate_limited`` and ``Retry-After``
before its password is checked, so a brute force costs the server no argon2 work once
it is over the limit. A successful login is not charged. Unknown names are charged like
known ones (the answer must not tell them apart).

The windows are kept in each worker's memory: with ``--workers N`` an attacker spreading
attempts over every worker gets up to N times the limit; the check and the charge are
two steps, so logins running at that very moment (at most the heavy pool's threads per
worker) may each add one failure past it.
"""

from __future__ import annotations

import math
import time

from bfx import errors

__all__ = ["LoginGuard"]


class LoginGuard:
    """Failure limits for ``per_user`` and ``per_address`` (rates such as ``10/15minutes``)."""

    def __init__(self, per_user: str, per_address: str) -> None:
        from limits import parse
        from limits.storage import MemoryStorage
        from limits.strategies import MovingWindowRateLimiter

        self._strategy = MovingWindowRateLimiter(MemoryStorage())
        self._user = parse(per_user)
        self._address = parse(per_address)

    def _keys(self, username: str, address: str) -> tuple[tuple[object, tuple[str, ...]], ...]:
        return (
            (self._user, ("bfx-login", "user", username)),
            (self._address, ("bfx-login", "address", address)),
        )

    def check(self, username: str, address: str) -> None:
        """RateLimitedError when the name or the address has no failure left."""
        for item, key in self._keys(username, address):
            if not self._strategy.test(item, *key):  # type: ignore[arg-type]
                stats = self._strategy.get_window_stats(item, *key)  # type: ignore[arg-type]
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                which = key[1]
                raise errors.RateLimitedError(
                    f"too many failed logins for this {which}; retry after {retry}s",
                    {"reason": "failed_logins", "per": which, "retry_after": retry},
                    retry_after=retry,
                )

    def failed(self, username: str, address: str) -> None:
        for item, key in self._keys(username, address):
            self._strategy.hit(item, *key)  # type: ignore[arg-type]
