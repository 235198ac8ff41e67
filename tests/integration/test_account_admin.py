"""The account use-case on its own (usecases/accounts.py): built over the real stores on a
real Redis, as app.py builds it, without gRPC; the gRPC face is tested through the
servicer (test_access_levels.py, test_seat_log_periods.py, tests/e2e/test_seat_log.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
import redis

from sessiongate.domain.clock import ManualClock
from sessiongate.domain.errors import FailedPrecondition
from sessiongate.domain.model import Account, AccountState
from sessiongate.store import keys
from sessiongate.store.accounts import AccountStore
from sessiongate.store.children import ChildrenIndex
from sessiongate.store.client import transport
from sessiongate.store.nearcache import NearCache
from sessiongate.store.policies import PolicyStore
from sessiongate.store.scripts import Scripts
from sessiongate.store.usage import UsageStore
from sessiongate.usecases.accounts import AccountAdmin
from sessiongate.usecases.dunning import DunningEngine


def run(redis_url: str, scenario: Callable[[AccountAdmin, NearCache], Awaitable[None]]
        ) -> None:
    async def main() -> None:
        tr = transport(redis_url)
        scripts = Scripts(tr)
        store = AccountStore(tr, scripts)
        cache = NearCache(store, ttl=60.0)
        clock = ManualClock()
        admin = AccountAdmin(store, store, DunningEngine(store, PolicyStore(tr), clock.now),
                             cache, ChildrenIndex(tr), UsageStore(tr, scripts), clock)
        try:
            await scenario(admin, cache)
        finally:
            await tr.aclose()

    asyncio.run(main())


def test_upsert_commits_seeds_the_near_cache_indexes_the_parent_and_logs_seats_once(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(admin: AccountAdmin, cache: NearCache) -> None:
        now = admin.clock.now()
        await admin.upsert(Account(account_id="reseller"), None, now)
        saved = await admin.upsert(Account(account_id="acme", users=frozenset({"a", "b"}),
                                           parent_id="reseller"), None, now)
        assert (saved.version, saved.state_at(now)) == (1, AccountState.ACTIVE)
        hit = cache.hit("acme")
        assert hit is not None and hit[0].account == saved  # seeded, not read back
        again = await admin.upsert(Account(account_id="acme", users=frozenset({"b", "a"}),
                                           parent_id="reseller", admin_emails=("x@y.z",)),
                                   None, now + timedelta(days=1))
        assert again.version == 2 and again.admin_emails == ("x@y.z",)

    run(redis_url, scenario)
    assert redis_client.smembers(keys.children("reseller")) == {b"acme"}
    # One roster entry: the second upsert changed no billable seat, so logged nothing.
    assert (redis_client.hget(keys.account("acme"), "s") or b"").count(b"\x1e") == 1
    assert redis_client.llen(keys.seat_changes("acme")) == 0


def test_a_parent_that_would_make_a_cycle_is_refused_naming_the_field_and_changes_nothing(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(admin: AccountAdmin, cache: NearCache) -> None:
        now = admin.clock.now()
        await admin.upsert(Account(account_id="top"), None, now)
        await admin.upsert(Account(account_id="mid", parent_id="top"), None, now)
        with pytest.raises(FailedPrecondition, match=r"^account\.parent_id: a cycle "
                                                     r"\(top -> mid -> top\)$"):
            await admin.upsert(Account(account_id="top", parent_id="mid"), None, now)
        top = await admin.accounts.get("top")
        assert top is not None and (top.version, top.parent_id) == (1, "")

    run(redis_url, scenario)
    assert redis_client.smembers(keys.children("mid")) == set()
    assert redis_client.smembers(keys.children("top")) == {b"mid"}
