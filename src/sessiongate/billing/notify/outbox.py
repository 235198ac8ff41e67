"""Deliver the bucket outboxes to the sinks: at least once, normally once, never lost.

One consumer group (`GROUP`) over the 64 bucket outbox streams, run by the stream worker
(billing/stream_worker.py: one blocking XREADGROUP over all outboxes, which the transport
splits by slot on a Redis Cluster; take-over with XAUTOCLAIM after `claim_idle`; backoff;
departed consumers);
this module is its handler. An entry is acknowledged (and deleted: the outbox is a queue) only
when every sink is done with it: delivered, or refused for good and dead-lettered. Which sinks
are done is recorded in Redis per notification id, so a retry after a webhook outage does not
resend the emails. Failed entries stay pending and are retried with capped exponential backoff.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from sessiongate.billing.notify.email import EmailSink, ReportParts
from sessiongate.billing.notify.sink import MalformedEntry, Notification, PermanentFailure, Sink
from sessiongate.billing.notify.standing import link_signer, with_standing_url
from sessiongate.billing.notify.webhook import WebhookSink
from sessiongate.billing.stream_worker import (
    ACK,
    DeadLetter,
    Entry,
    Retry,
    StreamWorker,
    Verdict,
    WorkerSettings,
    text,
)
from sessiongate.config import Settings
from sessiongate.store import keys
from sessiongate.store.transport import Transport, raise_first

log = structlog.get_logger(__name__)

GROUP = "sessiongate-notify"
DONE_TTL_S = 7 * 24 * 3600  # the per-sink record outlives any plausible outage
MALFORMED = "-"  # the dead letter's `sink` for an entry that is no notification
BLOCK = 1.0  # seconds: the longest blocking read of new entries


class Deliverer:
    """A `Component`: `start()` spawns the delivery loop, `stop()` ends it without acking.
    `redis`: the worker's own transport (`Stores.stream_transport(block)`)."""

    def __init__(
        self,
        redis: Transport,
        sinks: Sequence[Sink],
        *,
        consumer: str,
        retry_base: float = 1.0,
        retry_max: float = 60.0,
        claim_idle: float = 300.0,
        batch: int = 50,
        max_in_flight: int = 1000,
        concurrency: int = 16,
        block: float = BLOCK,
        forget_after: float = 3600.0,
        enrich: Callable[[Notification], Notification] | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("a deliverer needs at least one sink")
        self._redis = redis
        self.sinks = tuple(sinks)
        self._enrich = enrich
        self.consumer = consumer
        self._limit = asyncio.Semaphore(concurrency)
        # Plain counters per sink name (metrics are exported elsewhere).
        self.sent: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # attempts that will be retried
        self.dead: Counter[str] = Counter()  # refused for good, dead-lettered
        self._buckets = {keys.outbox(b): b for b in keys.ALL_BUCKETS}
        self.worker = StreamWorker(redis, WorkerSettings(
            group=GROUP, consumer=consumer,
            streams=tuple(self._buckets),
            dead_letters=keys.NOTIFY_DEAD_LETTER, claim_idle=claim_idle,
            retry_base=retry_base, retry_max=retry_max, batch=batch, block=block,
            forget_after=forget_after, max_in_flight=max_in_flight, create_streams=True,
            delete_acked=True,
        ), self.handle, name="notify-deliverer")

    async def start(self) -> None:
        await self.worker.start()
        log.info("notification delivery started", consumer=self.consumer,
                 sinks=[s.name for s in self.sinks])

    async def stop(self, grace: float = 5.0) -> None:
        """Let an attempt in progress finish (up to `grace`), then cancel. Nothing is acked
        that was not delivered: what is left stays pending for this or another replica."""
        await self.worker.stop(grace)

    @property
    def in_flight(self) -> int:
        """Entries read but not yet acknowledged by this replica (failed ones, backing off)."""
        return self.worker.in_flight

    @property
    def acked(self) -> int:
        return self.worker.acked

    def backoff(self, attempts: int) -> float:
        return self.worker.backoff(attempts)

    async def handle(self, entries: Sequence[Entry]) -> list[Verdict]:
        """Every entry delivered to every sink not yet done with it, at most `concurrency`
        at once."""
        return list(await asyncio.gather(*(self._attempt(e) for e in entries)))

    async def _attempt(self, e: Entry) -> Verdict:
        async with self._limit:
            try:
                return await self._deliver(e)
            except Exception as err:  # Redis trouble: the entry stays pending, try again later
                log.exception("notification attempt failed", entry=e.id)
                return Retry(repr(err))

    async def _deliver(self, e: Entry) -> Verdict:
        try:
            n = Notification.from_fields(e.fields)
        except MalformedEntry as err:
            log.error("malformed outbox entry dead-lettered", stream=e.stream,
                      entry=e.id, error=str(err))
            self.dead[MALFORMED] += 1
            return self._letter(e, None, MALFORMED, str(err))
        if self._enrich is not None:
            n = self._enrich(n)
        done_key = keys.notify_done(self._buckets[e.stream], n.id)
        done = {text(s) for s in await self._redis.call("SMEMBERS", done_key)}
        complete = True
        for sink in self.sinks:
            if sink.name in done:
                continue
            try:
                await sink.deliver(n)
            except PermanentFailure as err:
                log.error("notification refused, dead-lettered", sink=sink.name,
                          notification=n.id, reason=str(err))
                await self.worker.dead_letter([(e, self._letter(e, n, sink.name, str(err)))])
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
        return ACK if complete else Retry("a sink failed")

    async def _mark_done(self, done_key: str, sink: str) -> None:
        raise_first(await self._redis.many([("SADD", done_key, sink),
                                            ("EXPIRE", done_key, DONE_TTL_S)]))

    @staticmethod
    def _letter(e: Entry, n: Notification | None, sink: str, reason: str) -> DeadLetter:
        """The dead letter's schema: `reason`, `sink`, `stream`, `entry_id`, the entry's own
        fields (`account`, `version`, `body`) and, if it parsed, `notification_id`."""
        fields: dict[Any, Any] = {
            "sink": sink, "stream": e.stream, "entry_id": e.id,
            **{text(k): v for k, v in e.fields.items()},
        }
        if n is not None:
            fields["notification_id"] = n.id
        return DeadLetter(reason, fields)


def default_consumer() -> str:
    """Unique per process and per deliverer (several apps may share a process in tests)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def build_deliverer(settings: Settings, redis: Callable[[float], Transport], *,
                    report_parts: ReportParts | None = None) -> Deliverer | None:
    """The deliverer of the configured sinks, or None when no sink is configured. `redis`
    opens its transport (`Stores.stream_transport`), only if there is a sink;
    `report_parts` composes a monthly report's email (reporting/mail.py)."""
    sinks: list[Sink] = []
    if settings.webhook_url:
        if not settings.webhook_secret:
            log.warning("SESSIONGATE_WEBHOOK_SECRET is empty: webhook calls are not signed")
        sinks.append(WebhookSink(settings.webhook_url, settings.webhook_secret,
                                 timeout=settings.notify_timeout))
    if settings.smtp_url:
        sinks.append(EmailSink(settings.smtp_url, settings.smtp_from,
                               timeout=settings.notify_timeout,
                               templates_dir=settings.templates_dir,
                               report_parts=report_parts))
    if not sinks:
        return None
    links = link_signer(settings)
    consumer = default_consumer()
    if settings.consumer_name:  # a stable name: a restart resumes its own pending entries
        consumer = f"{settings.consumer_name}-notify"
        if settings.workers > 1:  # worker processes share the settings, not a consumer
            consumer += f"-{os.getpid()}"
    return Deliverer(
        redis(BLOCK), sinks, consumer=consumer, retry_base=settings.notify_retry_base,
        retry_max=settings.notify_retry_max, claim_idle=settings.notify_claim_idle,
        block=BLOCK, enrich=None if links is None else with_standing_url(links),
    )
