"""Seat charges for one billing period, from the account's seat intervals. Pure integer math.

A billable seat is a named user on the roster; an account without a roster but with a seat
limit has that many anonymous seats #1..#N, held as a count and never spelled out one by one
(a seat limit of a million costs what a limit of one does). Every roster or seat-limit change
is logged with its time (seconds), so each seat has intervals [start, end) within the period;
anonymous seats come as bands (seats first..first+count-1 over one interval), since #k is held
exactly while the limit is at least k. Formulas (P = unit price per seat per period, T = period
length in seconds), see docs/billing.md:

- PRORATA (default): round_half_up(P * seat_seconds / T), seat_seconds = sum of interval lengths.
- WHOLE_PERIOD: P * (number of seats with any time in the period).
- NEXT_PERIOD: P * (number of seats present at the period's first second): seats added
  mid-period are charged from the next period; seats removed mid-period stay paid for this one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

# The most seats an account may be limited to: a charge (unit price up to 10^12 minor units,
# times seats) must fit the int64 fields it is reported in, 10^18 < 2^63 with room to spare.
MAX_SEAT_LIMIT = 1_000_000


class ProrationMode(enum.Enum):
    PRORATA = "PRORATA"
    WHOLE_PERIOD = "WHOLE_PERIOD"
    NEXT_PERIOD = "NEXT_PERIOD"


@dataclass(frozen=True, slots=True)
class Seats:
    """The billable seats from one log entry on: named users, or `anonymous` seats #1..#N."""

    named: frozenset[str] = frozenset()
    anonymous: int = 0


@dataclass(frozen=True, slots=True)
class SeatInterval:
    seat: str  # a user id, or "#first-last" for a band of anonymous seats
    start: int  # Unix seconds, inclusive
    end: int  # Unix seconds, exclusive
    count: int = 1  # seats in the interval: 1 for a user, the band's width for anonymous seats
    first: int = 0  # the band's first anonymous seat number (1-based); 0 for a user

    @property
    def last(self) -> int:
        """The highest anonymous seat number in the band (0 for a user)."""
        return self.first + self.count - 1 if self.first else 0


def billable_seats(users: Iterable[str], seat_limit: int) -> Seats:
    """Named users when there is a roster, else `seat_limit` anonymous seats."""
    named = frozenset(users)
    if named:
        return Seats(named)
    return Seats(anonymous=seat_limit)


def _band(first: int, last: int, start: int, end: int) -> SeatInterval:
    return SeatInterval(f"#{first}-{last}", start, end, last - first + 1, first)


@dataclass(frozen=True, slots=True)
class SeatChange:
    """One seat-log entry: from `at` (seconds) on, `anonymous` seats are held, and either
    `joined` is the whole roster (`whole`), or `joined` join and `left` leave the roster as it
    was. A change names what changed, so a log of one roster and many small changes costs
    per change, not a roster per change (issue #26)."""

    at: int
    joined: frozenset[str] = frozenset()
    left: frozenset[str] = frozenset()
    anonymous: int = 0
    whole: bool = False


def seat_intervals(log: Sequence[tuple[int, Seats]], start: int,
                   end: int) -> list[SeatInterval]:
    """Intervals of each seat within [start, end), from a log of (time, seats from then on).

    The log need not be sorted; the last entry at or before `start` gives the seats at the
    beginning. A seat present when the log ends stays until `end`.
    """
    return change_intervals([SeatChange(at, s.named, frozenset(), s.anonymous, True)
                             for at, s in log], start, end)


def _replay(changes: Sequence[SeatChange], start: int, end: int,
            seat: Callable[[str, int, int], None],
            band: Callable[[int, int, int, int], None]) -> None:
    """Replay a seat log (stable-sorted by time) once over [start, end): `seat(user, since,
    until)` for each named seat's interval, `band(first, last, since, until)` for each band of
    anonymous seats. Anonymous seats are a stack of bands [first, last, since]: a higher limit
    pushes the new seats, a lower one pops (or cuts) the top, so the work is per log entry,
    never per anonymous seat; named seats cost per seat that joins or leaves (and a whole
    roster per `whole` entry). The one replay of `change_intervals` and `change_figures`."""
    opened: dict[str, int] = {}  # the seats held now -> since when
    bands: list[list[int]] = []
    held = 0
    for change in sorted(changes, key=lambda c: c.at):
        at = max(change.at, start)
        if at >= end:
            break
        if change.whole:
            leaving = [s for s in opened if s not in change.joined]
        else:
            leaving = [s for s in change.left if s in opened]
        for user in leaving:
            since = opened.pop(user)
            if since < at:
                seat(user, since, at)
        for user in change.joined:
            if user not in opened:
                opened[user] = at
        while bands and bands[-1][1] > change.anonymous:
            first, last, since = bands[-1]
            cut = max(first, change.anonymous + 1)
            if since < at:
                band(cut, last, since, at)
            if cut == first:
                bands.pop()
            else:
                bands[-1][1] = cut - 1
        if change.anonymous > held:
            bands.append([held + 1, change.anonymous, at])
        held = change.anonymous
    for user, since in opened.items():
        seat(user, since, end)
    for first, last, since in bands:
        band(first, last, since, end)


def change_intervals(changes: Sequence[SeatChange], start: int,
                     end: int) -> list[SeatInterval]:
    """`seat_intervals` of a log of changes: every interval spelled out (`_replay`)."""
    out: list[SeatInterval] = []
    _replay(changes, start, end,
            lambda user, since, until: out.append(SeatInterval(user, since, until)),
            lambda first, last, since, until: out.append(_band(first, last, since, until)))
    return sorted(out, key=lambda i: (i.start, i.first, i.seat))


def seat_seconds(intervals: Iterable[SeatInterval]) -> int:
    return sum((i.end - i.start) * i.count for i in intervals)


def peak_concurrent(intervals: Iterable[SeatInterval]) -> int:
    """Most seats held at one instant; an end and a start at the same second do not overlap."""
    edges = sorted([(i.start, i.count) for i in intervals]
                   + [(i.end, -i.count) for i in intervals])
    peak = level = 0
    for _, step in edges:  # (t, -n) sorts before (t, +n): an end before a start
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
        # Anonymous seat #k is held whenever #k+1 is, so the highest one held is their number.
        users = {i.seat for i in intervals if i.end > i.start and not i.first}
        anonymous = max((i.last for i in intervals if i.end > i.start), default=0)
        return unit_price_minor * (len(users) + anonymous)
    # Intervals at one instant are distinct users and disjoint bands: their counts add up.
    return unit_price_minor * sum(i.count for i in intervals if i.start <= start < i.end)


@dataclass(frozen=True, slots=True)
class SeatFigures:
    """What the charges and the summary need of a period's intervals, without the intervals."""

    seat_seconds: int
    peak: int  # most seats held at one instant (`peak_concurrent`)
    seats: int  # distinct seats with any time in the period (WHOLE_PERIOD)
    at_start: int  # seats held at the period's first second (NEXT_PERIOD)


def change_figures(changes: Sequence[SeatChange], start: int, end: int) -> SeatFigures:
    """The figures of `change_intervals(changes, start, end)`, summed as the log is replayed
    (`_replay`): a summary of a 100,000-seat roster makes no per-seat interval to allocate,
    sort and collect."""
    seats: set[str] = set()  # named seats with time in the period
    edges: dict[int, list[int]] = {}  # time -> [seats whose interval starts, ends] there
    total = at_start = top_band = 0

    def interval(since: int, until: int, count: int) -> None:
        nonlocal total, at_start
        total += (until - since) * count
        if since <= start:
            at_start += count
        edges.setdefault(since, [0, 0])[0] += count
        edges.setdefault(until, [0, 0])[1] += count

    def seat(user: str, since: int, until: int) -> None:
        seats.add(user)
        interval(since, until, 1)

    def band(first: int, last: int, since: int, until: int) -> None:
        nonlocal top_band
        top_band = max(top_band, last)
        interval(since, until, last - first + 1)

    _replay(changes, start, end, seat, band)
    peak = level = 0
    for t in sorted(edges):  # at one second, the ends before the starts
        starts, ends = edges[t]
        level += starts - ends
        peak = max(peak, level)
    return SeatFigures(total, peak, len(seats) + top_band, at_start)


def charge_of(mode: ProrationMode, figures: SeatFigures, unit_price_minor: int, start: int,
              end: int) -> int:
    """`charge` from the figures of the period's intervals."""
    if mode is ProrationMode.PRORATA:
        length = end - start
        return (2 * unit_price_minor * figures.seat_seconds + length) // (2 * length)
    if mode is ProrationMode.WHOLE_PERIOD:
        return unit_price_minor * figures.seats
    return unit_price_minor * figures.at_start
