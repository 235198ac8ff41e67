"""Calendar windows in UTC: quota reset windows and billing months, from an injected `now`."""

from __future__ import annotations

import enum
import re
from datetime import UTC, datetime, timedelta

from sessiongate.domain.errors import InvalidArgument


class ResetPeriod(enum.Enum):
    DAY = "DAY"
    WEEK = "WEEK"  # ISO weeks: Monday 00:00 UTC
    MONTH = "MONTH"
    NEVER = "NEVER"


def month_start(when: datetime) -> datetime:
    return datetime(when.year, when.month, 1, tzinfo=UTC)


def next_month(start: datetime) -> datetime:
    return datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)


def months_before(start: datetime, n: int) -> datetime:
    """The start of the month `n` months before the month starting at `start`."""
    index = start.year * 12 + start.month - 1 - n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def window(period: ResetPeriod, now: datetime) -> tuple[datetime | None, datetime | None]:
    """The quota window holding `now`: [start, end). NEVER has neither bound."""
    now = now.astimezone(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period is ResetPeriod.DAY:
        return day, day + timedelta(days=1)
    if period is ResetPeriod.WEEK:
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period is ResetPeriod.MONTH:
        start = month_start(now)
        return start, next_month(start)
    return None, None


def window_key(period: ResetPeriod, now: datetime) -> str:
    """Names the counter of the window holding `now` (a new window is a new counter)."""
    start, _ = window(period, now)
    return "all" if start is None else f"{period.value[0]}{start:%Y%m%d}"


_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_name(when: datetime) -> str:
    """`YYYY-MM` of `when` in UTC (on every seat-limited login: no strftime)."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return f"{when.year:04d}-{when.month:02d}"


def day_name(when: datetime) -> str:
    """`YYYY-MM-DD` of `when` in UTC."""
    if when.tzinfo is not UTC:
        when = when.astimezone(UTC)
    return f"{when.year:04d}-{when.month:02d}-{when.day:02d}"


def parse_month(field: str, value: str, now: datetime) -> tuple[datetime, datetime]:
    """"YYYY-MM" -> [start, end) in UTC; a month that has not begun is INVALID_ARGUMENT."""
    m = _MONTH.match(value)
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1970:
        raise InvalidArgument(field, f"{value!r} is not a month YYYY-MM")
    start = datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=UTC)
    if start > now:
        raise InvalidArgument(field, f"{value} is in the future")
    return start, next_month(start)
