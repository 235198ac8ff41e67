"""Deliver the bucket outboxes to the sinks: at least once, normally once, never lost.

One consumer group (`GROUP`) over the 64 bucket outbox streams, read with a single blocking
XREADGROUP (one read per stream on a Redis Cluster, where they live on several nodes). An
entry is acknowledged (and deleted: the outbox is a queue) only when every sink is done with
it: delivered, or refused for good and dead-lettered. Which sinks are done is recorded in
Redis per notification id, so a retry after a webhook outage does not resend the emails.
Failed entries stay pending and are retried with capped exponential backoff; entries left
pending by a replica that died are taken over with XAUTOCLAIM once idle for `claim_idle`. A
live replica touches (XCLAIM to itself) each entry it retries, so others do not take over its
entries while it backs off.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from sessiongate.billing.notify.email import EmailSink
from sessiongate.billing.notify.sink import MalformedEntry, Notification, PermanentFailure, Sink
from sessiongate.billing.notify.standing import link_signer, with_standing_url
from sessiongate.billing.notify.webhook import WebhookSink
from sessiongate.config import Settings
from sessiongate.store import keys

log = structlog.get_logger(__name__)

GROUP = "sessiongate-notify"
DONE_TTL_S = 7 * 24 * 3600  # the per-sink record outlives any plausible outage
MALFORMED = "-"  # the dead letter's `sink` for an entry that is no notification


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _streams_reply(reply: Any) -> list[tuple[Any, list[Any]]]:
    """XREADGROUP's answer as (stream, entries) pairs: RESP2 gives a list, RESP3 a dict."""
    if not reply:
        return []
    items = reply.items() if isinstance(reply, dict) else reply
    return [(stream, list(entries[0] if isinstance(reply, dict) else entries or []))
            for stream, entries in items]


@dataclass(slots=True)
class _Entry:
    bucket: int
    entry_id: str
    fields: dict[bytes, bytes]
    attempts: int = 0
    due: float = 0.0  # monotonic time of the next attempt


class Deliverer:
    """A `Component`: `start()` spawns the delivery loop, `stop()` ends it without acking."""

    def __init__(
        self,
        redis: Redis,
        sinks: Sequence[Sink],
        *,
        consumer: str,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        claim_idle: float = 300.0,
        batch: int = 50,
        max_in_flight: int = 1000,
        concurrency: int = 16,
        block: float = 1.0,
        forget_after: float = 3600.0,
        enrich: Callable[[Notification], Notification] | None = None,
        sharded: bool = False,
    ) -> None:
        if not sinks:
            raise ValueError("a deliverer needs at least one sink")
        self._redis = redis
        self.sinks = tuple(sinks)
        self._enrich = enrich
        self.consumer = consumer
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._claim_idle_ms = max(1, int(claim_idle * 1000))
        self._claim_every = min(max(claim_idle / 2, 0.05), 30.0)
        self._batch = batch
        self._max_in_flight = max_in_flight
        self._limit = asyncio.Semaphore(concurrency)
        self._block_ms = max(1, int(block * 1000))
        self._forget_after_ms = int(forget_after * 1000)
        self._prune_every = min(forget_after, 600.0)
        self._streams = {keys.outbox(b): b for b in keys.ALL_BUCKETS}
        self._cluster = sharded  # streams on several nodes (`Transport.sharded`)
        self._work: dict[tuple[int, str], _Entry] = {}
        self._claim_from: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._busy = False
        # Plain counters per sink name (metrics are exported elsewhere).
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # attempts that will be retried
        self.dead: Counter[str] = Counter()  # refused for good, dead-lettered
        self.acked = 0

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="notify-deliverer")
        log.info("notification delivery started", consumer=self.consumer,
                 sinks=[s.name for s in self.sinks])

    async def stop(self, grace: float = 5.0) -> None:
        """Let an attempt in progress finish (up to `grace`), then cancel. Nothing is acked
        that was not delivered: what is left stays pending for this or another replica."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        if not self._busy:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(task, grace)

    @property
    def in_flight(self) -> int:
        """Entries read but not yet acknowledged by this replica (failed ones, backing off)."""
        return len(self._work)

    # The loop.

    async def _run(self) -> None:
        ready = False
        failures = 0
        next_claim = 0.0
        next_prune = 0.0
        while not self._stopping:
            try:
                if not ready:
                    await self._ensure_groups()
                    await self._recover_own()
                    ready = True
                now = time.monotonic()
                if now >= next_claim:
                    await self._claim()
                    next_claim = now + self._claim_every
                if now >= next_prune:
                    await self._forget_departed()
                    next_prune = now + self._prune_every
                due = [e for e in self._work.values() if e.due <= now]
                if due:
                    await self._attempt_all(due)
                else:
                    wake = min([e.due for e in self._work.values()] + [next_claim])
                    await self._read_new(wake - now)
                failures = 0
            except asyncio.CancelledError:
                raise
            except ResponseError as e:
                if "NOGROUP" in str(e):  # stream or group gone (e.g. flushed): recreate
                    ready = False
                    continue
                failures += 1
                log.exception("notification delivery loop failed", attempt=failures)
                await asyncio.sleep(self.backoff(failures))
            except Exception:
                failures += 1
                log.exception("notification delivery loop failed", attempt=failures)
                await asyncio.sleep(self.backoff(failures))

    def backoff(self, attempts: int) -> float:
        """Capped exponential with jitter: base, 2 base, 4 base, ... up to retry_max."""
        delay = min(self._retry_max, self._retry_base * 2 ** min(attempts - 1, 30))
        return float(delay * random.uniform(0.5, 1.0))

    async def _ensure_groups(self) -> None:
        """Create the group on every outbox (from the start: entries older than the group
        count); an existing group is left as it is."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xgroup_create(stream, GROUP, id="0", mkstream=True)
        for res in await pipe.execute(raise_on_error=False):
            if isinstance(res, Exception) and "BUSYGROUP" not in str(res):
                raise res

    def _take(self, stream: Any, entries: Iterable[Any]) -> list[_Entry]:
        bucket = self._streams[_text(stream)]
        fresh = []
        for entry_id, fields in entries:
            if entry_id is None:
                continue
            key = (bucket, _text(entry_id))
            if key in self._work:
                continue  # already ours (e.g. reclaimed from ourselves): one attempt at a time
            e = _Entry(bucket, key[1], fields or {}, due=time.monotonic())
            self._work[key] = e
            fresh.append(e)
        return fresh

    async def _recover_own(self) -> None:
        """Entries pending under this consumer name (a restart with a fixed name)."""
        cursors: dict[Any, Any] = dict.fromkeys(self._streams, "0")
        while cursors and len(self._work) < self._max_in_flight:
            res = await self._read(cursors)
            cursors = {}
            for stream, entries in res:
                if entries:
                    self._take(stream, entries)
                    cursors[_text(stream)] = _text(entries[-1][0])

    async def _read(self, ids: dict[Any, Any], block: int | None = None
                    ) -> list[tuple[Any, list[Any]]]:
        """XREADGROUP: one blocking call over all streams on a single Redis; on a cluster
        (streams on several nodes) one non-blocking call per stream."""
        if not self._cluster:
            return _streams_reply(await self._redis.xreadgroup(
                GROUP, self.consumer, ids, count=self._batch, block=block))
        replies = await asyncio.gather(*(
            self._redis.xreadgroup(GROUP, self.consumer, {s: i}, count=self._batch)
            for s, i in ids.items()
        ))
        return [r for reply in replies for r in _streams_reply(reply)]

    async def _claim(self) -> None:
        """Take over entries idle at other consumers for `claim_idle` (a crashed replica)."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xautoclaim(stream, GROUP, self.consumer, self._claim_idle_ms,
                            self._claim_from.get(stream, "0-0"), count=self._batch)
        claimed = 0
        for stream, res in zip(self._streams, await pipe.execute(), strict=True):
            # XAUTOCLAIM scans a bounded part of the pending list: resume where it stopped.
            self._claim_from[stream] = _text(res[0])
            claimed += len(self._take(stream, res[1]))
        if claimed:
            log.info("took over pending notifications", count=claimed)

    async def _forget_departed(self) -> None:
        """Delete the group's consumers of departed replicas (each process has its own name):
        those with nothing pending and silent for `forget_after`. A live consumer refreshes
        its idle time with every read, so it is never silent that long."""
        pipe = self._redis.pipeline(transaction=False)
        for stream in self._streams:
            pipe.xinfo_consumers(stream, GROUP)
        replies = await pipe.execute(raise_on_error=False)
        gone = self._redis.pipeline(transaction=False)
        names = []
        for stream, consumers in zip(self._streams, replies, strict=True):
            if isinstance(consumers, Exception):
                continue
            for c in consumers:
                name = _text(c["name"])
                if (name != self.consumer and int(c["pending"]) == 0
                        and int(c["idle"]) >= self._forget_after_ms):
                    gone.xgroup_delconsumer(stream, GROUP, name)
                    names.append(name)
        if names:
            await gone.execute()
            log.info("forgot departed notification consumers", consumers=sorted(set(names)))

    async def _read_new(self, wait: float) -> None:
        if len(self._work) >= self._max_in_flight:  # back-pressure: new entries wait in Redis
            await asyncio.sleep(max(0.0, min(wait, self._block_ms / 1000)))
            return
        block = max(1, min(self._block_ms, int(wait * 1000)))
        res = await self._read(dict.fromkeys(self._streams, ">"), block)
        fresh: list[_Entry] = []
        for stream, entries in res:
            fresh += self._take(stream, entries)
        if fresh:
            await self._attempt_all(fresh)
        elif self._cluster:
            await asyncio.sleep(block / 1000)

    async def _attempt_all(self, entries: list[_Entry]) -> None:
        self._busy = True
        try:
            await asyncio.gather(*(self._attempt(e) for e in entries))
        finally:
            self._busy = False

    # One entry.

    async def _attempt(self, e: _Entry) -> None:
        async with self._limit:
            e.attempts += 1
            try:
                await self._deliver(e)
            except Exception:  # Redis trouble: the entry stays pending, try again later
                log.exception("notification attempt failed", entry=e.entry_id)
                e.due = time.monotonic() + self.backoff(e.attempts)

    async def _deliver(self, e: _Entry) -> None:
        stream = keys.outbox(e.bucket)
        try:
            n = Notification.from_fields(e.fields)
        except MalformedEntry as err:
            log.error("malformed outbox entry dead-lettered", stream=stream,
                      entry=e.entry_id, error=str(err))
            await self._dead_letter(e, None, MALFORMED, str(err))
            self.dead[MALFORMED] += 1
            await self._ack(e)
            return
        if self._enrich is not None:
            n = self._enrich(n)
        if e.attempts > 1:  # keep it ours: reset its idle time so nobody takes it over
            still = await self._redis.xclaim(stream, GROUP, self.consumer, 0, [e.entry_id],
                                             justid=True)
            if not still:  # no longer pending: another replica finished it
                self._work.pop((e.bucket, e.entry_id), None)
                return
        done_key = keys.notify_done(e.bucket, n.id)
        done = {_text(s) for s in await self._redis.smembers(done_key)}
        complete = True
        for sink in self.sinks:
            if sink.name in done:
                continue
            try:
                await sink.deliver(n)
            except PermanentFailure as err:
                log.error("notification refused, dead-lettered", sink=sink.name,
                          notification=n.id, reason=str(err))
                await self._dead_letter(e, n, sink.name, str(err))
                self.dead[sink.name] += 1
            except Exception as err:
                complete = False
                self.failed[sink.name] += 1
                log.warning("notification delivery failed, will retry", sink=sink.name,
                            notification=n.id, attempt=e.attempts, error=str(err))
                continue
            else:
                self.sent[sink.name] += 1
            await self._mark_done(done_key, sink.name)
        if complete:
            await self._ack(e)
        else:
            e.due = time.monotonic() + self.backoff(e.attempts)

    async def _mark_done(self, done_key: str, sink: str) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(done_key, sink)
        pipe.expire(done_key, DONE_TTL_S)
        await pipe.execute()

    async def _ack(self, e: _Entry) -> None:
        stream = keys.outbox(e.bucket)
        pipe = self._redis.pipeline(transaction=False)  # same key; cluster-safe
        pipe.xack(stream, GROUP, e.entry_id)
        pipe.xdel(stream, e.entry_id)
        await pipe.execute()
        self._work.pop((e.bucket, e.entry_id), None)
        self.acked += 1

    async def _dead_letter(self, e: _Entry, n: Notification | None, sink: str,
                           reason: str) -> None:
        fields: dict[Any, Any] = {
            "sink": sink,
            "reason": reason,
            "stream": keys.outbox(e.bucket),
            "entry_id": e.entry_id,
            **{_text(k): v for k, v in e.fields.items()},
        }
        if n is not None:
            fields["notification_id"] = n.id
        await self._redis.xadd(keys.NOTIFY_DEAD_LETTER, fields)


def default_consumer() -> str:
    """Unique per process and per deliverer (several apps may share a process in tests)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def build_deliverer(settings: Settings, redis: Redis, *, sharded: bool = False
                    ) -> Deliverer | None:
    """The deliverer of the configured sinks, or None when no sink is configured."""
    sinks: list[Sink] = []
    if settings.webhook_url:
        if not settings.webhook_secret:
            log.warning("SESSIONGATE_WEBHOOK_SECRET is empty: webhook calls are not signed")
        sinks.append(WebhookSink(settings.webhook_url, settings.webhook_secret,
                                 timeout=settings.notify_timeout))
    if settings.smtp_url:
        sinks.append(EmailSink(settings.smtp_url, settings.smtp_from,
                               timeout=settings.notify_timeout,
                               templates_dir=settings.templates_dir))
    if not sinks:
        return None
    links = link_signer(settings)
    consumer = default_consumer()
    if settings.consumer_name:  # a stable name: a restart resumes its own pending entries
        consumer = f"{settings.consumer_name}-notify"
        if settings.workers > 1:  # worker processes share the settings, not a consumer
            consumer += f"-{os.getpid()}"
    return Deliverer(
        redis, sinks, consumer=consumer, retry_base=settings.notify_retry_base,
        retry_max=settings.notify_retry_max, claim_idle=settings.notify_claim_idle,
        enrich=None if links is None else with_standing_url(links), sharded=sharded,
    )
