"""The batch writer: session and login records of hot-path logins, written off the hot path.

A login that needs no atomic write (no seat limit, no metered feature) must not wait for
Redis. Its records are queued in memory and written by this component in pipelined batches,
at least every `interval` seconds (default 50 ms; the hot path never awaits it). The price is
a loss window: records queued when the process dies are lost (at most `interval` plus one
round trip of logins; see docs/billing.md). A write that fails is retried, backing off up to
2 s while Redis stays unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from redis.exceptions import RedisError

from sessiongate.domain.periods import day_name, month_name
from sessiongate.domain.sessions import SessionRef
from sessiongate.store import keys
from sessiongate.store.activity import active_field, login_field
from sessiongate.store.sessions import LEASE_KEYS_MARGIN_MS
from sessiongate.store.transport import Transport, raise_first

log = structlog.get_logger(__name__)

MAX_QUEUED = 200_000  # beyond this (Redis down for long), the oldest records are dropped
MAX_BATCH = 2_000  # records per pipeline


@dataclass(frozen=True, slots=True)
class LoginRecord:
    ref: SessionRef
    at: datetime
    expires: datetime  # the session's lease (seat-limited logins are written by take_seat.lua)


class BatchWriter:
    """An app component (start/stop); `login()` is synchronous and never touches Redis."""

    def __init__(self, redis: Transport, interval: float = 0.05) -> None:
        self._redis = redis
        self._interval = interval
        self._queue: list[LoginRecord] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.written = 0
        self.dropped = 0
        self.failures = 0  # consecutive failed flushes

    @property
    def pending(self) -> int:
        return len(self._queue)

    def login(self, ref: SessionRef, at: datetime, expires: datetime) -> None:
        """Queue a login record and the session lease until `expires`."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.pop(0)
            self.dropped += 1
        self._queue.append(LoginRecord(ref, at, expires))

    async def flush(self) -> int:
        """Write everything queued, `MAX_BATCH` records per pipeline (a backlog after an outage
        must not stall Redis for other clients); on failure the rest stays queued."""
        async with self._lock:
            written = 0
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                if not await self._write(batch):
                    break
                written += len(batch)
            return written

    async def _write(self, batch: list[LoginRecord]) -> bool:
        commands: list[tuple[Any, ...]] = []
        trimmed: set[str] = set()
        keep: dict[str, int] = {}  # account -> how long its lease sets must last (ms)
        for rec in batch:
            aid, uid = rec.ref.account_id, rec.ref.user_id
            if aid not in trimmed:
                # Leases that ended before this login: nothing else removes them for an
                # account without a seat limit (its logins never run take_seat.lua), so
                # without this its lease set would grow by every session ever opened. (Seats
                # of take_seat.lua score above any time: see keys.leases.)
                trimmed.add(aid)
                at = int(rec.at.timestamp() * 1000)
                commands.append(("ZREMRANGEBYSCORE", keys.leases(aid), "-inf", f"({at}"))
            exp = int(rec.expires.timestamp() * 1000)
            keep[aid] = max(keep.get(aid, 0),
                            exp - int(rec.at.timestamp() * 1000) + LEASE_KEYS_MARGIN_MS)
            # The session and its user's seat (unshifted: unlimited accounts count no seats).
            commands.append(("ZADD", keys.leases(aid), "GT", exp, uid, exp, rec.ref.member))
            day = day_name(rec.at)
            # Fields, not counters: a retried batch (the outcome of a failed pipeline is
            # unknown) rewrites the same fields and counts nothing twice. One small hash per
            # account and month holds them (compact in Redis, see store/activity.py).
            commands.append(("HSET", keys.usage(aid, month_name(rec.at)),
                             login_field(day, rec.ref.nonce), 1, active_field(day, uid), 1))
        for aid, ms in keep.items():  # housekeeping, as in take_seat.lua: an idle account's
            commands.append(("PEXPIRE", keys.leases(aid), ms))  # leases vanish a day after
        try:
            raise_first(await self._redis.many(commands))
        except (RedisError, OSError) as exc:
            self._queue[:0] = batch
            excess = max(len(self._queue) - MAX_QUEUED, 0)
            del self._queue[:excess]
            self.dropped += excess
            self.failures += 1
            if self.failures == 1 or self.failures % 100 == 0:  # not 20 lines a second
                log.warning("batch write failed; will retry", records=len(batch),
                            failures=self.failures, error=str(exc))
            return False
        if self.failures:
            log.info("batch writes recovered", failures=self.failures)
            self.failures = 0
        self.written += len(batch)
        return True

    async def _run(self) -> None:
        # A stop flag, not task.cancel(): on Python 3.11 a cancel landing inside the pipeline
        # can surface as TimeoutError (an OSError, caught by flush) and be lost, hanging stop().
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                # Backs off while Redis fails (up to 2 s), back to the interval once it answers.
                await asyncio.wait_for(self._stopping.wait(),
                                       min(self._interval * 2 ** min(self.failures, 6), 2.0))
            if self._queue:
                await self.flush()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Final flush after the server drained: nothing queued is lost on a clean stop."""
        if self._task is not None:
            self._stopping.set()
            try:
                await asyncio.wait_for(self._task, 10.0)
            except TimeoutError:  # a flush stuck on an unreachable Redis: give up on it
                self._task.cancel()
            self._task = None
        await self.flush()
