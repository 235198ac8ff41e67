"""The payment queue: `XADD`-ed payment events in, at least once, never stuck.

One consumer group (`sessiongate`) shared by every replica, run by the stream worker
(billing/stream_worker.py: claim, take-over, dead letters, backoff, departed consumers); this
module is its handler. An entry is acknowledged only after its state change is committed (or it
was found a duplicate), so a crash between the two means a redelivery that the event-id
idempotency turns into a no-op. An entry that can never apply (malformed, unknown account,
wrong currency, an event id reused with other content, or any unexpected error while parsing
or applying it) is dead-lettered with the reason, so it never blocks the queue. Only backend
trouble (Redis unreachable, too many concurrent writers) leaves an entry pending for a retry.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence

import structlog

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
from sessiongate.domain.errors import AlreadyExists, Conflict, SessionGateError
from sessiongate.domain.payment_event import PaymentEvent, event_from_fields
from sessiongate.store import keys
from sessiongate.store.transport import RedisError, Transport
from sessiongate.usecases.dunning import Applied, DunningEngine

log = structlog.get_logger(__name__)

GROUP = "sessiongate"
FORGET_AFTER_MS = 24 * 3600 * 1000
RETRY_BASE = 0.1  # seconds before a payment left pending is tried again; doubles per attempt
RETRY_MAX = 5.0
BLOCK_MS = 500  # the longest blocking read of new entries


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class PaymentConsumer:
    """A `Component`: the stream worker over the payment stream with `handle` as handler.
    `redis`: the worker's own transport (`Stores.stream_transport(block_ms / 1000)`)."""

    def __init__(
        self,
        redis: Transport,
        engine: DunningEngine,
        *,
        consumer: str = "",
        batch: int = 500,
        block_ms: int = BLOCK_MS,
        claim_idle_ms: int = 30_000,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.consumer = consumer or default_consumer_name()
        self.applied = 0
        self.duplicates = 0
        self.conflicting_duplicates = 0  # entries that reused an event id with new content
        self.worker = StreamWorker(redis, WorkerSettings(
            group=GROUP, consumer=self.consumer, streams=(keys.PAYMENT_STREAM,),
            dead_letters=keys.PAYMENT_DEAD_LETTER, claim_idle=claim_idle_ms / 1000,
            retry_base=RETRY_BASE, retry_max=RETRY_MAX, batch=batch, block=block_ms / 1000,
            forget_after=FORGET_AFTER_MS / 1000,
        ), self.handle, name="payment-consumer")

    @property
    def dead(self) -> int:
        return self.worker.dead

    async def ensure_group(self) -> bool:
        """Create the group (reading from the stream's start) once the stream exists.

        The stream is not created here (no MKSTREAM): a replica starting up writes nothing.
        """
        return await self.worker.ensure_groups()

    async def process_once(self, block_ms: int | None = None) -> int:
        """Take over idle entries of crashed consumers, read new ones, handle what is due.
        Returns how many entries were acknowledged."""
        return await self.worker.process_once(block_ms)

    async def forget_idle_consumers(self, idle_ms: int = FORGET_AFTER_MS) -> list[str]:
        return await self.worker.forget_departed(idle_ms)

    async def start(self) -> None:
        await self.worker.start()

    async def stop(self) -> None:
        await self.worker.stop()

    async def handle(self, entries: Sequence[Entry]) -> list[Verdict]:
        """Apply entries (in stream order per account, distinct accounts together): each
        one's verdict. What can never apply is dead-lettered with its fields."""
        out: list[Verdict | None] = [None] * len(entries)
        parsed: list[tuple[int, dict[str, str], PaymentEvent]] = []
        for n, e in enumerate(entries):
            try:
                fields = {text(k): text(v) for k, v in e.fields.items()}
            except UnicodeDecodeError:
                out[n] = self._dead(e, {}, "fields are not UTF-8")
                continue
            try:
                parsed.append((n, fields, event_from_fields(fields)))
            except SessionGateError as exc:
                out[n] = self._dead(e, fields, str(exc))
            except Exception as exc:  # a parser bug must not block the queue
                log.error("payment entry unreadable", entry=e.id, error=repr(exc))
                out[n] = self._dead(e, fields, f"internal error: {exc!r}")
        results = await self._apply([ev for _, _, ev in parsed])
        for (n, fields, _), res in zip(parsed, results, strict=True):
            e = entries[n]
            if isinstance(res, Applied):
                out[n] = ACK
                if res.duplicate:
                    self.duplicates += 1
                else:
                    self.applied += 1
            elif isinstance(res, (Conflict, RedisError, OSError)):
                log.warning("payment entry left pending for a retry", entry=e.id,
                            error=repr(res))
                out[n] = Retry(repr(res))
            elif isinstance(res, AlreadyExists):
                self.conflicting_duplicates += 1
                out[n] = self._dead(e, fields, f"conflicting duplicate: {res}")
            elif isinstance(res, SessionGateError):
                out[n] = self._dead(e, fields, str(res))
            else:  # a bug must not block the queue either
                log.error("payment entry failed", entry=e.id, error=repr(res))
                out[n] = self._dead(e, fields, f"internal error: {res!r}")
        return [v if v is not None else Retry("not handled") for v in out]

    def _dead(self, e: Entry, fields: dict[str, str], reason: str) -> DeadLetter:
        """The dead letter's schema: `reason`, `source_id`, `consumer`, `fields` (JSON)."""
        return DeadLetter(reason, {
            "source_id": e.id, "consumer": self.consumer,
            "fields": json.dumps(fields, separators=(",", ":")),
        })

    async def _apply(self, events: list[PaymentEvent]) -> list[Applied | Exception]:
        """Each event's outcome; if the batch itself fails unexpectedly, the events are
        applied one at a time, so that the failure is pinned on the entries that cause it."""
        if not events:
            return []
        try:
            return await self.engine.apply_events(events)
        except (RedisError, OSError):
            raise  # backend trouble: every entry stays pending
        except Exception as exc:
            log.error("payment batch failed: applying its entries one by one", error=repr(exc))
        out: list[Applied | Exception] = []
        for event in events:
            try:
                out.append(await self.engine.apply_event(event))
            except Exception as exc:
                out.append(exc)
        return out
