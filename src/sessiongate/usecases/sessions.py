"""Sessions: the login that opens one (CheckSession), its heartbeat, its end.

An allowed login of an account without a seat limit queues its records on the login-records
writer and opens its session with no round trip (`open_unlimited`: CheckSession's hot path
calls it for an answer it remembers); a seat-limited one takes its seat and writes its
records in one atomic step of the session-leases port; a feature asked for reads the plan
(and a metered one its counter).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import NamedTuple

from sessiongate.domain.clock import Clock, to_ms
from sessiongate.domain.decision import Decision, Reason, Verdict
from sessiongate.domain.entitlements import Entitlement
from sessiongate.domain.model import Account
from sessiongate.domain.records import StateSource
from sessiongate.domain.sessions import new_session, parse_session_id
from sessiongate.domain.validation import check_id
from sessiongate.ports import LoginRecords, SessionLeases
from sessiongate.usecases.entitlements import Entitlements, known_state
from sessiongate.usecases.login import LoginCheck, LoginChecker, failure_verdict

# An opened session: its id, its expiry in Unix ms (the lease as Redis scores it: whole ms).
Session = tuple[str, int]


class Login(NamedTuple):
    """What a login came to."""

    verdict: Verdict  # as answered: `checked`'s own unless a feature, quota or seat changed it
    session: Session | None = None
    entitlement: Entitlement | None = None  # of the feature asked for, once allowed
    failed: bool = False  # the backend could not answer: `verdict` is the failure mode's
    checked: LoginCheck | None = None  # the login check (None: a remembered answer's login)


class Heartbeat(NamedTuple):
    verdict: Verdict
    account: Account | None
    expires: datetime | None  # the renewed lease; None: not renewed


def seat_refusal(account: Account, verdict: Verdict) -> Verdict:
    return Verdict(Decision.DENY, Reason.SEAT_LIMIT_REACHED, verdict.state,
                   f"all {account.seat_limit} seats of account {account.account_id!r}"
                   " are in use")


class Sessions:
    def __init__(self, leases: SessionLeases, records: LoginRecords, logins: LoginChecker,
                 entitlements: Entitlements, clock: Clock, *, ttl: timedelta,
                 timeout: float) -> None:
        self.leases = leases
        self.records = records
        self.logins = logins
        self.entitlements = entitlements
        self.clock = clock
        self.ttl = ttl
        self._ttl_ms = ttl // timedelta(milliseconds=1)
        self.timeout = timeout  # a login's entitlement read, at most (seconds)
        # What a login answers by failure mode: the ports' outages, the timeout above.
        self._unavailable: tuple[type[Exception], ...] = (
            *leases.unavailable, *entitlements.unavailable, TimeoutError)

    def open_unlimited(self, account: Account, account_id: str, user_id: str
                       ) -> Session | None:
        """The session of an allowed login of `account`, opened without a round trip; None
        for a seat-limited account (its seat is awaited: `open`)."""
        if account.seat_limit > 0:
            return None
        return self._queue(account_id, user_id, self.clock.now_ms())

    def _queue(self, account_id: str, user_id: str, now_ms: int) -> Session:
        ref = new_session(account_id, user_id)
        expires = now_ms + self._ttl_ms
        self.records.login(ref, now_ms, expires)
        return ref.session_id, expires

    async def open(self, account: Account, account_id: str, user_id: str, now: datetime
                   ) -> tuple[str | None, int]:
        """Open a session of an allowed login: (its id, None if every seat is taken; its
        expiry in Unix ms). Raises one of the leases' `unavailable`."""
        if account.seat_limit <= 0:
            return self._queue(account_id, user_id, to_ms(now))
        ref = new_session(account_id, user_id)
        expires = now + self.ttl
        seat = await self.leases.take(ref, now, expires, account.seat_limit,
                                      login=True)  # its records too, if admitted
        if not seat.admitted:
            return None, to_ms(expires)
        return ref.session_id, to_ms(expires)

    async def login(self, account_id: str, user_id: str, feature: str,
                    no_session: bool) -> Login:
        """CheckSession: the login check, then (allowed) the feature asked for and the
        session, unless `no_session`. Never raises for an unreachable backend: the failure
        mode answers (`failed`)."""
        account_id = check_id("account_id", account_id)
        user_id = check_id("user_id", user_id)
        if feature:
            check_id("feature", feature)
        checked = await self.logins.check(account_id, user_id)
        verdict = checked.verdict
        if checked.lookup.source is StateSource.UNAVAILABLE:  # the failure mode's verdict
            return Login(verdict, failed=True, checked=checked)
        account = checked.lookup.account
        if feature and account is not None and verdict.restricted_by_payment:
            try:
                verdict = await self.entitlements.lift(account, feature, verdict)
            except self._unavailable as exc:
                return self._failed(exc, checked)
        if not verdict.allowed or account is None or (no_session and not feature):
            return Login(verdict, checked=checked)  # nothing to open or count
        now = self.clock.now()
        ent = session = None
        try:
            if feature:  # allowed, with an account: the early return above
                async with asyncio.timeout(self.timeout):
                    ent = await self.entitlements.entitlement(account, feature, now)
                if not ent.allowed:
                    verdict = Verdict(Decision.DENY, ent.reason, verdict.state, ent.message)
            if verdict.allowed and not no_session:
                session_id, expires = await self.open(account, account_id, user_id, now)
                if session_id is None:
                    verdict = seat_refusal(account, verdict)
                else:
                    session = (session_id, expires)
        except self._unavailable as exc:
            return self._failed(exc, checked)
        return Login(verdict, session, ent, checked=checked)

    async def reopen(self, account: Account, account_id: str, user_id: str,
                     verdict: Verdict) -> Login:
        """A login whose verdict is remembered (an allowed one): only its session to open,
        as `login` opens it."""
        try:
            session_id, expires = await self.open(account, account_id, user_id,
                                                  self.clock.now())
        except self._unavailable as exc:
            return self._failed(exc)
        if session_id is None:  # all seats taken
            return Login(seat_refusal(account, verdict))
        return Login(verdict, (session_id, expires))

    def _failed(self, exc: Exception, checked: LoginCheck | None = None) -> Login:
        error = str(exc) or type(exc).__name__
        return Login(failure_verdict(self.logins.failure_mode, error), failed=True,
                     checked=checked)

    async def heartbeat(self, session_id: str, feature: str) -> Heartbeat:
        """Renew the lease (retaking the seat if it lapsed) and answer the current decision
        (for `feature`, if given, as a login asking for it is answered); a denied session's
        seat goes back to the pool."""
        ref = parse_session_id("session_id", session_id)
        feature = check_id("feature", feature, required=False)
        checked = known_state(await self.logins.check(ref.account_id, ref.user_id))
        verdict, account = checked.verdict, checked.lookup.account
        now = self.clock.now()
        if feature and account is not None and verdict.restricted_by_payment:
            verdict = await self.entitlements.lift(account, feature, verdict)
        expires = None
        if verdict.allowed and account is not None:
            expires = now + self.ttl
            seat = await self.leases.take(ref, now, expires, account.seat_limit)
            if not seat.admitted:
                expires = None
                verdict = Verdict(Decision.DENY, Reason.SEAT_LIMIT_REACHED, verdict.state,
                                  "the session expired and every seat is taken")
        elif account is not None:
            await self.leases.end(ref, now)  # denied: the seat goes back to the pool
        return Heartbeat(verdict, account, expires)

    async def end(self, session_id: str) -> bool:
        """End a session; False: it was not open."""
        ref = parse_session_id("session_id", session_id)
        if self.records.pending:
            await self.records.flush()  # the session may still be queued (opened < 100 ms ago)
        return await self.leases.end(ref, self.clock.now())
