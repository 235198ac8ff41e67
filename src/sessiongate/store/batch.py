"""The batch writer: session and login records of hot-path logins, written off the hot path.

A login that needs no atomic write (no seat limit, no metered feature) must not wait for
Redis. Its records are queued in memory and written by this component in batches (one round
trip, one `record_logins.lua` call per account and day), at least every `interval` seconds
(default 50 ms; the hot path never awaits it). The price is a loss window: records queued
when the process dies are lost (at most `interval` plus one round trip of logins; see
docs/billing.md).

One bad record must not hold back the others. A batch whose pipeline cannot reach Redis
(or that Redis refuses for now: read-only replica, out of memory, loading) is retried whole,
backing off up to 2 s: its writes are idempotent. A record whose own commands Redis refuses
(e.g. WRONGTYPE: a key of another type in the way) is retried alone once, then moved to the
dead-letter stream `sessiongate:batch:dead` with the reason, counted and logged; the rest of
its batch is written. Nothing is dropped silently: records lost (queue overflow, a stop with
Redis unreachable, an unwritable dead letter) are counted and logged with their number.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import NamedTuple

import structlog
from redis.exceptions import (
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)

from sessiongate.domain.clock import from_ms
from sessiongate.domain.periods import day_name, month_name
from sessiongate.domain.sessions import SessionRef
from sessiongate.store import keys
from sessiongate.store.activity import SEP, active_field, login_field
from sessiongate.store.sessions import LEASE_KEYS_MARGIN_MS
from sessiongate.store.transport import Call, Transport, script

log = structlog.get_logger(__name__)

MAX_QUEUED = 200_000  # beyond this (Redis down for long), the oldest records are dropped
MAX_BATCH = 2_000  # records per pipeline
DEAD_LETTER_MAXLEN = 100_000  # the dead-letter stream keeps about this many, newest
STOP_TIMEOUT = 10.0  # seconds a stop waits for the last flush
_DAY_MS = 86_400_000  # a UTC day in Unix ms
RECORD_LOGINS = script("record_logins")

# Reply errors that say Redis cannot write now, not that the record is bad: retried later.
_NOT_NOW = (ReadOnlyError, OutOfMemoryError, TryAgainError, ClusterDownError, MasterDownError,
            BusyLoadingError)
_NOT_NOW_CODES = ("BUSY", "MISCONF", "NOREPLICAS", "LOADING", "MASTERDOWN", "TRYAGAIN",
                  "CLUSTERDOWN", "READONLY", "OOM")


def _not_now(exc: Exception) -> bool:
    return isinstance(exc, _NOT_NOW) or str(exc).startswith(_NOT_NOW_CODES)


class LoginRecord(NamedTuple):
    """Queued on every login: a named tuple (docs/performance.md, "Session opened with fewer
    objects")."""

    ref: SessionRef
    at: int  # Unix ms
    expires: int  # the session's lease, Unix ms (seat-limited logins': take_seat.lua's)
    queued: float  # `time.monotonic()` when queued, for the queue's age metric


class _Group:
    """One account's records of one UTC day in a batch: one `record_logins.lua` call."""

    __slots__ = ("lease", "logins", "members", "since")

    def __init__(self, at: int) -> None:
        self.since = at  # the earliest login (ms), on that day
        self.lease = 0  # the longest lease from its login (ms)
        self.members: list[int] = []  # the records' positions in the batch
        self.logins: list[str] = []  # the script's argument of each


class _Outage(Exception):
    """Redis could not take a write now: the records stay queued and are retried."""


class BatchWriter:
    """An app component (start/stop); `login()` is synchronous and never touches Redis.

    Counters (read by the metrics' scrape thread): `written`, `dead` (dead-lettered),
    `lost` (neither written nor dead-lettered), `write_failures` (writes that failed and
    were retried); `pending` and `oldest_age()` describe the queue."""

    def __init__(self, redis: Transport, interval: float = 0.05) -> None:
        self._redis = redis
        self._interval = interval
        self._queue: list[LoginRecord] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.written = 0
        self.dead = 0
        self.lost = 0
        self.write_failures = 0
        self.failures = 0  # consecutive failed flushes (the back-off)
        self._last_error = ""

    @property
    def pending(self) -> int:
        return len(self._queue)

    def oldest_age(self) -> float:
        """Seconds the oldest queued record has waited (0: none); any thread may ask."""
        try:
            head = self._queue[0]
        except IndexError:
            return 0.0
        return max(time.monotonic() - head.queued, 0.0)

    def login(self, ref: SessionRef, at: int, expires: int) -> None:
        """Queue a login record (at `at`, Unix ms) and the session lease until `expires`."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.pop(0)
            self._lose(1, "queue full")
        self._queue.append(LoginRecord(ref, at, expires, time.monotonic()))

    def _lose(self, n: int, why: str, **kw: object) -> None:
        before, self.lost = self.lost, self.lost + n
        if why != "queue full" or before == 0 or before // 10_000 != self.lost // 10_000:
            log.error("login records lost", records=n, lost=self.lost, reason=why, **kw)

    async def flush(self) -> int:
        """Write everything queued, `MAX_BATCH` records per pipeline (a backlog after an outage
        must not stall Redis for other clients); records Redis refuses are dead-lettered. If
        Redis cannot take writes now, the rest stays queued. Returns the records written."""
        async with self._lock:
            written = 0
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                try:
                    written += await self._write(batch)
                except _Outage:
                    break
            return written

    def _requeue(self, records: list[LoginRecord]) -> None:
        self._queue[:0] = records
        excess = max(len(self._queue) - MAX_QUEUED, 0)
        if excess:
            del self._queue[:excess]
            self._lose(excess, "queue full")

    async def _write(self, batch: list[LoginRecord]) -> int:
        """Write `batch` (one pipeline), then retry alone each record one of whose commands
        was refused, dead-lettering those refused again. The number of records written; a
        `_Outage` (the unwritten records requeued) when Redis cannot take writes now."""
        failed: list[LoginRecord] = batch
        settled = 0  # records of `failed` written alone or dead-lettered
        done = 0
        try:
            refused = await self._pipeline(batch)
            if refused is None:
                self._failed(len(batch), error=self._last_error)
                raise _Outage
            failed = [batch[i] for i in sorted(refused)]
            done = len(batch) - len(failed)
            self.written += done
            for rec in failed:
                reason = await self._pipeline_one(rec)
                if reason is None:
                    done += 1
                    self.written += 1
                else:
                    await self._dead_letter(rec, reason)
                settled += 1
        except BaseException:  # _Outage, or a cancel (a stop's timeout): requeued, not lost
            self._requeue(failed[settled:])
            raise
        if self.failures:
            log.info("batch writes recovered", failures=self.failures)
            self.failures = 0
        return done

    def _failed(self, records: int, error: str) -> None:
        self.failures += 1
        self.write_failures += 1
        if self.failures == 1 or self.failures % 100 == 0:  # not 20 lines a second
            log.warning("batch write failed; will retry", records=records,
                        failures=self.failures, error=error)

    async def _pipeline(self, batch: list[LoginRecord]) -> set[int] | None:
        """`batch`'s records in one round trip: one `record_logins.lua` call per account and
        day, each login one argument (two commands a login cost ~35k instructions of
        encoding: docs/performance.md, "Login records: one script call per account and
        day"). The positions of the records whose call Redis refused; None if the round trip
        failed whole or Redis cannot write now (nothing known about it: its writes are
        idempotent, so it is retried whole)."""
        groups: dict[tuple[str, int], _Group] = {}
        for i, rec in enumerate(batch):
            ref = rec.ref
            at, exp = rec.at, rec.expires
            key = (ref.account_id, at // _DAY_MS)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Group(at)
            group.members.append(i)
            group.logins.append(f"{exp}{SEP}{ref.user_id}{SEP}{ref.nonce}")
            if at < group.since:
                group.since = at
            if exp - at > group.lease:
                group.lease = exp - at
        # By UTC day number: its month's name and its fields' prefixes, made once a batch.
        days: dict[int, tuple[str, str, str]] = {}
        calls: list[Call] = []
        for (aid, day_no), group in groups.items():
            names = days.get(day_no)
            if names is None:
                when = from_ms(group.since)
                day = day_name(when)
                names = days[day_no] = (month_name(when), login_field(day, ""),
                                        active_field(day, ""))
            month, logins, active = names
            calls.append(((keys.leases(aid), keys.usage(aid, month)),
                          (group.since, group.lease + LEASE_KEYS_MARGIN_MS, logins, active,
                           *group.logins)))
        try:
            replies = await self._redis.evalsha_many(RECORD_LOGINS, calls)
        except (RedisError, OSError) as exc:
            self._last_error = str(exc)
            return None
        refused: set[int] = set()
        for reply, group in zip(replies, groups.values(), strict=True):
            if isinstance(reply, Exception):
                if _not_now(reply):
                    self._last_error = str(reply)
                    return None
                refused.update(group.members)  # each retried alone (`_pipeline_one`)
        return refused

    async def _pipeline_one(self, rec: LoginRecord) -> str | None:
        """`rec` written alone: None once written, else the reason Redis refused it."""
        aid, uid = rec.ref.account_id, rec.ref.user_id
        exp, at = rec.expires, from_ms(rec.at)
        day = day_name(at)
        try:
            replies = await self._redis.many([
                ("ZADD", keys.leases(aid), "GT", exp, uid, exp, rec.ref.member),
                ("HSET", keys.usage(aid, month_name(at)),
                 login_field(day, rec.ref.nonce), 1, active_field(day, uid), 1)])
        except (RedisError, OSError) as exc:
            self._last_error = str(exc)
            self._failed(1, self._last_error)
            raise _Outage from exc
        errors = [(what, r) for what, r in zip(
            (f"ZADD {keys.leases(aid)}", f"HSET {keys.usage(aid, month_name(at))}"),
            replies, strict=True) if isinstance(r, Exception)]
        if not errors:
            return None
        if any(_not_now(e) for _, e in errors):
            self._last_error = str(errors[0][1])
            self._failed(1, self._last_error)
            raise _Outage
        return "; ".join(f"{what}: {e}" for what, e in errors)

    async def _dead_letter(self, rec: LoginRecord, reason: str) -> None:
        """`rec` and `reason` to the dead-letter stream, counted and logged; if even that
        fails, counted as lost and logged with the record's content."""
        content: dict[str, str] = {
            "account_id": rec.ref.account_id, "user_id": rec.ref.user_id,
            "nonce": rec.ref.nonce, "at": from_ms(rec.at).isoformat(),
            "expires": from_ms(rec.expires).isoformat()}
        try:
            fields = [x for kv in {**content, "reason": reason}.items() for x in kv]
            await self._redis.call("XADD", keys.BATCH_DEAD_LETTER, "MAXLEN", "~",
                                   DEAD_LETTER_MAXLEN, "*", *fields)
        except (RedisError, OSError) as exc:
            log.error("login record lost: not written, dead letter failed", record=content,
                      reason=reason, error=str(exc))
            self._lose(1, "dead letter failed")
            return
        self.dead += 1
        if self.dead <= 10 or self.dead % 1000 == 0:  # all are in the stream, with reasons
            log.warning("login record dead-lettered", record=content, reason=reason,
                        dead=self.dead, stream=keys.BATCH_DEAD_LETTER)

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
        """Final flush after the server drained: nothing queued is lost on a clean stop with
        Redis up. What could not be written by then (`STOP_TIMEOUT`) is counted as lost and
        logged with its number, never dropped silently."""
        if self._task is not None:
            self._stopping.set()
            with contextlib.suppress(TimeoutError):  # a flush stuck on an unreachable Redis
                await asyncio.wait_for(self._task, STOP_TIMEOUT)  # (cancelled: requeued)
            self._task = None
        if self._queue:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), STOP_TIMEOUT)
        left = len(self._queue)
        if left:
            accounts = sorted({r.ref.account_id for r in self._queue})
            self._queue.clear()
            self._lose(left, "stopped before Redis took them", accounts=accounts[:20],
                       error=self._last_error)
        log.info("batch writer stopped", written=self.written, dead_lettered=self.dead,
                 lost=self.lost)
