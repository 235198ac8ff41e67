"""The consumer-group worker's contract, on a real redis-server: a consumer killed mid-batch,
poison entries, XAUTOCLAIM's cursor, departed consumers, a Redis restart mid-read."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from sessiongate.billing.stream_worker import (
    ACK,
    DeadLetter,
    Entry,
    StreamWorker,
    Verdict,
    WorkerSettings,
)
from sessiongate.store.embedded import EmbeddedRedis
from tests.support import Connect, async_until, run_with

STREAMS = ("test:worker:a", "test:worker:b")
DEAD = "test:worker:dead"
GROUP = "test-group"


def settings(consumer: str, **kw: object) -> WorkerSettings:
    base: dict[str, object] = {
        "group": GROUP, "consumer": consumer, "streams": STREAMS, "dead_letters": DEAD,
        "claim_idle": 60.0, "retry_base": 0.02, "retry_max": 0.1, "batch": 100,
        "block": 0.1, "create_streams": True}
    return WorkerSettings(**{**base, **kw})  # type: ignore[arg-type]


class Ledger:
    """A handler that applies an entry by adding its `n` to a Redis set, idempotently (the way
    the payment engine dedupes by event id), and counts every delivery it sees."""

    def __init__(self, r: AsyncRedis) -> None:
        self.r = r
        self.seen: Counter[str] = Counter()

    async def __call__(self, entries: Sequence[Entry]) -> list[Verdict]:
        out: list[Verdict] = []
        for e in entries:
            n = e.fields[b"n"].decode()
            self.seen[n] += 1
            if n.startswith("poison"):
                out.append(DeadLetter(f"n: {n} is poison", {"source_id": e.id}))
                continue
            await self.r.sadd("test:worker:applied", n)
            out.append(ACK)
        return out


def pending(client: redis.Redis) -> int:
    return sum(int(client.xpending(s, GROUP)["pending"]) for s in STREAMS)


def add(client: redis.Redis, names: Sequence[str]) -> list[bytes]:
    """One MULTI: a reader meets them all at once. Returns their ids."""
    pipe = client.pipeline(transaction=True)
    for i, n in enumerate(names):
        pipe.xadd(STREAMS[i % 2], {"n": n})
    return list(pipe.execute())




def test_a_consumer_killed_mid_batch_is_taken_over_after_the_idle_time_without_loss_or_double(
    redis_client: redis.Redis, redis_url: str,
) -> None:
    first = [f"e{i}" for i in range(10)]
    second = [f"e{i}" for i in range(10, 30)]

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        applied_by_a: Counter[str] = Counter()
        held: list[int] = []
        hang = asyncio.Event()
        ledger_a = Ledger(r)

        async def dying(entries: Sequence[Entry]) -> list[Verdict]:
            if any(e.fields[b"n"].decode() in second for e in entries):
                # Killed mid-batch: half applied, then never returns, nothing acknowledged.
                held.append(len(entries))
                half = entries[: len(entries) // 2]
                await ledger_a(half)
                applied_by_a.update(e.fields[b"n"].decode() for e in half)
                await hang.wait()
            return await ledger_a(entries)

        a = StreamWorker(connect(), settings("A"), dying)
        add(redis_client, first)
        await a.start()
        await async_until(lambda: a.acked == len(first), "A's first batch")
        add(redis_client, second)
        await async_until(lambda: bool(applied_by_a), "A mid-batch")
        await a.stop(grace=0)  # the kill: its batch stays pending under its name
        assert pending(redis_client) == held[0] > 0

        ledger_b = Ledger(r)
        b = StreamWorker(connect(), settings("B", claim_idle=0.5), ledger_b)
        killed_at = time.monotonic()
        # B reads what A never read, and does not steal A's entries while they are young.
        assert await b.process_once(block_ms=0) == len(second) - held[0]
        assert pending(redis_client) == held[0]
        await b.start()
        try:
            await async_until(lambda: pending(redis_client) == 0, "B's take-over")
        finally:
            await b.stop()
        assert time.monotonic() - killed_at >= 0.5
        # Nothing A acknowledged reaches B; each entry of the killed batch reaches B once.
        assert ledger_b.seen == Counter(second)
        assert ledger_a.seen == Counter(first) + applied_by_a
        assert sum(applied_by_a.values()) == held[0] // 2
        assert await r.scard("test:worker:applied") == len(first) + len(second)

    run_with(redis_url, scenario)
    assert all(redis_client.xlen(s) == 15 for s in STREAMS)  # acknowledged, not deleted


def test_a_poison_entry_is_dead_lettered_with_its_reason_and_the_rest_go_on(
    redis_client: redis.Redis, redis_url: str,
) -> None:
    poison_id = add(redis_client, ["ok1", "poison-1", "ok2", "ok3"])[1]

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        ledger = Ledger(r)
        w = StreamWorker(connect(), settings("c", delete_acked=True), ledger)
        assert await w.process_once(block_ms=0) == 4
        assert w.dead == 1 and w.acked == 4
        assert ledger.seen == Counter(["ok1", "poison-1", "ok2", "ok3"])

    run_with(redis_url, scenario)
    (_, letter), = redis_client.xrange(DEAD)
    assert letter[b"reason"] == b"n: poison-1 is poison"
    assert letter[b"source_id"] == poison_id
    assert redis_client.smembers("test:worker:applied") == {b"ok1", b"ok2", b"ok3"}
    assert pending(redis_client) == 0
    assert all(redis_client.xlen(s) == 0 for s in STREAMS)  # a queue: acked entries deleted


def test_a_handler_failure_leaves_the_batch_pending_and_it_is_retried(
    redis_client: redis.Redis, redis_url: str,
) -> None:
    add(redis_client, ["x1", "x2"])

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        ledger = Ledger(r)
        calls = 0

        async def flaky(entries: Sequence[Entry]) -> list[Verdict]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise redis.ConnectionError("backend down")
            return await ledger(entries)

        w = StreamWorker(connect(), settings("c"), flaky)
        assert await w.process_once(block_ms=0) == 0
        assert w.in_flight == 2 and pending(redis_client) == 2
        await w.start()
        try:
            await async_until(lambda: w.in_flight == 0, "the retry")
        finally:
            await w.stop()
        assert ledger.seen == Counter(["x1", "x2"])

    run_with(redis_url, scenario)
    assert pending(redis_client) == 0


def test_xautoclaim_resumes_its_cursor(redis_client: redis.Redis, redis_url: str) -> None:
    """With claim_idle 0 every pending entry is claimable, this worker's own included: a
    restart from 0-0 would take the same first entries again and again."""
    add(redis_client, [f"p{i}" for i in range(10)])
    redis_client.xgroup_create(STREAMS[0], GROUP, id="0")
    redis_client.xreadgroup(GROUP, "crashed", {STREAMS[0]: ">"})  # five pending there

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        w = StreamWorker(connect(), settings("c", streams=STREAMS[:1], claim_idle=0.0, batch=2),
                         Ledger(r))
        assert await w.ensure_groups()
        taken = [await w.claim() for _ in range(3)]
        assert taken == [2, 2, 1] and w.in_flight == 5

    run_with(redis_url, scenario)
    owners = {c["name"]: c["pending"] for c in redis_client.xinfo_consumers(STREAMS[0], GROUP)}
    assert owners == {b"crashed": 0, b"c": 5}


def test_a_departed_consumer_is_taken_over_then_removed_from_the_group(
    redis_client: redis.Redis, redis_url: str,
) -> None:
    for s in STREAMS:
        redis_client.xgroup_create(s, GROUP, id="0", mkstream=True)
    redis_client.xgroup_createconsumer(STREAMS[0], GROUP, "ghost")  # holds nothing
    add(redis_client, ["d1", "d2"])
    redis_client.xreadgroup(GROUP, "crashed", {STREAMS[0]: ">", STREAMS[1]: ">"})

    def names() -> set[bytes]:
        return {c["name"] for s in STREAMS for c in redis_client.xinfo_consumers(s, GROUP)}

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        ledger = Ledger(r)
        w = StreamWorker(connect(), settings("live", claim_idle=3600, forget_after=0.05), ledger)
        await asyncio.sleep(0.1)
        assert await w.forget_departed() == ["ghost"]  # "crashed" holds entries: it stays
        assert names() == {b"crashed"}
        w = StreamWorker(connect(), settings("live", claim_idle=0.2, forget_after=0.3), ledger)
        await w.start()
        try:
            await async_until(lambda: pending(redis_client) == 0, "the take-over")
            await async_until(lambda: b"crashed" not in names(), "the departed consumer removed",
                        timeout=5)
        finally:
            await w.stop()
        assert ledger.seen == Counter(["d1", "d2"])

    run_with(redis_url, scenario)
    assert names() == {b"live"}


@pytest.mark.parametrize("persistent", [True, False], ids=["aof", "data-lost"])
def test_the_worker_recovers_when_redis_restarts_mid_read(tmp_path: Path,
                                                          persistent: bool) -> None:
    """The server stopped under a blocking XREADGROUP and started again on the same port,
    keeping its data (AOF) or losing it (the group is gone: NOGROUP, recreated)."""
    server = EmbeddedRedis(tmp_path / "redis", persistent=persistent)
    server.start()

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        ledger = Ledger(r)
        w = StreamWorker(connect(), settings("c", block=0.5), ledger)
        await w.start()
        try:
            with redis.Redis.from_url(server.url) as client:
                add(client, ["before"])
            await async_until(lambda: w.acked == 1, "the first entry")
            await asyncio.sleep(0.1)  # now blocked in XREADGROUP
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(0.3)  # reads fail; the worker backs off
            await asyncio.to_thread(server.start)
            with redis.Redis.from_url(server.url) as client:
                add(client, ["after-1", "after-2"])
            await async_until(lambda: w.acked == 3, "entries after the restart")
        finally:
            await w.stop()
        assert ledger.seen == Counter(["before", "after-1", "after-2"])

    try:
        run_with(server.url, scenario)
        with redis.Redis.from_url(server.url) as client:
            assert pending(client) == 0
    finally:
        server.stop()
