"""Session leases and seats in Redis: one Lua call to open or renew, one to end.

Both live in one zset per account (`keys.leases`): one key instead of two (issue #5, Redis
memory). Sessions are scored by their lease expiry, seats by theirs plus `SEAT_OFFSET_MS`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from redis.exceptions import RedisError

from sessiongate.domain.periods import day_name, month_name
from sessiongate.domain.sessions import SeatResult, SessionRef
from sessiongate.speed.kept import Kept
from sessiongate.store import keys
from sessiongate.store.activity import active_field, login_field, peak_field
from sessiongate.store.codec import to_ms
from sessiongate.store.scripts import VARIABLE, Prepared, Scripts
from sessiongate.store.transport import Transport, pairs

# The lease zset expires this long after its latest lease ends: housekeeping only (a
# lease is decided by its score against the caller's clock), so that an account nobody uses
# holds no session keys in Redis. Generous: it covers any clock skew between replicas.
LEASE_KEYS_MARGIN_MS = 24 * 3600 * 1000
MAX_LOGIN_CALLS = 10_000  # prepared login calls kept (`SessionStore._login_call`)
_UNKNOWN: Any = object()


class SessionStore:
    # What its calls raise when Redis cannot answer (`ports.SessionLeases.unavailable`).
    unavailable: tuple[type[Exception], ...] = (RedisError, OSError)

    def __init__(self, redis: Transport, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts
        # A login's take_seat call by (account, user, seat limit, day), encoded but for the
        # login's own four arguments (`_login_call`).
        # a new day, or many users: started afresh (`Kept`)
        self._login_calls: Kept[tuple[str, str, int, str], Prepared | None] = Kept(
            MAX_LOGIN_CALLS)

    async def take(self, ref: SessionRef, now: datetime, expires: datetime,
                   seat_limit: int, *, login: bool = False) -> SeatResult:
        """Open or renew `ref`'s lease, taking a seat if its user holds none (`take_seat.lua`);
        with `login`, the login's records of the day go in the same call if admitted."""
        aid = ref.account_id
        day = day_name(now)
        if login:
            call = self._login_calls.get((aid, ref.user_id, seat_limit, day), _UNKNOWN)
            if call is _UNKNOWN:
                call = self._login_call(aid, ref.user_id, seat_limit, day, month_name(now))
            if call is not None:  # the hot path: the login's arguments formatted in
                admitted, held = await call(to_ms(now), to_ms(expires), ref.member,
                                            login_field(day, ref.nonce))
                return SeatResult(bool(int(admitted)), int(held))
        args = [to_ms(now), to_ms(expires), ref.user_id, ref.member, seat_limit,
                peak_field(day), LEASE_KEYS_MARGIN_MS, keys.SEAT_OFFSET_MS]
        if login:
            args += [login_field(day, ref.nonce), active_field(day, ref.user_id)]
        admitted, held = await self._scripts.coalesced(  # with concurrent logins' calls
            "take_seat", keys=self._take_keys(aid, month_name(now)), args=args)
        return SeatResult(bool(int(admitted)), int(held))

    @staticmethod
    def _take_keys(account_id: str, month: str) -> list[str]:
        return [keys.leases(account_id), keys.usage(account_id, month)]

    def _login_call(self, account_id: str, user_id: str, seat_limit: int, day: str,
                    month: str) -> Prepared | None:
        """take_seat for a login of this user on `day`, prepared (the arguments as `take`
        passes them, `VARIABLE` where each login's own go) and kept."""
        call = self._scripts.prepare(
            "take_seat", self._take_keys(account_id, month),
            [VARIABLE, VARIABLE, user_id, VARIABLE, seat_limit, peak_field(day),
             LEASE_KEYS_MARGIN_MS, keys.SEAT_OFFSET_MS, VARIABLE, active_field(day, user_id)])
        return self._login_calls.keep((account_id, user_id, seat_limit, day), call)

    async def end(self, ref: SessionRef, now: datetime) -> bool:
        aid = ref.account_id
        prefix = ref.member[: len(ref.member) - len(ref.nonce)]
        ended = await self._scripts["end_session"](
            keys=[keys.leases(aid)],
            args=[to_ms(now), ref.user_id, ref.member, prefix, keys.SEAT_OFFSET_MS],
        )
        return bool(int(ended))

    async def seats_held(self, account_id: str, now: datetime) -> int:
        """Users holding a live seat (read-only; for reports and tests): seat members of
        either writer (take_seat.lua, the batch writer)."""
        ms = to_ms(now) or 0
        live = await self._redis.call("ZRANGEBYSCORE", keys.leases(account_id), f"({ms}",
                                      "+inf", "WITHSCORES")
        scored = [(m, float(score)) for m, score in pairs(live)]
        users = {m for m, score in scored if b"\x1f" not in m
                 and (score < keys.SEAT_OFFSET_MS or score > keys.SEAT_OFFSET_MS + ms)}
        return len(users)
