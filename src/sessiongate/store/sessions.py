"""Session leases and seats in Redis: one Lua call to open or renew, one to end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from sessiongate.domain.periods import day_name, month_name
from sessiongate.domain.sessions import SessionRef
from sessiongate.store import keys
from sessiongate.store.activity import peak_field
from sessiongate.store.codec import to_ms
from sessiongate.store.scripts import Scripts

# Session and seat sets expire this long after their latest lease ends: housekeeping only (a
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
                   seat_limit: int) -> SeatResult:
        """Open or renew `ref`'s lease, taking a seat if its user holds none (`take_seat.lua`)."""
        aid = ref.account_id
        admitted, held = await self._scripts.coalesced(  # with concurrent logins' calls
            "take_seat",
            keys=[keys.seats(aid), keys.sessions(aid), keys.usage(aid, month_name(now))],
            args=[to_ms(now), to_ms(expires), ref.user_id, ref.member, seat_limit,
                  peak_field(day_name(now)), LEASE_KEYS_MARGIN_MS],
        )
        return SeatResult(bool(int(admitted)), int(held))

    async def end(self, ref: SessionRef, now: datetime) -> bool:
        aid = ref.account_id
        prefix = ref.member[: len(ref.member) - len(ref.nonce)]
        ended = await self._scripts["end_session"](
            keys=[keys.seats(aid), keys.sessions(aid)],
            args=[to_ms(now), ref.user_id, ref.member, prefix],
        )
        return bool(int(ended))

    async def seats_held(self, account_id: str, now: datetime) -> int:
        """Live seats (read-only; for reports and tests)."""
        return int(await self._redis.zcount(keys.seats(account_id), f"({to_ms(now)}", "+inf"))
