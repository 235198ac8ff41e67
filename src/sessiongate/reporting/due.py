"""When reports are due: the monthly report at 06:00 on the 1st in the account's time zone,
the digest daily at a local time. Pure functions of an injected `now`."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, date, datetime, time, timedelta

REPORT_HOUR = 6
# The earliest zone (UTC+14) reaches 06:00 on the 1st at 16:00 UTC the day before; the latest
# (UTC-12) at 18:00 UTC on the 1st.
_EARLIEST_AHEAD = timedelta(hours=14 - REPORT_HOUR)


def month_after(period: str) -> tuple[int, int]:
    year, month = int(period[:4]), int(period[5:7])
    return (year + 1, 1) if month == 12 else (year, month + 1)


def month_before(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The zone `name`, or UTC for a name this machine does not know (an account stored
    before time zones were validated): its report is then sent at 06:00 UTC."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def report_due_at(time_zone: str, period: str) -> datetime:
    """06:00 on the 1st of the month after `period`, in `time_zone`, as UTC."""
    year, month = month_after(period)
    local = datetime(year, month, 1, REPORT_HOUR, tzinfo=zone(time_zone))
    return local.astimezone(UTC)


def latest_period(now: datetime) -> str:
    """The newest month whose report is due somewhere on Earth at `now`."""
    ahead = (now.astimezone(UTC) + _EARLIEST_AHEAD)
    return month_before(f"{ahead.year}-{ahead.month:02d}")


def last_month(now: datetime, time_zone: str) -> str:
    """The month before `now`'s month in `time_zone`."""
    local = now.astimezone(zone(time_zone))
    return month_before(f"{local.year}-{local.month:02d}")


def digest_day(now: datetime, at: time, time_zone: str) -> date:
    """The newest local day whose digest time has come (today, or yesterday before `at`)."""
    local = now.astimezone(zoneinfo.ZoneInfo(time_zone))
    today = local.date()
    return today if local.time() >= at else today - timedelta(days=1)
