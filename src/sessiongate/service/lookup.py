"""Account lookup for decisions: near-cache, then Redis, then the configured failure mode."""

from __future__ import annotations

from typing import NamedTuple

from redis.exceptions import RedisError

from sessiongate.domain.model import Account
from sessiongate.domain.records import FailureMode, StateSource
from sessiongate.service.runtime import Runtime


class Lookup(NamedTuple):  # a tuple: the cheapest immutable record to make on every login
    account: Account | None
    source: StateSource
    age_ms: int
    error: str = ""


async def lookup_account(rt: Runtime, account_id: str) -> Lookup:
    cache = rt.cache
    hit = cache.hit(account_id)
    if hit is not None:
        return Lookup(hit[0].account, StateSource.NEAR_CACHE, hit[1])
    return await load_account(rt, account_id)


async def load_account(rt: Runtime, account_id: str) -> Lookup:
    """The near-cache missed (already counted): read Redis, else the failure mode decides."""
    cache = rt.cache
    try:
        entry = await cache.load(account_id)
        return Lookup(entry.account, StateSource.REDIS, 0)
    except (RedisError, OSError) as exc:
        if rt.settings.failure_mode is FailureMode.STATIC:
            stale = cache.last_known(account_id)
            if stale is not None:
                return Lookup(stale.account, StateSource.STALE, cache.age_ms(stale), str(exc))
        return Lookup(None, StateSource.UNAVAILABLE, 0, str(exc) or type(exc).__name__)
