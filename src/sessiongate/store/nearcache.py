"""In-process near-cache of account snapshots, in front of Redis.

A hit costs a dict lookup: no Redis round trip on the login path. Entries are dropped when
Redis publishes a newer account version on the invalidation channel (every commit does), and
expire after a short TTL, the bound on staleness if a message is lost. Expired entries are
kept (up to `stale_max_age`) as the "last known state" for the `static` failure mode.

Bounds (anyone with an app token chooses the ids looked up): entries of existing accounts
(`max_entries`) and negative entries, of ids that name no account (`max_unknown`), are kept
apart, so a flood of unknown ids evicts only other unknown ids. Entries are account
snapshots only: what callers derive from one (CheckSession's answers, service/answer_memo.py)
they keep themselves, told when the snapshot leaves (`on_drop`).

A load waits for Redis at most `load_timeout` (the login path's budget): a hung Redis then
fails the lookup with a `TimeoutError` as an unreachable one does, and the read itself goes
on in the background (it is never cancelled: nothing abandons a command mid-connection) and
fills the cache if Redis answers before its socket timeout; lookups of the same account
wait for that read instead of sending another. At most `max_loads` reads are in flight (a
hung Redis and many distinct ids): beyond, a lookup fails at once, as with Redis down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from sessiongate.domain.model import Account
from sessiongate.ports import Accounts
from sessiongate.store import keys
from sessiongate.store.transport import Transport

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    account: Account | None  # None: known not to exist (negative entry)
    fetched_at: float  # monotonic seconds

    @property
    def version(self) -> int:
        return -1 if self.account is None else self.account.version


class NearCache:
    """The account port's snapshots, kept in process (`ports.AccountCache`)."""

    # What a read raises when Redis cannot answer: the lookup's failure mode decides then.
    unavailable: tuple[type[Exception], ...] = (RedisError, OSError)

    def __init__(
        self,
        store: Accounts,
        *,
        ttl: float,
        enabled: bool = True,
        stale_max_age: float = 300.0,
        max_entries: int = 200_000,
        max_unknown: int = 10_000,
        load_timeout: float | None = None,
        max_loads: int = 4096,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._enabled = enabled
        self._stale_max_age = stale_max_age
        self._max_entries = max_entries
        self._max_unknown = max_unknown
        self._load_timeout = load_timeout
        self._max_loads = max_loads
        self._now = monotonic
        self._entries: dict[str, Entry] = {}  # of existing accounts
        self._unknown: dict[str, Entry] = {}  # negative entries: ids that name no account
        self._inflight: dict[str, asyncio.Task[Entry]] = {}
        self._dropped: Callable[[str, Entry], None] | None = None  # `on_drop`
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self._enabled

    def _get(self, account_id: str) -> Entry | None:
        entry = self._entries.get(account_id)
        return entry if entry is not None else self._unknown.get(account_id)

    def hit(self, account_id: str) -> tuple[Entry, int] | None:
        """The cached entry if younger than the TTL, and its age in ms from the same clock
        read; counted as a hit or a miss. Synchronous: the hot path."""
        entry = self._get(account_id)
        if entry is not None:
            age = self._now() - entry.fetched_at
            if age < self._ttl:
                self.hits += 1
                return entry, int(age * 1000)
        self.misses += 1
        return None

    def fresh_age(self, account_id: str, entry: object) -> int | None:
        """The age in ms of `entry`, handed out before, while it is the one held for
        `account_id` and fresh (counted as a hit); None, counting nothing, otherwise (the
        caller then looks up as usual, which counts). Synchronous: the hot path."""
        held = self._entries.get(account_id)
        if held is None:
            held = self._unknown.get(account_id)
        if held is entry and held is not None:
            age = self._now() - held.fetched_at
            if age < self._ttl:
                self.hits += 1
                return int(age * 1000)
        return None

    def held(self, account_id: str, entry: object) -> bool:
        """Whether `entry` is still the one held for `account_id` (fresh or not)."""
        return self._get(account_id) is entry

    def on_drop(self, listener: Callable[[str, Entry], None]) -> None:
        """Call `listener(account id, entry)` whenever an entry leaves the cache (invalidated,
        reloaded, replaced or evicted): what was derived from it goes too."""
        self._dropped = listener

    def last_known(self, account_id: str) -> tuple[Entry, int] | None:
        """The newest entry however old, and its age in ms, if within `stale_max_age`
        (failure mode `static`)."""
        entry = self._get(account_id)
        if entry is not None:
            age = self._now() - entry.fetched_at
            if age <= self._stale_max_age:
                return entry, int(age * 1000)
        return None

    async def load(self, account_id: str) -> Entry:
        """Read from Redis (one HMGET), coalescing concurrent misses of the same account.
        Waits at most `load_timeout`, then raises redis-py's `TimeoutError`; the read is
        not cancelled (see the module's docstring)."""
        task = self._inflight.get(account_id)
        if task is None:
            if len(self._inflight) >= self._max_loads:
                raise RedisConnectionError(
                    f"{self._max_loads} Redis reads in flight: Redis is not answering")
            task = asyncio.ensure_future(self._fetch(account_id))
            self._inflight[account_id] = task
            task.add_done_callback(lambda done: self._landed(account_id, done))
        if self._load_timeout is None:
            return await asyncio.shield(task)
        try:
            async with asyncio.timeout(self._load_timeout):
                return await asyncio.shield(task)
        except TimeoutError:
            if task.done():  # the read's own error, not the budget's
                raise
            raise RedisTimeoutError(
                f"no reply from Redis within {self._load_timeout:g} s") from None

    async def _fetch(self, account_id: str) -> Entry:
        entry = Entry(await self._store.get(account_id), self._now())
        self._put(account_id, entry)
        return entry

    def _landed(self, account_id: str, task: asyncio.Task[Entry]) -> None:
        if self._inflight.get(account_id) is task:
            del self._inflight[account_id]
        if not task.cancelled():
            task.exception()  # retrieved: its waiters re-raise it, or all of them gave up

    def _drop(self, account_id: str, entry: Entry) -> None:
        """`entry` leaves the cache: tell the listener (`on_drop`)."""
        if self._dropped is not None:
            self._dropped(account_id, entry)

    def _put(self, account_id: str, entry: Entry) -> None:
        if not self._enabled:
            # Still remember the last known state for the `static` failure mode.
            entry = Entry(entry.account, entry.fetched_at - self._ttl)
        if entry.account is not None:
            held, other, limit = self._entries, self._unknown, self._max_entries
        else:
            held, other, limit = self._unknown, self._entries, self._max_unknown
        old = other.pop(account_id, None)
        if old is not None:
            self._drop(account_id, old)
        old = held.get(account_id)
        if old is not None:
            self._drop(account_id, old)
        elif len(held) >= limit:
            evicted = next(iter(held))
            self._drop(evicted, held.pop(evicted))
        held[account_id] = entry

    def put(self, account: Account) -> None:
        """Seed with a version this process just wrote, unless a newer one is already here."""
        current = self._get(account.account_id)
        if current is None or current.version <= account.version:
            self._put(account.account_id, Entry(account, self._now()))

    def invalidate(self, account_id: str, version: int | None = None) -> None:
        entry = self._get(account_id)
        if entry is None:
            return
        if version is None or entry.version < version:
            # Keep it as last known state, but never fresh again.
            self._drop(account_id, entry)
            held = self._entries if entry.account is not None else self._unknown
            held[account_id] = Entry(entry.account, self._now() - self._ttl - 1e-3)

    def clear(self) -> None:
        for aid in [*self._entries, *self._unknown]:
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
