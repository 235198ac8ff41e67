"""An account's month in figures: what `GetUsageSummary` answers and the monthly report
compares. Pure, below both, so that neither borrows the other's representation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sessiongate.domain.periods import day_name
from sessiongate.domain.proration import ProrationMode, SeatChange, change_figures, charge_of


class MonthRecords(Protocol):
    """The raw records of one account and month (the store's `MonthData`)."""

    @property
    def usage(self) -> Mapping[str, int]: ...  # "t:F" total, "n:F" events, "d:DAY:F" per day
    @property
    def logins(self) -> Mapping[str, int]: ...  # day -> logins
    @property
    def peak_seats(self) -> Mapping[str, int]: ...  # day -> most seats held at once
    @property
    def active(self) -> Sequence[tuple[str, str]]: ...  # (day, user)
    def seat_changes(self) -> list[SeatChange]: ...


@dataclass(frozen=True, slots=True)
class FeatureUsage:
    feature: str
    total: int
    events: int


@dataclass(frozen=True, slots=True)
class DailyActivity:
    day: str  # YYYY-MM-DD (UTC)
    logins: int = 0
    active_users: int = 0
    peak_seats_in_use: int = 0
    usage: Mapping[str, int] = field(default_factory=dict)  # feature -> that day's use


@dataclass(frozen=True, slots=True)
class UsageSummary:
    account_id: str
    period: str  # YYYY-MM
    features: tuple[FeatureUsage, ...] = ()  # by name
    peak_concurrent_seats: int = 0
    seat_seconds: int = 0
    seat_charges: Mapping[ProrationMode, int] = field(default_factory=dict)  # every mode
    logins: int = 0
    active_users: int = 0  # distinct users in the month
    days: tuple[DailyActivity, ...] = ()  # up to now, in order


def summarize(account_id: str, month: str, start: datetime, end: datetime, now: datetime,
              data: MonthRecords, unit_price_minor: int) -> UsageSummary:
    """The month's figures; seats charged as if the roster stays as it is to the period's end.

    O(seats) for a large roster (decoding its seat log): `GetUsageSummary` runs it off the
    event loop that answers logins."""
    features = tuple(
        FeatureUsage(key[2:], data.usage[key], data.usage.get(f"n:{key[2:]}", 0))
        for key in sorted(data.usage) if key.startswith("t:"))
    t0, t1 = int(start.timestamp()), int(end.timestamp())
    figures = change_figures(data.seat_changes(), t0, t1)
    per_day: dict[str, set[str]] = defaultdict(set)
    for day, user in data.active:
        per_day[day].add(user)
    days = []
    cursor = start
    last = min(end, now)
    while cursor < last:
        name = day_name(cursor)
        prefix = f"d:{name}:"
        days.append(DailyActivity(
            day=name, logins=data.logins.get(name, 0), active_users=len(per_day.get(name, ())),
            peak_seats_in_use=data.peak_seats.get(name, 0),
            usage={key[len(prefix):]: total for key, total in data.usage.items()
                   if key.startswith(prefix)}))
        cursor += timedelta(days=1)
    return UsageSummary(
        account_id=account_id,
        period=month,
        features=features,
        peak_concurrent_seats=figures.peak,
        seat_seconds=figures.seat_seconds,
        seat_charges={mode: charge_of(mode, figures, unit_price_minor, t0, t1)
                      for mode in ProrationMode},
        logins=sum(data.logins.values()),
        active_users=len({user for _, user in data.active}),
        days=tuple(days),
    )
