"""The near-cache's bounds against a real Redis: negative entries apart from accounts, one
byte budget for the answers remembered for its snapshots, and the time and reads a hung
Redis costs."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.decision import UNKNOWN_ACCOUNT
from sessiongate.service.answer_memo import (
    MAX_PER_ACCOUNT,
    AnswerMemo,
    Kept,
    Remembered,
    proxy_cost,
)
from sessiongate.service.wire import Prebuilt
from sessiongate.store.accounts import AccountStore
from sessiongate.store.client import transport
from sessiongate.store.embedded import EmbeddedRedis
from sessiongate.store.nearcache import Entry, NearCache
from sessiongate.store.scripts import Scripts


def test_memo_bytes_are_bounded_and_released_with_their_entries(
        redis_client: redis.Redis, redis_url: str) -> None:
    """The answer memo (service/answer_memo.py) keeps answers per near-cache snapshot, within
    one byte budget, and lets them go with their snapshot."""
    answer = Prebuilt.of(spb.CheckSessionResponse(decision=cpb.DECISION_DENY))
    value = Remembered(answer, UNKNOWN_ACCOUNT)

    async def run() -> None:
        client = transport(redis_url)
        cache = NearCache(AccountStore(client, Scripts(client)), ttl=60.0, max_unknown=2)
        memo = AnswerMemo(cache, budget=10_000)
        try:
            first = await cache.load("nobody-1")
            assert first.account is None  # a negative entry, remembered for as any
            kept = [memo.keep(first, "nobody-1", (f"user-{i}", Kept.ANSWER), value, 1_000)
                    for i in range(20)]
            assert kept == [True] * 10 + [False] * 10
            assert memo.bytes == 10_000
            second = await cache.load("nobody-2")
            assert not memo.keep(second, "nobody-2", ("alice", Kept.ANSWER), value, 1)  # spent
            cache.invalidate("nobody-1")  # its answers go with it, and their bytes
            assert memo.bytes == 0
            # a dropped snapshot keeps nothing
            assert not memo.keep(first, "nobody-1", ("late", Kept.ANSWER), value, 1)
            assert memo.keep(second, "nobody-2", ("alice", Kept.ANSWER), value, 100)
            await cache.load("nobody-3")
            await cache.load("nobody-4")  # two negative entries at most: nobody-2 is out
            assert cache.hit("nobody-2") is None
            assert memo.bytes == 0
        finally:
            await client.aclose()

    asyncio.run(run())


def test_proxied_answers_share_the_bounds_and_go_with_their_snapshot(
        redis_client: redis.Redis, redis_url: str) -> None:
    """Envoy's and /authz's answers (`keep_proxied`) count against the same answers per
    snapshot and byte budget as CheckSession's, and leave with their snapshot."""
    value = Remembered(Prebuilt.of(spb.CheckSessionResponse(decision=cpb.DECISION_DENY)),
                       UNKNOWN_ACCOUNT)

    async def run() -> None:
        client = transport(redis_url)
        cache = NearCache(AccountStore(client, Scripts(client)), ttl=60.0)
        memo = AnswerMemo(cache)
        try:
            snap = await cache.load("nobody")
            assert memo.keep(snap, "nobody", ("alice", Kept.ANSWER), value, 1_000)
            kept = [memo.keep_proxied(snap, "nobody", (f"u{i}", Kept.ENVOY, "", None, None),
                                      b"x" * 100) for i in range(MAX_PER_ACCOUNT + 5)]
            assert kept == [True] * (MAX_PER_ACCOUNT - 1) + [False] * 6
            assert memo.bytes == 1_000 + sum(
                proxy_cost((f"u{i}", Kept.ENVOY, "", None, None), b"x" * 100)
                for i in range(MAX_PER_ACCOUNT - 1))
            got = memo.proxied("nobody", "u0", Kept.ENVOY, "", "GET", "/any")
            assert got is not None and got[0] == b"x" * 100
            assert memo.proxied("nobody", "u0", Kept.AUTHZ, "", "GET", "/any") is None
            cache.invalidate("nobody")
            assert memo.bytes == 0
            assert memo.proxied("nobody", "u0", Kept.ENVOY, "", "GET", "/any") is None
        finally:
            await client.aclose()

    asyncio.run(run())


def test_a_hung_redis_fails_loads_within_their_budget_and_bounds_reads_in_flight(
        tmp_path: Path) -> None:
    """A stopped redis-server: each load gives up after `load_timeout`; a second load of the
    same id waits for the first read instead of sending another; distinct ids beyond
    `max_loads` reads in flight fail at once. Once Redis runs again, the reads land."""
    srv = EmbeddedRedis(tmp_path, persistent=False)
    srv.start()
    pid = srv.pid
    assert pid is not None

    async def run() -> None:
        client = transport(srv.url)
        cache = NearCache(AccountStore(client, Scripts(client)), ttl=60.0, load_timeout=0.2,
                          max_loads=2)
        try:
            assert (await cache.load("warm")).account is None  # connected
            os.kill(pid, signal.SIGSTOP)
            try:
                for aid in ("a", "a", "b"):
                    began = time.monotonic()
                    with pytest.raises(RedisTimeoutError):
                        await cache.load(aid)
                    assert time.monotonic() - began < 1.0
                began = time.monotonic()
                with pytest.raises(RedisConnectionError, match="2 Redis reads in flight"):
                    await cache.load("c")
                assert time.monotonic() - began < 0.1
            finally:
                os.kill(pid, signal.SIGCONT)
            for _ in range(100):  # the reads in flight end (answered, or their timeout)
                if (await _settled(cache, "c")) is not None:
                    break
                await asyncio.sleep(0.05)
            assert (await cache.load("c")).account is None
        finally:
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        srv.stop()


async def _settled(cache: NearCache, account_id: str) -> Entry | None:
    try:
        return await cache.load(account_id)
    except RedisError:
        return None
