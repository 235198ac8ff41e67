"""Seat charges for one billing period, from the account's seat intervals. Pure integer math.

A billable seat is a named user on the roster; an account without a roster but with a seat
limit has that many anonymous seats ("#1".."#N"). Every roster or seat-limit change is logged
with its time (seconds), so each seat has intervals [start, end) within the period. Formulas
(P = unit price per seat per period, T = period length in seconds), see docs/billing.md:

- PRORATA (default): round_half_up(P * seat_seconds / T), seat_seconds = sum of interval lengths.
- WHOLE_PERIOD: P * (number of seats with any time in the period).
- NEXT_PERIOD: P * (number of seats present at the period's first second): seats added
  mid-period are charged from the next period; seats removed mid-period stay paid for this one.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class ProrationMode(enum.Enum):
    PRORATA = "PRORATA"
    WHOLE_PERIOD = "WHOLE_PERIOD"
    NEXT_PERIOD = "NEXT_PERIOD"


@dataclass(frozen=True, slots=True)
class SeatInterval:
    seat: str
    start: int  # Unix seconds, inclusive
    end: int  # Unix seconds, exclusive


def billable_seats(users: Iterable[str], seat_limit: int) -> frozenset[str]:
    """Named users when there is a roster, else `seat_limit` anonymous seats."""
    named = frozenset(users)
    if named:
        return named
    return frozenset(f"#{i}" for i in range(1, seat_limit + 1))


def seat_intervals(log: Sequence[tuple[int, frozenset[str]]], start: int,
                   end: int) -> list[SeatInterval]:
    """Intervals of each seat within [start, end), from a log of (time, seats from then on).

    The log need not be sorted; the last entry at or before `start` gives the seats at the
    beginning. A seat present when the log ends stays until `end`.
    """
    ordered = sorted(log, key=lambda e: e[0])
    current: frozenset[str] = frozenset()
    opened: dict[str, int] = {}
    out: list[SeatInterval] = []
    for at, seats in ordered:
        at = max(at, start)
        if at >= end:
            break
        for seat in current - seats:
            if opened[seat] < at:
                out.append(SeatInterval(seat, opened[seat], at))
            del opened[seat]
        for seat in seats - current:
            opened[seat] = at
        current = seats
    out.extend(SeatInterval(seat, since, end) for seat, since in opened.items() if since < end)
    return sorted(out, key=lambda i: (i.start, i.seat))


def seat_seconds(intervals: Iterable[SeatInterval]) -> int:
    return sum(i.end - i.start for i in intervals)


def peak_concurrent(intervals: Iterable[SeatInterval]) -> int:
    """Most seats held at one instant; an end and a start at the same second do not overlap."""
    edges = sorted([(i.start, 1) for i in intervals] + [(i.end, -1) for i in intervals])
    peak = level = 0
    for _, step in edges:  # (t, -1) sorts before (t, +1)
        level += step
        peak = max(peak, level)
    return peak


def charge(mode: ProrationMode, intervals: Sequence[SeatInterval], unit_price_minor: int,
           start: int, end: int) -> int:
    """The seat charge in minor units for the period [start, end) under `mode`."""
    if mode is ProrationMode.PRORATA:
        length = end - start
        return (2 * unit_price_minor * seat_seconds(intervals) + length) // (2 * length)
    if mode is ProrationMode.WHOLE_PERIOD:
        return unit_price_minor * len({i.seat for i in intervals if i.end > i.start})
    return unit_price_minor * len({i.seat for i in intervals if i.start <= start < i.end})
