"""An app component: APScheduler runs the monthly report job and the daily digest.

Cron triggers: every 15 minutes (UTC) the monthly job looks for accounts whose 06:00 on the
1st has come (every zone's offset is a multiple of 15 minutes), and catches up on a digest
missed; the digest's own trigger fires at SESSIONGATE_DIGEST_AT in its time zone. Both also
run once at start-up, so a run missed while no replica was up is made up then. Each job is
idempotent among replicas (markers written with the outbox entry, `store/outbox_once.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from sessiongate.config import Settings
from sessiongate.reporting.builder import ReportBuilder
from sessiongate.reporting.digest import Digest
from sessiongate.reporting.monthly import MonthlyReports
from sessiongate.store.stores import Stores

log = structlog.get_logger(__name__)

MONTHLY_TRIGGER = {"minute": "*/15", "timezone": "UTC"}


class ReportsScheduler:
    def __init__(self, monthly: MonthlyReports, digest: Digest | None) -> None:
        self.monthly = monthly
        self.digest = digest
        self._scheduler: AsyncIOScheduler | None = None

    def triggers(self) -> dict[str, CronTrigger]:
        out = {"monthly-reports": CronTrigger(**MONTHLY_TRIGGER)}
        if self.digest is not None:
            out["digest"] = CronTrigger(hour=self.digest.at.hour, minute=self.digest.at.minute,
                                        timezone=self.digest.time_zone)
        return out

    async def tick(self) -> None:
        """The monthly job, then the digest if it is due and not sent (a catch-up)."""
        for name, job in (("monthly reports", self.monthly.tick),
                          ("digest", self.digest.tick if self.digest else None)):
            if job is None:
                continue
            try:
                await job()
            except Exception:
                log.exception("report job failed", job=name)

    async def _digest(self) -> None:
        assert self.digest is not None
        try:
            await self.digest.tick()
        except Exception:
            log.exception("report job failed", job="digest")

    async def start(self) -> None:
        scheduler = self._scheduler = AsyncIOScheduler(timezone="UTC")
        triggers = self.triggers()
        scheduler.add_job(self.tick, triggers["monthly-reports"], id="monthly-reports",
                          max_instances=1, coalesce=True, misfire_grace_time=None)
        if "digest" in triggers:
            scheduler.add_job(self._digest, triggers["digest"], id="digest", max_instances=1,
                              coalesce=True, misfire_grace_time=None)
        scheduler.add_job(self.tick, id="reports-catch-up", next_run_time=datetime.now(UTC))
        scheduler.start()

    async def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None


def report_scheduler(settings: Settings, stores: Stores, builder: ReportBuilder,
                     digest: Digest) -> ReportsScheduler:
    """The jobs of `settings`, on the parts app.py built once: the monthly reports always,
    the digest with recipients."""
    monthly = MonthlyReports(stores, builder, webhook=bool(settings.webhook_url))
    return ReportsScheduler(monthly, digest if settings.digest_recipients() else None)
