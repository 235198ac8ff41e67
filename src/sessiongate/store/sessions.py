"""Session leases and seats in Redis: one Lua call to open or renew, one to end.

Both live in one zset per account (`keys.leases`): one key instead of two (issue #5, Redis
memory). Sessions are scored by their lease expiry, seats by theirs plus `SEAT_OFFSET_MS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from sessiongate.domain.periods import day_name, month_name
from sessiongate.domain.sessions import SessionRef
from sessiongate.store import keys
from sessiongate.store.activity import active_field, login_field, peak_field
from sessiongate.store.codec import to_ms
from sessiongate.store.scripts import Scripts

# The lease zset expires this long after its latest lease ends: housekeeping only (a
# lease is decided by its score against the caller's clock), so that an account nobody uses
# holds no session keys in Redis. Generous: it covers any clock skew between replicas.
LEASE_KEYS_MARGIN_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class SeatResult:
    admitted: bool
    seats_held: int


class SessionStore:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts

    async def take(self, ref: SessionRef, now: datetime, expires: datetime,
                   seat_limit: int, *, login: bool = False) -> SeatResult:
        """Open or renew `ref`'s lease, taking a seat if its user holds none (`take_seat.lua`);
        with `login`, the login's records of the day go in the same call if admitted."""
        aid = ref.account_id
        day = day_name(now)
        args = [to_ms(now), to_ms(expires), ref.user_id, ref.member, seat_limit,
                peak_field(day), LEASE_KEYS_MARGIN_MS, keys.SEAT_OFFSET_MS]
        if login:
            args += [login_field(day, ref.nonce), active_field(day, ref.user_id)]
        admitted, held = await self._scripts.coalesced(  # with concurrent logins' calls
            "take_seat",
            keys=[keys.leases(aid), keys.usage(aid, month_name(now)), keys.legacy_seats(aid),
                  keys.legacy_sessions(aid)],
            args=args,
        )
        return SeatResult(bool(int(admitted)), int(held))

    async def end(self, ref: SessionRef, now: datetime) -> bool:
        aid = ref.account_id
        prefix = ref.member[: len(ref.member) - len(ref.nonce)]
        ended = await self._scripts["end_session"](
            keys=[keys.leases(aid), keys.legacy_seats(aid), keys.legacy_sessions(aid)],
            args=[to_ms(now), ref.user_id, ref.member, prefix, keys.SEAT_OFFSET_MS],
        )
        return bool(int(ended))

    async def seats_held(self, account_id: str, now: datetime) -> int:
        """Users holding a live seat (read-only; for reports and tests): seat members of
        either writer (take_seat.lua, the batch writer), and of the former layout's zset."""
        ms = to_ms(now) or 0
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrangebyscore(keys.leases(account_id), f"({ms}", "+inf", withscores=True)
        pipe.zrangebyscore(keys.legacy_seats(account_id), f"({ms}", "+inf")
        live, former = await pipe.execute()
        users = {m for m, score in live if b"\x1f" not in m
                 and (score < keys.SEAT_OFFSET_MS or score > keys.SEAT_OFFSET_MS + ms)}
        return len(users | set(former))
