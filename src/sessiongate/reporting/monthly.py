"""The monthly report job: last month's report of each account at 06:00 on the 1st in the
account's time zone, once among all replicas, a missed run made up late.

Every replica runs `tick` (every 15 minutes and at start-up). For each of the two newest
months that can be due, unless the month is marked complete, it reads every account: an
account is due once 06:00 on the 1st has come in its time zone, and gets its report when no
report of that month is marked for it; the marker and the outbox entry are written together
by one script (`enqueue_once`), so two replicas never both send it, and a replica that was
down when it was due sends it when it next ticks. The month is marked complete once every
account's time has come, and later ticks cost one EXISTS each. An account created after its
due time is not sent that month's report.
"""

from __future__ import annotations

from collections import defaultdict

import structlog

from sessiongate.domain.model import Account, AccountState
from sessiongate.reporting.builder import ReportBuilder
from sessiongate.reporting.content import KIND
from sessiongate.reporting.due import latest_period, month_before, report_due_at
from sessiongate.store import keys
from sessiongate.store.listing import scan_accounts
from sessiongate.store.outbox_once import MARKER_TTL_S, enqueue_once
from sessiongate.store.stores import Stores

log = structlog.get_logger(__name__)
LAST_ZONE = "Etc/GMT+12"  # UTC-12: the last place to reach 06:00 on the 1st


def scheduled_id(account_id: str, period: str) -> str:
    return f"{account_id}:{KIND}:{period}"


class MonthlyReports:
    def __init__(self, stores: Stores, builder: ReportBuilder, *, webhook: bool) -> None:
        self.stores = stores
        self.builder = builder
        self.webhook = webhook  # a webhook receives every account's report

    def wanted(self, a: Account) -> bool:
        return a.derived_state is not AccountState.CLOSED and bool(a.report_emails
                                                                   or self.webhook)

    async def tick(self) -> int:
        """Send what is due and not yet sent; returns how many reports this call sent."""
        now = self.stores.clock.now()
        newest = latest_period(now)
        sent = 0
        for period in (month_before(newest), newest):  # the older first: it is later already
            sent += await self.run(period, legacy=period == newest)
        return sent

    async def run(self, period: str, *, legacy: bool = True) -> int:
        """`legacy`: also accounts of releases that did not record `created_at` (only the
        newest month: an upgrade must not send them two reports at once)."""
        redis = self.stores.transport
        if await redis.call("EXISTS", keys.reports_complete(period)):
            return 0
        now = self.stores.clock.now()
        accounts = [a async for a in scan_accounts(redis)]
        children: dict[str, list[Account]] = defaultdict(list)
        for a in accounts:
            if a.parent_id:
                children[a.parent_id].append(a)
        due = []
        complete = True
        for a in accounts:
            if not self.wanted(a):
                continue
            at = report_due_at(a.time_zone, period)
            if (a.created_at is None and not legacy) or (a.created_at is not None
                                                          and a.created_at > at):
                continue
            if at > now:
                complete = False
                continue
            due.append((at, a))
        sent = 0
        for _, a in sorted(due, key=lambda d: (d[0], d[1].account_id)):  # Tokyo before LA
            marker = keys.report_sent(a.account_id, period)
            if await redis.call("EXISTS", marker):
                continue
            try:
                body = await self.builder.build(
                    a, period, now, notification_id=scheduled_id(a.account_id, period),
                    children=children.get(a.account_id))
                sent += await enqueue_once(self.stores.scripts, marker, a.account_id, body)
            except Exception:
                complete = False
                log.exception("monthly report failed", account=a.account_id, period=period)
        if complete and now >= report_due_at(LAST_ZONE, period):
            await redis.call("SET", keys.reports_complete(period), "1", "EX", MARKER_TTL_S)
        if sent:
            log.info("monthly reports sent", period=period, count=sent)
        return sent
