"""In-process near-cache of account snapshots, in front of Redis.

A hit costs a dict lookup: no Redis round trip on the login path. Entries are dropped when
Redis publishes a newer account version on the invalidation channel (every commit does), and
expire after a short TTL, the bound on staleness if a message is lost. Expired entries are
kept (up to `stale_max_age`) as the "last known state" for the `static` failure mode.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.exceptions import RedisError

from sessiongate.domain.model import Account
from sessiongate.domain.records import quick_init
from sessiongate.store import keys
from sessiongate.store.accounts import AccountStore
from sessiongate.store.transport import Transport

log = structlog.get_logger(__name__)


@quick_init
@dataclass(frozen=True, slots=True)
class Entry:
    account: Account | None  # None: known not to exist (negative entry)
    fetched_at: float  # monotonic seconds
    # What callers derive from this snapshot alone (a login verdict, a prebuilt response):
    # it lives and dies with the entry, so an invalidation or reload drops it too.
    memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def version(self) -> int:
        return -1 if self.account is None else self.account.version


class NearCache:
    def __init__(
        self,
        store: AccountStore,
        *,
        ttl: float,
        enabled: bool = True,
        stale_max_age: float = 300.0,
        max_entries: int = 200_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._enabled = enabled
        self._stale_max_age = stale_max_age
        self._max_entries = max_entries
        self._now = monotonic
        self._entries: dict[str, Entry] = {}
        self._inflight: dict[str, asyncio.Future[Entry]] = {}
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    def fresh(self, account_id: str) -> Entry | None:
        """The cached entry if younger than the TTL, else None. Synchronous: the hot path."""
        entry = self._entries.get(account_id)
        if entry is not None and self._now() - entry.fetched_at < self._ttl:
            self.hits += 1
            return entry
        self.misses += 1
        return None

    def hit(self, account_id: str) -> tuple[Entry, int] | None:
        """`fresh` and the entry's age in ms from the same clock read (counted alike)."""
        entry = self._entries.get(account_id)
        if entry is not None:
            age = self._now() - entry.fetched_at
            if age < self._ttl:
                self.hits += 1
                return entry, int(age * 1000)
        self.misses += 1
        return None

    def remembered(self, account_id: str, key: Any) -> tuple[Any, int, Entry] | None:
        """What a fresh entry's memo holds under `key`, its age in ms and the entry (counted
        as a hit); None, counting nothing, when there is no fresh entry or nothing under `key`
        (the caller then looks up as usual, which counts)."""
        entry = self._entries.get(account_id)
        if entry is not None:
            value = entry.memo.get(key)
            if value is not None:
                age = self._now() - entry.fetched_at
                if age < self._ttl:
                    self.hits += 1
                    return value, int(age * 1000), entry
        return None

    def last_known(self, account_id: str) -> Entry | None:
        """The newest entry however old, if within `stale_max_age` (failure mode `static`)."""
        entry = self._entries.get(account_id)
        if entry is not None and self._now() - entry.fetched_at <= self._stale_max_age:
            return entry
        return None

    def age_ms(self, entry: Entry) -> int:
        return int((self._now() - entry.fetched_at) * 1000)

    async def load(self, account_id: str) -> Entry:
        """Read from Redis (one HMGET), coalescing concurrent misses of the same account."""
        pending = self._inflight.get(account_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Entry] = asyncio.get_running_loop().create_future()
        self._inflight[account_id] = fut
        try:
            entry = Entry(await self._store.get(account_id), self._now())
            self._put(account_id, entry)
            fut.set_result(entry)
            return entry
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[account_id]

    def _put(self, account_id: str, entry: Entry) -> None:
        if not self._enabled:
            # Still remember the last known state for the `static` failure mode.
            entry = Entry(entry.account, entry.fetched_at - self._ttl)
        if len(self._entries) >= self._max_entries and account_id not in self._entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[account_id] = entry

    def put(self, account: Account) -> None:
        """Seed with a version this process just wrote, unless a newer one is already here."""
        current = self._entries.get(account.account_id)
        if current is None or current.version <= account.version:
            self._put(account.account_id, Entry(account, self._now()))

    def invalidate(self, account_id: str, version: int | None = None) -> None:
        entry = self._entries.get(account_id)
        if entry is None:
            return
        if version is None or entry.version < version:
            # Keep it as last known state, but never fresh again.
            self._entries[account_id] = Entry(entry.account, self._now() - self._ttl - 1e-3)

    def clear(self) -> None:
        for aid in list(self._entries):
            self.invalidate(aid)

    def _on_invalidation(self, data: bytes | str) -> None:
        """A commit's message: `<account id> TAB <version>`."""
        text = data.decode() if isinstance(data, bytes) else str(data)
        aid, _, ver = text.rpartition("\t")
        self.invalidate(aid, int(ver) if ver.isdigit() else None)

    async def listen(self, redis: Transport, ready: asyncio.Event | None = None) -> None:
        """Apply invalidations published by every replica's commits; runs until cancelled.

        Subscribed again, with backoff, whenever the subscription is lost; each time it is
        (re)made, nothing cached counts as fresh any more (messages may have been missed).
        Messages are applied as they are parsed (every replica hears every commit of every
        replica: under a payment burst or a sweep, thousands a second).
        """
        backoff = 0.05
        while True:
            subscribed = False
            try:
                sub = await redis.subscribe(keys.INVALIDATION_CHANNEL, self._on_invalidation)
                try:
                    subscribed, backoff = True, 0.05
                    self.clear()
                    if ready is not None:
                        ready.set()
                    error: BaseException = await sub.lost
                finally:
                    sub.close()
            except (RedisError, OSError) as exc:
                error = exc
            log.warning("invalidation listener disconnected" if subscribed
                        else "invalidation listener cannot connect", error=str(error))
            self.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
