"""The scheduler: every `sweep_interval`, evaluate the accounts whose next evaluation is due.

The due index is 64 sorted sets (one per bucket, see store/slots.py): a sweep reads them in
one pipelined round trip, so it costs O(buckets + accounts due). Due accounts are evaluated
in chunks (`DunningEngine.evaluate_many`: one round trip reads a chunk, one commits it), each
through the same compare-and-set as a payment; any number of replicas may sweep at once and
each transition and reminder still happens once (the loser of a race finds the account's
next evaluation already moved on).

With `serve --workers N` the workers share the buckets (worker i owns those with
`bucket % N == i`), so N processes, N cores, sweep at once instead of racing over the same
accounts. A worker still takes an account of another worker's bucket once it has been due for
`takeover_after` seconds, so a worker that died or stalls delays its accounts, never drops them.
"""

from __future__ import annotations

import asyncio

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sessiongate.domain.clock import Clock
from sessiongate.store import keys
from sessiongate.store.transport import Transport, raise_first
from sessiongate.usecases.dunning import DunningEngine

log = structlog.get_logger(__name__)


class Sweeper:
    def __init__(self, redis: Transport, engine: DunningEngine, clock: Clock, *,
                 batch: int = 1000, chunk: int = 250, concurrency: int = 4,
                 share: tuple[int, int] = (0, 1), takeover_after: float = 30.0) -> None:
        self.redis = redis
        self.engine = engine
        self.clock = clock
        self.batch = batch
        self.chunk = chunk
        self.concurrency = concurrency
        index, of = share
        if not 0 <= index < of:
            raise ValueError(f"share {index} of {of}: want 0 <= index < count")
        self.owned = frozenset(b for b in keys.ALL_BUCKETS if b % of == index)
        self.takeover_ms = int(takeover_after * 1000)

    async def due(self) -> list[str]:
        """Accounts due in the buckets this sweeper owns, and those due for `takeover_after`
        in the others' (up to `batch` per bucket)."""
        now_ms = int(self.clock.now().timestamp() * 1000)
        commands = []
        for b in keys.ALL_BUCKETS:
            until = now_ms if b in self.owned else now_ms - self.takeover_ms
            commands.append(("ZRANGEBYSCORE", keys.due_index(b), "-inf", until,
                             "LIMIT", 0, self.batch))
        found: list[str] = []
        for ids in raise_first(await self.redis.many(commands)):
            found.extend(i.decode() if isinstance(i, bytes) else str(i) for i in ids)
        return found

    async def sweep_once(self) -> int:
        """Evaluate every due account, `chunk` accounts per round trip and `concurrency`
        chunks in flight; returns how many commits it made."""
        gate = asyncio.Semaphore(self.concurrency)

        async def one(ids: list[str]) -> int:
            async with gate:
                made = 0
                for aid, res in zip(ids, await self.engine.evaluate_many(ids), strict=True):
                    if isinstance(res, Exception):
                        log.warning("evaluation failed", account=aid, error=repr(res))
                    else:
                        made += res.ok
                return made

        due = await self.due()
        chunks = [due[i:i + self.chunk] for i in range(0, len(due), self.chunk)]
        return sum(await asyncio.gather(*(one(c) for c in chunks)))


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
