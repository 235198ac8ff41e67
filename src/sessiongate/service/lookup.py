"""Account lookup for decisions: near-cache, then Redis, then the configured failure mode."""

from __future__ import annotations

from dataclasses import dataclass

from redis.exceptions import RedisError

from sessiongate.domain.model import Account
from sessiongate.service.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Lookup:
    account: Account | None
    source: str  # "near_cache" | "redis" | "stale" | "unavailable"
    age_ms: int
    error: str = ""


async def lookup_account(rt: Runtime, account_id: str) -> Lookup:
    cache = rt.cache
    entry = cache.fresh(account_id)
    if entry is not None:
        return Lookup(entry.account, "near_cache", cache.age_ms(entry))
    try:
        entry = await cache.load(account_id)
        return Lookup(entry.account, "redis", 0)
    except (RedisError, OSError) as exc:
        if rt.settings.failure_mode == "static":
            stale = cache.last_known(account_id)
            if stale is not None:
                return Lookup(stale.account, "stale", cache.age_ms(stale), str(exc))
        return Lookup(None, "unavailable", 0, str(exc) or type(exc).__name__)
