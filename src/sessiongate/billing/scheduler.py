"""The scheduler: every `sweep_interval`, evaluate the accounts whose next evaluation is due.

The due index is 64 sorted sets (one per bucket, see store/slots.py): a sweep reads them in
one pipelined round trip, so it costs O(buckets + accounts due). Each due account goes
through the same compare-and-set as a payment; any number of replicas may sweep at once and
each transition and reminder still happens once (the loser of a race finds the account's
next evaluation already moved on).
"""

from __future__ import annotations

import asyncio

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.asyncio import Redis

from sessiongate.billing.engine import DunningEngine
from sessiongate.domain.clock import Clock
from sessiongate.store import keys

log = structlog.get_logger(__name__)


class Sweeper:
    def __init__(self, redis: Redis, engine: DunningEngine, clock: Clock, *,
                 batch: int = 1000, concurrency: int = 16) -> None:
        self.redis = redis
        self.engine = engine
        self.clock = clock
        self.batch = batch
        self.concurrency = concurrency

    async def due(self) -> list[str]:
        now_ms = int(self.clock.now().timestamp() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for b in keys.ALL_BUCKETS:
            pipe.zrangebyscore(keys.due_index(b), "-inf", now_ms, start=0, num=self.batch)
        found: list[str] = []
        for ids in await pipe.execute():
            found.extend(i.decode() if isinstance(i, bytes) else str(i) for i in ids)
        return found

    async def sweep_once(self) -> int:
        """Evaluate every due account, a few at a time; returns how many commits it made."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(aid: str) -> bool:
            async with gate:
                try:
                    return (await self.engine.evaluate_due(aid)).ok
                except Exception:
                    log.exception("evaluation failed", account=aid)
                    return False

        return sum(await asyncio.gather(*(one(aid) for aid in await self.due())))


class DunningScheduler:
    """An app component: APScheduler runs `sweep_once` on an interval, never overlapping."""

    def __init__(self, sweeper: Sweeper, interval: float) -> None:
        self.sweeper = sweeper
        self.interval = interval
        self._scheduler: AsyncIOScheduler | None = None

    async def start(self) -> None:
        scheduler = self._scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(self.sweeper.sweep_once, "interval", seconds=self.interval,
                          id="dunning-sweep", max_instances=1, coalesce=True,
                          misfire_grace_time=None)
        scheduler.start()

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
