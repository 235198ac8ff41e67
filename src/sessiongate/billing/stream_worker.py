"""One consumer-group worker over Redis streams: at least once, never stuck, nothing lost.

The payment queue (billing/consumer.py) and the notification outbox (billing/notify/outbox.py)
both run on it; each gives a handler and its settings. What the worker does for both:

- creates the group (from id 0: entries older than the group count);
- reads new entries (one blocking XREADGROUP over all its streams: on Redis Cluster the
  transport splits it by slot, store/cluster.py) and resumes its own pending entries after a
  restart under the same consumer name;
- takes over entries idle at other consumers for `claim_idle` (a crashed replica) with
  XAUTOCLAIM, resuming its cursor per stream (XAUTOCLAIM scans a bounded part of the pending
  list per call);
- hands each batch to the handler, which answers per entry: `ACK`, `DeadLetter(reason)` (the
  entry is copied to the dead-letter stream with the reason, then acknowledged, so it never
  blocks the queue) or `Retry` (left pending, retried with capped exponential backoff; before
  each retry the worker XCLAIMs it to itself, which keeps other replicas from taking it over
  while it backs off, and drops it if another replica finished it meanwhile);
- backs off on Redis errors and recreates the group when it is gone (a flushed or restarted
  Redis);
- deletes departed consumers (the names of past processes) once they hold nothing pending and
  have been silent for `forget_after`; one that still holds entries stays until they have
  been taken over.

Its Redis commands go through a transport of its own (`Stores.stream_transport`): a blocking
read holds a single server's connection for up to `block`. Replies are read by
store/streams.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from sessiongate.store import streams
from sessiongate.store.streams import text
from sessiongate.store.transport import ResponseError, Transport, raise_first

__all__ = ["ACK", "Ack", "DeadLetter", "Entry", "Retry", "StreamWorker", "Verdict",
           "WorkerSettings", "text"]

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class Entry:
    """One stream entry in the worker's hands. `fields` as Redis sent them (bytes)."""

    stream: str
    id: str
    fields: dict[Any, Any]
    attempts: int = 0  # handler calls so far, this one included while it runs
    due: float = 0.0  # monotonic time of the next attempt


class Ack:
    """Done: acknowledge the entry."""

    __slots__ = ()


ACK = Ack()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Can never be done: record it with `reason` (and `fields`) in the dead-letter stream,
    then acknowledge it."""

    reason: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Retry:
    """Not now (backend or receiver trouble): leave it pending, try again after a backoff."""

    reason: str = ""


Verdict = Ack | DeadLetter | Retry
Handler = Callable[[Sequence[Entry]], Awaitable[Sequence[Verdict]]]


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    group: str
    consumer: str
    streams: tuple[str, ...]
    dead_letters: str  # the dead-letter stream
    claim_idle: float = 30.0  # seconds pending at a silent consumer before a take-over
    retry_base: float = 0.1  # first backoff (of an entry, and of the loop on Redis errors)
    retry_max: float = 5.0
    batch: int = 500
    block: float = 0.5  # longest blocking read, seconds
    forget_after: float = 24 * 3600.0  # silence after which an empty consumer is deleted
    max_in_flight: int = 1000  # entries held for a retry before new reads pause
    create_streams: bool = False  # MKSTREAM: else the group waits until the stream exists
    delete_acked: bool = False  # XDEL after XACK: the stream is a queue


class StreamWorker:
    """A `Component`: `start()` spawns the loop, `stop()` ends it; or drive it by hand with
    `process_once()`."""

    def __init__(self, redis: Transport, settings: WorkerSettings, handler: Handler,
                 name: str = "stream-worker") -> None:
        self.redis = redis
        self.settings = settings
        self.handler = handler
        self.name = name
        s = settings
        self._claim_idle_ms = max(0, int(s.claim_idle * 1000))
        self.claim_every = min(max(s.claim_idle / 2, 0.05), 30.0)
        self.prune_every = min(s.forget_after, 600.0)
        self._work: dict[tuple[str, str], Entry] = {}
        self._claim_from: dict[str, str] = {}
        self._ready = False
        self._recovered = False
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._busy = False
        self.acked = 0
        self.dead = 0

    @property
    def consumer(self) -> str:
        return self.settings.consumer

    @property
    def in_flight(self) -> int:
        """Entries held by this worker, waiting for a retry."""
        return len(self._work)

    def backoff(self, attempts: int) -> float:
        """Capped exponential with jitter: base, 2 base, 4 base, ... up to retry_max."""
        s = self.settings
        delay = min(s.retry_max, s.retry_base * 2 ** min(max(attempts, 1) - 1, 30))
        return float(delay * random.uniform(0.5, 1.0))

    # Group and reads.

    async def ensure_groups(self) -> bool:
        """Create the group on every stream (an existing one is left as it is). False when a
        stream does not exist yet and `create_streams` is off: nothing to consume."""
        if self._ready:
            return True
        s = self.settings
        mkstream = ("MKSTREAM",) if s.create_streams else ()
        missing = False
        for res in await self.redis.many([("XGROUP", "CREATE", stream, s.group, "0", *mkstream)
                                          for stream in s.streams]):
            if isinstance(res, Exception) and "BUSYGROUP" not in str(res):
                if not self.settings.create_streams and isinstance(res, ResponseError):
                    missing = True  # no stream yet
                    continue
                raise res
        if missing:
            return False
        self._ready = True
        self._recovered = False
        self._claim_from.clear()  # a new group has a new pending list
        return True

    async def _prepare(self) -> bool:
        """The group exists and this consumer's own pending entries are back in hand."""
        if not await self.ensure_groups():
            return False
        if not self._recovered:
            await self.recover_own()
            self._recovered = True
        return True

    def _take(self, stream: str, entries: Iterable[streams.StreamEntry], *, now: float
              ) -> list[Entry]:
        fresh = []
        for entry_id, fields in entries:
            key = (stream, entry_id)
            if key in self._work:
                continue  # already ours (e.g. reclaimed from ourselves): one attempt at a time
            e = Entry(stream, entry_id, fields, due=now)
            self._work[key] = e
            fresh.append(e)
        return fresh

    async def _read(self, ids: dict[str, str], block_ms: int | None
                    ) -> list[tuple[str, list[streams.StreamEntry]]]:
        s = self.settings
        block = ("BLOCK", block_ms) if block_ms is not None else ()
        return streams.read(await self.redis.call(
            "XREADGROUP", "GROUP", s.group, s.consumer, "COUNT", s.batch, *block, "STREAMS",
            *ids, *ids.values()))

    async def recover_own(self) -> int:
        """Take back the entries pending under this consumer's name (a restart with a fixed
        name); returns how many."""
        cursors = dict.fromkeys(self.settings.streams, "0")
        found = 0
        while cursors and len(self._work) < self.settings.max_in_flight:
            res = await self._read(cursors, None)
            cursors = {}
            for stream, entries in res:
                if entries:
                    found += len(self._take(stream, entries, now=time.monotonic()))
                    cursors[stream] = entries[-1][0]
        return found

    async def claim(self) -> int:
        """Take over entries idle at any consumer for `claim_idle`, resuming each stream's
        XAUTOCLAIM cursor; returns how many were taken."""
        s = self.settings
        replies = raise_first(await self.redis.many([
            ("XAUTOCLAIM", stream, s.group, s.consumer, self._claim_idle_ms,
             self._claim_from.get(stream, "0-0"), "COUNT", s.batch) for stream in s.streams]))
        claimed = 0
        now = time.monotonic()
        for stream, reply in zip(s.streams, replies, strict=True):
            self._claim_from[stream], entries = streams.autoclaim(reply)
            claimed += len(self._take(stream, entries, now=now))
        if claimed:
            log.info("took over pending entries", worker=self.name, count=claimed)
        return claimed

    async def read_new(self, block_ms: int | None) -> list[Entry]:
        """New entries (none while `max_in_flight` are held: they wait in Redis)."""
        if len(self._work) >= self.settings.max_in_flight:
            await asyncio.sleep((block_ms or 0) / 1000)
            return []
        res = await self._read(dict.fromkeys(self.settings.streams, ">"), block_ms)
        now = time.monotonic()
        return [e for stream, entries in res for e in self._take(stream, entries, now=now)]

    def due(self, now: float) -> list[Entry]:
        return [e for e in self._work.values() if e.due <= now]

    # Handling.

    async def _still_ours(self, entries: list[Entry]) -> list[Entry]:
        """XCLAIM each retried entry to ourselves (resetting its idle time); drop those no
        longer pending (another replica finished them after a take-over)."""
        retried = [e for e in entries if e.attempts > 0]
        if not retried:
            return entries
        by_stream: dict[str, list[Entry]] = {}
        for e in retried:
            by_stream.setdefault(e.stream, []).append(e)
        replies = raise_first(await self.redis.many([
            ("XCLAIM", stream, self.settings.group, self.consumer, 0, *(e.id for e in es),
             "JUSTID") for stream, es in by_stream.items()]))
        kept: set[tuple[str, str]] = set()
        for stream, ids in zip(by_stream, replies, strict=True):
            kept.update((stream, text(i)) for i in ids)
        out = []
        for e in entries:
            if e.attempts == 0 or (e.stream, e.id) in kept:
                out.append(e)
            else:
                self._work.pop((e.stream, e.id), None)
        return out

    async def handle(self, entries: list[Entry]) -> int:
        """One handler call on `entries`, then their dead letters (recorded before
        acknowledged: a failure in between leaves them pending) and acknowledgements.
        Returns how many were acknowledged."""
        entries = await self._still_ours(entries)
        if not entries:
            return 0
        self._busy = True
        try:
            return await self._handle(entries)
        finally:
            self._busy = False

    async def _handle(self, entries: list[Entry]) -> int:
        ack = [e for e in entries if not e.fields]  # deleted while pending: nothing to do
        todo = [e for e in entries if e.fields]
        for e in todo:
            e.attempts += 1
        verdicts: Sequence[Verdict]
        try:
            verdicts = await self.handler(todo) if todo else []
        except Exception as exc:  # backend trouble: every entry stays pending
            log.warning("stream batch failed, left pending for a retry", worker=self.name,
                        entries=len(todo), error=repr(exc))
            verdicts = [Retry(repr(exc))] * len(todo)
        dead: list[tuple[Entry, DeadLetter]] = []
        now = time.monotonic()
        for e, v in zip(todo, verdicts, strict=True):
            if isinstance(v, Ack):
                ack.append(e)
            elif isinstance(v, DeadLetter):
                dead.append((e, v))
            else:
                e.due = now + self.backoff(e.attempts)
        if dead:
            await self.dead_letter(dead)
            ack.extend(e for e, _ in dead)
            self.dead += len(dead)
        await self._ack(ack)
        return len(ack)

    async def dead_letter(self, letters: Sequence[tuple[Entry, DeadLetter]]) -> None:
        """Append each to the dead-letter stream: `reason` first, then the letter's fields."""
        commands = []
        for e, d in letters:
            record: dict[Any, Any] = {"reason": d.reason, **d.fields}
            log.warning("stream entry dead-lettered", worker=self.name, stream=e.stream,
                        entry=e.id, reason=d.reason)
            commands.append(("XADD", self.settings.dead_letters, "*",
                             *(x for kv in record.items() for x in kv)))
        raise_first(await self.redis.many(commands))

    async def _ack(self, entries: list[Entry]) -> None:
        if not entries:
            return
        by_stream: dict[str, list[str]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.id)
        commands: list[tuple[Any, ...]] = []  # one key per command: cluster-safe
        for stream, ids in by_stream.items():
            commands.append(("XACK", stream, self.settings.group, *ids))
            if self.settings.delete_acked:
                commands.append(("XDEL", stream, *ids))
        raise_first(await self.redis.many(commands))
        for e in entries:
            self._work.pop((e.stream, e.id), None)
        self.acked += len(entries)

    async def process_once(self, block_ms: int | None = None) -> int:
        """One pass: create the group if need be, take over idle entries, read new ones,
        handle what is due. Returns how many entries were acknowledged."""
        block = int(self.settings.block * 1000) if block_ms is None else block_ms
        if not await self._prepare():
            await asyncio.sleep(block / 1000)
            return 0
        await self.claim()
        await self.read_new(block or None)
        return await self.handle(self.due(time.monotonic()))

    # Departed consumers.

    async def forget_departed(self, idle_ms: int | None = None) -> list[str]:
        """Delete the group's consumers of past processes (each process has its own name):
        those with nothing pending and silent for `idle_ms` (default `forget_after`). A live
        consumer refreshes its idle time with every read, so it is never silent that long.
        Returns the names deleted."""
        s = self.settings
        limit = int(s.forget_after * 1000) if idle_ms is None else idle_ms
        replies = await self.redis.many([("XINFO", "CONSUMERS", stream, s.group)
                                         for stream in s.streams])
        gone: list[tuple[Any, ...]] = []
        names: list[str] = []
        for stream, consumers in zip(s.streams, replies, strict=True):
            if isinstance(consumers, Exception):
                continue  # no stream or group there (yet)
            for c in streams.records(consumers):
                name = text(c["name"])
                if name != s.consumer and int(c["pending"]) == 0 and int(c["idle"]) >= limit:
                    gone.append(("XGROUP", "DELCONSUMER", stream, s.group, name))
                    if name not in names:
                        names.append(name)
        if names:
            raise_first(await self.redis.many(gone))
            log.info("forgot departed consumers", worker=self.name, consumers=names)
        return names

    # The loop.

    async def run(self) -> None:
        failures = 0
        next_claim = next_prune = 0.0
        block_ms = max(1, int(self.settings.block * 1000))
        while not self._stopping:
            try:
                if not await self._prepare():
                    await asyncio.sleep(block_ms / 1000)
                    continue
                now = time.monotonic()
                if now >= next_claim:
                    await self.claim()
                    next_claim = now + self.claim_every
                if now >= next_prune:
                    await self.forget_departed()
                    next_prune = now + self.prune_every
                due = self.due(now)
                if not due:
                    wake = min([e.due for e in self._work.values()] + [next_claim])
                    due = await self.read_new(max(1, min(block_ms, int((wake - now) * 1000))))
                if due:
                    await self.handle(due)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if "NOGROUP" in str(exc):  # the stream or group is gone: recreate it
                    self._ready = False
                failures += 1
                log.warning("stream worker error", worker=self.name, attempt=failures,
                            error=repr(exc))
                await asyncio.sleep(self.backoff(failures))

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self.run(), name=self.name)

    async def stop(self, grace: float = 5.0) -> None:
        """Let a batch in progress finish (up to `grace`), then cancel, again if need be: on
        Python 3.11 a cancellation that meets a Redis call's own timeout can surface as
        TimeoutError and be lost; the flag ends the loop then. Nothing unfinished is
        acknowledged: it stays pending for this or another replica."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        if not self._busy:
            task.cancel()
        done, _ = await asyncio.wait({task}, timeout=grace)
        for _ in range(100):
            if done:
                break
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=0.1)
        if task.done() and not task.cancelled():
            with contextlib.suppress(asyncio.CancelledError):
                if (exc := task.exception()) is not None:
                    log.warning("stream worker ended with an error", worker=self.name,
                                error=repr(exc))
