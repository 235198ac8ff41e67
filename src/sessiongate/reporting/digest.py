"""The vendor's daily advisory digest (SESSIONGATE_DIGEST_EMAILS): what changed in the last
day, who is about to be suspended, what is overdue, what waits for a person.

Sent once a day at SESSIONGATE_DIGEST_AT in SESSIONGATE_DIGEST_TIME_ZONE, once among
replicas (a marker per local day, set with the outbox entry by `enqueue_once`); a replica
that was down at that time sends the day's digest when it next ticks.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sessiongate.config import Settings
from sessiongate.domain.clock import Clock
from sessiongate.domain.model import AccountState
from sessiongate.domain.notifications import Digest as DigestNotice
from sessiongate.domain.notifications import NotificationKind
from sessiongate.reporting.due import digest_day
from sessiongate.store import keys
from sessiongate.store.accounts import AccountStore
from sessiongate.store.listing import scan_accounts
from sessiongate.store.outbox_once import enqueue, enqueue_once
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport

KIND = NotificationKind.DIGEST.value
LOOKAHEAD = timedelta(days=7)
DAY = timedelta(days=1)
_DUNNED = {"REMINDER", "GRACE", "SUSPENDED"}


class Digest:
    def __init__(self, redis: Transport, scripts: Scripts, accounts: AccountStore,
                 settings: Settings, clock: Clock) -> None:
        self.redis = redis
        self.scripts = scripts
        self.accounts = accounts
        self.clock = clock
        s = settings
        self.recipients = list(s.digest_recipients())
        self.at = s.digest_time()
        self.time_zone = s.digest_time_zone

    async def build(self, now: datetime, notification_id: str, day: str) -> DigestNotice:
        since = now - DAY
        changed: dict[str, list[str]] = defaultdict(list)
        reinstated: list[str] = []
        suspending: list[dict[str, Any]] = []
        overdue: dict[str, int] = defaultdict(int)
        async for a in scan_accounts(self.redis):
            state = a.state_at(now)
            created = a.state_since == a.created_at  # its state is the one it was made with
            if a.state_since is not None and since <= a.state_since <= now and not created:
                changed[state.value].append(a.account_id)
                if state is AccountState.ACTIVE:
                    last = (await self.accounts.history(a.account_id, limit=1) or [{}])[-1]
                    if last.get("from") in _DUNNED:
                        reinstated.append(a.account_id)
            if (a.suspends_at is not None and state is not AccountState.SUSPENDED
                    and now <= a.suspends_at <= now + LOOKAHEAD):
                suspending.append({"account_id": a.account_id,
                                   "amount_due_minor": a.balance_minor,
                                   "currency": a.currency,
                                   "suspends_at": a.suspends_at.isoformat()})
            if a.balance_minor > 0 and a.oldest_due_at is not None and a.oldest_due_at <= now:
                overdue[a.currency] += a.balance_minor
        redis = self.redis
        return DigestNotice(
            id=notification_id,
            day=day,
            at=now,
            digest_emails=tuple(self.recipients),
            changed={k: sorted(v) for k, v in sorted(changed.items())},
            reinstated=tuple(sorted(reinstated)),
            suspending=tuple(sorted(suspending,
                                    key=lambda x: (x["suspends_at"], x["account_id"]))),
            overdue=dict(sorted(overdue.items())),
            dead_letters={"payments": await redis.call("XLEN", keys.PAYMENT_DEAD_LETTER),
                          "notifications": await redis.call("XLEN", keys.NOTIFY_DEAD_LETTER)},
        )

    async def tick(self) -> bool:
        """The newest day's digest if its time has come and nobody sent it; True if sent."""
        now = self.clock.now()
        day = digest_day(now, self.at, self.time_zone)
        name = day.isoformat()
        marker = keys.digest_sent(name)
        if await self.redis.call("EXISTS", marker):
            return False
        body = await self.build(now, f"{KIND}:{name}", name)
        return await enqueue_once(self.scripts, marker, keys.DIGEST_ACCOUNT, body)

    async def send_now(self) -> DigestNotice:
        """`SendDigest` (`sessiongate digest --send`): one more digest now, whatever was sent
        today."""
        now = self.clock.now()
        nid = f"{KIND}:{now.date().isoformat()}:sent-{secrets.token_hex(4)}"
        body = await self.build(now, nid, now.date().isoformat())
        await enqueue(self.redis, keys.DIGEST_ACCOUNT, body)
        return body

    async def preview(self) -> DigestNotice:
        now = self.clock.now()
        return await self.build(now, "preview", now.date().isoformat())
