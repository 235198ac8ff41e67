"""The near-cache's bounds against a real Redis: negative entries apart from accounts, and
one byte budget for what the entries' memos hold."""

from __future__ import annotations

import asyncio

import redis

from sessiongate.store.accounts import AccountStore
from sessiongate.store.client import connect
from sessiongate.store.nearcache import NearCache
from sessiongate.store.scripts import Scripts


def test_memo_bytes_are_bounded_and_released_with_their_entries(
        redis_client: redis.Redis, redis_url: str) -> None:
    async def run() -> None:
        client = connect(redis_url)
        cache = NearCache(AccountStore(client, Scripts(client)), ttl=60.0, max_unknown=2,
                          memo_budget=10_000)
        try:
            first = await cache.load("nobody-1")
            assert first.account is None  # a negative entry, with a memo as any
            kept = [cache.keep(first.memo, f"user-{i}", i, 1_000) for i in range(20)]
            assert kept == [True] * 10 + [False] * 10
            assert cache.memo_bytes == 10_000
            second = await cache.load("nobody-2")
            assert not cache.keep(second.memo, "alice", 0, 1)  # the budget is spent
            cache.invalidate("nobody-1")  # its memo goes with it, and its bytes
            assert cache.memo_bytes == 0
            assert not cache.keep(first.memo, "late", 0, 1)  # a dropped memo keeps nothing
            assert cache.keep(second.memo, "alice", 0, 100)
            await cache.load("nobody-3")
            await cache.load("nobody-4")  # two negative entries at most: nobody-2 is out
            assert cache.fresh("nobody-2") is None
            assert cache.memo_bytes == 0
        finally:
            await client.aclose()

    asyncio.run(run())
