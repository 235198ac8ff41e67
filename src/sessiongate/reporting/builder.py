"""Builds an account's monthly report from Redis: the same path for the scheduled job, the
`SendReport` RPC and the CLI's `report --send`."""

from __future__ import annotations

import secrets
from datetime import datetime

from sessiongate.billing.notify.links import LinkSigner
from sessiongate.domain.errors import NotFound
from sessiongate.domain.model import Account
from sessiongate.domain.notifications import MonthlyReport
from sessiongate.domain.periods import parse_month
from sessiongate.domain.usage_summary import UsageSummary, summarize
from sessiongate.reporting import content
from sessiongate.reporting.due import last_month, month_before
from sessiongate.reporting.model import ReportAccount
from sessiongate.store.listing import scan_accounts
from sessiongate.store.outbox_once import enqueue
from sessiongate.store.plans import PlanStore
from sessiongate.store.stores import Stores


class ReportBuilder:
    """Built once by app.py: the stores, the process's plan store (with its cache) and the
    standing page's link signer (None without SESSIONGATE_LINK_SECRET)."""

    def __init__(self, stores: Stores, plans: PlanStore, links: LinkSigner | None = None
                 ) -> None:
        self.stores = stores
        self.plans = plans
        self.links = links
        self._usage = stores.usage

    async def _summary(self, account_id: str, period: str, now: datetime) -> UsageSummary:
        start, end = parse_month("period", period, now)
        data = await self._usage.month(account_id, period, start, end)
        return summarize(account_id, period, start, end, now, data, 0)

    async def children_of(self, account_id: str) -> list[Account]:
        return [a async for a in scan_accounts(self.stores.transport,
                                               keep=lambda a: a.parent_id == account_id)]

    async def build(self, account: Account, period: str, now: datetime, *,
                    notification_id: str, children: list[Account] | None = None
                    ) -> MonthlyReport:
        """The outbox body of `account`'s report of `period` (INVALID_ARGUMENT naming
        `period` for a month not yet begun)."""
        this = await self._summary(account.account_id, period, now)
        previous = await self._summary(account.account_id, month_before(period), now)
        plan = await self.plans.get(account.plan_id) if account.plan_id else None
        lines = [content.child_line(ReportAccount.of(c, now),
                                    await self._summary(c.account_id, period, now))
                 for c in sorted(children or (), key=lambda c: c.account_id)]
        return MonthlyReport.of(
            content.build(ReportAccount.of(account, now), this, previous, plan),
            id=notification_id, at=now, report_emails=account.report_emails,
            standing_url="" if self.links is None else self.links.url(account.account_id,
                                                                     issued_at=now),
            children=lines or None)

    async def build_for(self, account_id: str, period: str, now: datetime, *,
                        notification_id: str, children: bool = False) -> MonthlyReport:
        account = await self.stores.accounts.get(account_id)
        if account is None:
            raise NotFound(f"account_id: no account {account_id!r}")
        kids = await self.children_of(account_id) if children else None
        return await self.build(account, period, now, notification_id=notification_id,
                                children=kids)

    async def send_now(self, account_id: str, period: str, now: datetime, *,
                       children: bool = False) -> tuple[str, str]:
        """`SendReport`: the report of `period` (none: the account's last month in its own
        time zone) queued to the outbox now, whatever was sent before; returns its
        notification id and the period. INVALID_ARGUMENT naming `period` for a malformed
        month or one not yet begun, NOT_FOUND naming `account_id` for an unknown account."""
        account = await self.stores.accounts.get(account_id)
        if period:
            parse_month("period", period, now)
        elif account is not None:
            period = last_month(now, account.time_zone)
        # Unique per call: a resend is a new notification (the done-set is per id).
        nid = (f"{account_id}:{content.KIND}:{period}:sent-{int(now.timestamp())}"
               f"-{secrets.token_hex(4)}")
        body = await self.build_for(account_id, period, now, notification_id=nid,
                                    children=children)
        await enqueue(self.stores.transport, account_id, body)
        return nid, period
