"""The payment stream consumer: `XADD`-ed payment events in, at least once, never stuck.

One consumer group (`sessiongate`) shared by every replica. An entry is acknowledged only
after its state change is committed (or it was found a duplicate), so a crash between the
two means a redelivery that the event-id idempotency turns into a no-op. Entries left
pending by a crashed consumer are taken over with `XAUTOCLAIM` once idle long enough.
An entry that can never apply (malformed, unknown account, wrong currency, an event id
reused with other content, or any unexpected error while parsing or applying it) is copied
to the dead-letter stream with the reason and acknowledged, so it never blocks the queue. Only
backend trouble (Redis unreachable, too many concurrent writers) leaves an entry pending
for a later retry.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from sessiongate.billing.engine import Applied, DunningEngine
from sessiongate.domain.errors import AlreadyExists, Conflict, SessionGateError
from sessiongate.domain.payment_event import PaymentEvent, event_from_fields
from sessiongate.store import keys

log = structlog.get_logger(__name__)

GROUP = "sessiongate"
FORGET_AFTER_MS = 24 * 3600 * 1000


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class PaymentConsumer:
    def __init__(
        self,
        redis: Redis,
        engine: DunningEngine,
        *,
        consumer: str = "",
        batch: int = 500,
        block_ms: int = 500,
        claim_idle_ms: int = 30_000,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.consumer = consumer or default_consumer_name()
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.applied = 0
        self.duplicates = 0
        self.dead = 0
        self.conflicting_duplicates = 0  # entries that reused an event id with new content
        self._task: asyncio.Task[None] | None = None
        self._group_ready = False
        self._stopping = False

    async def ensure_group(self) -> bool:
        """Create the group (reading from the stream's start) once the stream exists.

        The stream is not created here (no MKSTREAM): a replica starting up writes nothing.
        The group starts at id 0, so entries added before it existed are read too.
        """
        if self._group_ready:
            return True
        try:
            await self.redis.xgroup_create(keys.PAYMENT_STREAM, GROUP, id="0")
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                return False  # no stream yet: nothing to consume
        self._group_ready = True
        return True

    async def process_once(self, block_ms: int | None = None) -> int:
        """Reclaim idle entries of crashed consumers, then read new ones; handle each.

        Returns how many entries were handled (acknowledged).
        """
        block = self.block_ms if block_ms is None else block_ms
        if not await self.ensure_group():
            await asyncio.sleep(block / 1000)
            return 0
        claimed = await self.redis.xautoclaim(
            keys.PAYMENT_STREAM, GROUP, self.consumer, min_idle_time=self.claim_idle_ms,
            start_id="0-0", count=self.batch,
        )
        entries = [(i, f) for i, f in claimed[1] if i is not None]
        resp: Any = await self.redis.xreadgroup(
            GROUP, self.consumer, {keys.PAYMENT_STREAM: ">"}, count=self.batch,
            block=block or None,
        )
        for _stream, new in resp or ():
            entries.extend(new)
        return await self.handle_many(entries)

    async def handle_many(self, entries: list[tuple[Any, dict[Any, Any] | None]]) -> int:
        """Apply entries (in stream order per account, distinct accounts together), then
        dead-letter what can never apply and acknowledge all that is done with one `XACK`;
        returns how many were acknowledged. What backend trouble stopped stays pending for
        a retry."""
        ack: list[str] = []
        dead: list[tuple[str, dict[str, str], str]] = []
        parsed: list[tuple[str, dict[str, str], PaymentEvent]] = []
        for entry_id, raw in entries:
            eid = _text(entry_id)
            if raw is None:  # deleted from the stream while pending: nothing to apply
                ack.append(eid)
                continue
            try:
                fields = {_text(k): _text(v) for k, v in raw.items()}
            except UnicodeDecodeError:
                dead.append((eid, {}, "fields are not UTF-8"))
                continue
            try:
                parsed.append((eid, fields, event_from_fields(fields)))
            except SessionGateError as exc:
                dead.append((eid, fields, str(exc)))
            except Exception as exc:  # a parser bug must not block the queue
                log.error("payment entry unreadable", entry=eid, error=repr(exc))
                dead.append((eid, fields, f"internal error: {exc!r}"))
        results = await self._apply([e for _, _, e in parsed])
        for (eid, fields, _), res in zip(parsed, results, strict=True):
            if isinstance(res, Applied):
                ack.append(eid)
                if res.duplicate:
                    self.duplicates += 1
                else:
                    self.applied += 1
            elif isinstance(res, (Conflict, RedisError, OSError)):
                log.warning("payment entry left pending for a retry", entry=eid,
                            error=repr(res))
            elif isinstance(res, AlreadyExists):
                self.conflicting_duplicates += 1
                dead.append((eid, fields, f"conflicting duplicate: {res}"))
            elif isinstance(res, SessionGateError):
                dead.append((eid, fields, str(res)))
            else:  # a bug must not block the queue either
                log.error("payment entry failed", entry=eid, error=repr(res))
                dead.append((eid, fields, f"internal error: {res!r}"))
        if dead:  # recorded before acknowledged: a failure here leaves them pending
            pipe = self.redis.pipeline(transaction=False)
            for eid, fields, reason in dead:
                log.warning("payment entry dead-lettered", entry=eid, reason=reason)
                pipe.xadd(keys.PAYMENT_DEAD_LETTER, {
                    "reason": reason, "source_id": eid, "consumer": self.consumer,
                    "fields": json.dumps(fields, separators=(",", ":")),
                })
            await pipe.execute()
            ack.extend(d[0] for d in dead)
            self.dead += len(dead)
        if ack:
            await self.redis.xack(keys.PAYMENT_STREAM, GROUP, *ack)
        return len(ack)

    async def _apply(self, events: list[PaymentEvent]) -> list[Applied | Exception]:
        """Each event's outcome; if the batch itself fails unexpectedly, the events are
        applied one at a time, so that the failure is pinned on the entries that cause it."""
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

    async def forget_idle_consumers(self, idle_ms: int = FORGET_AFTER_MS) -> list[str]:
        """Delete group members of past processes (restarts get new names): those with
        nothing pending and idle for `idle_ms`. One with pending entries stays until
        `XAUTOCLAIM` has taken them over."""
        gone = []
        for c in await self.redis.xinfo_consumers(keys.PAYMENT_STREAM, GROUP):
            name = _text(c["name"])
            if name != self.consumer and int(c["pending"]) == 0 and int(c["idle"]) >= idle_ms:
                await self.redis.xgroup_delconsumer(keys.PAYMENT_STREAM, GROUP, name)
                gone.append(name)
        return gone

    async def run(self) -> None:
        backoff = 0.1
        loop = asyncio.get_running_loop()
        tidy_at = loop.time() + 60
        while not self._stopping:
            try:
                while not self._stopping:
                    if self._group_ready and loop.time() >= tidy_at:
                        tidy_at = loop.time() + 3600
                        await self.forget_idle_consumers()
                    await self.process_once()
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted: recreate the group
                    self._group_ready = False
                log.warning("payment consumer error", error=repr(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name="payment-consumer")

    async def stop(self) -> None:
        """Cancel the loop, again if need be: on Python 3.11 a cancellation that meets a
        Redis call's own timeout can surface as TimeoutError and be lost; the flag ends the
        loop then."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        for _ in range(100):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                break
        if task.done() and not task.cancelled() and task.exception() is not None:
            log.warning("payment consumer ended with an error", error=repr(task.exception()))
