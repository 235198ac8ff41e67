"""Builds an account's monthly report from Redis: the same path for the scheduled job, the
`SendReport` RPC and the CLI's `report --send`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sessiongate.billing.notify.links import LinkSigner
from sessiongate.billing.report import content
from sessiongate.billing.report.due import month_before
from sessiongate.domain.errors import NotFound
from sessiongate.domain.model import Account
from sessiongate.domain.notifications import MonthlyReport
from sessiongate.domain.periods import parse_month
from sessiongate.service.convert import account_to_pb
from sessiongate.service.plans import plan_to_pb, summarize
from sessiongate.service.runtime import Runtime
from sessiongate.store.listing import scan_accounts
from sessiongate.store.usage import UsageStore


class ReportBuilder:
    def __init__(self, rt: Runtime, links: LinkSigner | None = None) -> None:
        self.rt = rt
        self.links = links
        self._usage = UsageStore(rt.transport, rt.scripts)

    async def _summary(self, account_id: str, period: str, now: datetime) -> Any:
        start, end = parse_month("period", period, now)
        data = await self._usage.month(account_id, period, start, end)
        return summarize(account_id, period, start, end, now, data, 0)

    async def children_of(self, account_id: str) -> list[Account]:
        return [a async for a in scan_accounts(self.rt.transport,
                                               keep=lambda a: a.parent_id == account_id)]

    async def build(self, account: Account, period: str, now: datetime, *,
                    notification_id: str, children: list[Account] | None = None
                    ) -> MonthlyReport:
        """The outbox body of `account`'s report of `period` (INVALID_ARGUMENT naming
        `period` for a month not yet begun)."""
        this = await self._summary(account.account_id, period, now)
        previous = await self._summary(account.account_id, month_before(period), now)
        plan = None
        if account.plan_id:
            found = await self.rt.plans.get(account.plan_id)
            plan = None if found is None else plan_to_pb(found)
        msg = account_to_pb(account, now)
        lines = [content.child_line(account_to_pb(c, now),
                                    await self._summary(c.account_id, period, now))
                 for c in sorted(children or (), key=lambda c: c.account_id)]
        return MonthlyReport.of(
            content.build(msg, this, previous, plan), id=notification_id, at=now,
            report_emails=account.report_emails,
            standing_url="" if self.links is None else self.links.url(account.account_id,
                                                                     issued_at=now),
            children=lines or None)

    async def build_for(self, account_id: str, period: str, now: datetime, *,
                        notification_id: str, children: bool = False) -> MonthlyReport:
        account = await self.rt.accounts.get(account_id)
        if account is None:
            raise NotFound(f"account_id: no account {account_id!r}")
        kids = await self.children_of(account_id) if children else None
        return await self.build(account, period, now, notification_id=notification_id,
                                children=kids)
