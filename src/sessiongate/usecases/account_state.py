"""Where a decision's account state comes from: the near-cache, then the backend, then the
configured failure mode (`static`: the last known state, up to its maximum age)."""

from __future__ import annotations

from typing import NamedTuple

from sessiongate.domain.model import Account
from sessiongate.domain.records import FailureMode, StateSource
from sessiongate.ports import AccountCache


class Lookup(NamedTuple):  # a tuple: the cheapest immutable record to make on every login
    account: Account | None
    source: StateSource
    age_ms: int
    error: str = ""


class AccountLookup:
    """Account state for decisions, never raising for an unreachable backend: the lookup
    then says UNAVAILABLE (or STALE) and why, and the caller's failure mode decides."""

    def __init__(self, cache: AccountCache, failure_mode: FailureMode) -> None:
        self.cache = cache
        self.failure_mode = failure_mode

    async def find(self, account_id: str) -> Lookup:
        hit = self.cache.hit(account_id)
        if hit is not None:
            return Lookup(hit[0].account, StateSource.NEAR_CACHE, hit[1])
        return await self.load(account_id)

    async def load(self, account_id: str) -> Lookup:
        """The near-cache missed (already counted): read the backend, else the failure mode
        decides."""
        cache = self.cache
        try:
            snapshot = await cache.load(account_id)
            return Lookup(snapshot.account, StateSource.REDIS, 0)
        except cache.unavailable as exc:
            if self.failure_mode is FailureMode.STATIC:
                stale = cache.last_known(account_id)
                if stale is not None:
                    return Lookup(stale[0].account, StateSource.STALE, stale[1], str(exc))
            return Lookup(None, StateSource.UNAVAILABLE, 0, str(exc) or type(exc).__name__)
