"""Proration against hand-computed values: April 2026 has 30 days = 2,592,000 seconds."""

from __future__ import annotations

from datetime import UTC, datetime

import hypothesis.strategies as st
from hypothesis import given, settings

from sessiongate.domain.proration import (
    MAX_SEAT_LIMIT,
    ProrationMode,
    SeatInterval,
    Seats,
    billable_seats,
    charge,
    peak_concurrent,
    seat_intervals,
    seat_seconds,
)

START = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp())
DAY = 86_400
T = END - START


def named(users: set[str]) -> Seats:
    return Seats(frozenset(users))


def at(day: int) -> int:
    """Midnight starting day-of-month `day`."""
    return START + (day - 1) * DAY


def test_period_length() -> None:
    assert T == 2_592_000


def test_mid_period_add_and_remove() -> None:
    # a and b from before the month; c added on the 10th; b removed on the 20th.
    log = [
        (START - 5 * DAY, named({"a", "b"})),
        (at(10), named({"a", "b", "c"})),
        (at(20), named({"a", "c"})),
    ]
    iv = seat_intervals(log, START, END)
    assert iv == [
        SeatInterval("a", START, END),
        SeatInterval("b", START, at(20)),
        SeatInterval("c", at(10), END),
    ]
    # a: 30 days, b: 19 days, c: 21 days = 70 days of seats.
    assert seat_seconds(iv) == 70 * DAY == 6_048_000
    assert peak_concurrent(iv) == 3
    # 3000 per seat-month: 3000 * 70 / 30 = 7000 exactly.
    assert charge(ProrationMode.PRORATA, iv, 3000, START, END) == 7000
    assert charge(ProrationMode.WHOLE_PERIOD, iv, 3000, START, END) == 9000  # a, b, c
    assert charge(ProrationMode.NEXT_PERIOD, iv, 3000, START, END) == 6000  # a, b at the start


def test_prorata_to_the_second_rounds_half_up() -> None:
    one_second_late = [SeatInterval("a", START + 1, END)]
    # 1000 * 2,591,999 / 2,592,000 = 999.9996 -> 1000
    assert charge(ProrationMode.PRORATA, one_second_late, 1000, START, END) == 1000
    an_hour = [SeatInterval("a", at(3), at(3) + 3600)]
    # 1000 * 3600 / 2,592,000 = 1.389 -> 1
    assert charge(ProrationMode.PRORATA, an_hour, 1000, START, END) == 1
    half = [SeatInterval("a", START, START + 1296)]
    # 1000 * 1296 / 2,592,000 = 0.5 exactly -> 1 (half up)
    assert charge(ProrationMode.PRORATA, half, 1000, START, END) == 1
    # 999 * 1295 / 2,592,000 = 0.4991 -> 0
    assert charge(ProrationMode.PRORATA, [SeatInterval("a", START, START + 1295)], 999,
                  START, END) == 0


def test_added_mid_period_is_charged_from_next_period_only_in_next_period_mode() -> None:
    log = [(at(16), named({"new"}))]
    iv = seat_intervals(log, START, END)
    assert iv == [SeatInterval("new", at(16), END)]
    # 15 of 30 days: half the price.
    assert charge(ProrationMode.PRORATA, iv, 5000, START, END) == 2500
    assert charge(ProrationMode.WHOLE_PERIOD, iv, 5000, START, END) == 5000
    assert charge(ProrationMode.NEXT_PERIOD, iv, 5000, START, END) == 0
    # ... and the next month it is there from the start: charged in full.
    nxt = seat_intervals(log, END, END + 31 * DAY)
    assert charge(ProrationMode.NEXT_PERIOD, nxt, 5000, END, END + 31 * DAY) == 5000


def test_removed_mid_period_and_readded() -> None:
    log = [
        (START, named({"a"})),
        (at(5) + 7, Seats()),
        (at(25), named({"a"})),
    ]
    iv = seat_intervals(log, START, END)
    assert iv == [SeatInterval("a", START, at(5) + 7), SeatInterval("a", at(25), END)]
    assert seat_seconds(iv) == 4 * DAY + 7 + 6 * DAY
    assert peak_concurrent(iv) == 1
    assert charge(ProrationMode.WHOLE_PERIOD, iv, 100, START, END) == 100  # one seat, once


def test_swap_at_the_same_second_does_not_overlap() -> None:
    log = [(START, named({"a"})), (at(10), named({"b"}))]
    iv = seat_intervals(log, START, END)
    assert peak_concurrent(iv) == 1
    assert seat_seconds(iv) == T


def test_changes_after_the_period_are_ignored_and_empty_log_costs_nothing() -> None:
    log = [(START, named({"a"})), (END + 10, named({"a", "b"}))]
    assert seat_intervals(log, START, END) == [SeatInterval("a", START, END)]
    assert seat_intervals([], START, END) == []
    for mode in ProrationMode:
        assert charge(mode, [], 1000, START, END) == 0


def test_billable_seats_are_named_users_else_the_seat_limit() -> None:
    assert billable_seats(["bob", "alice"], 10) == named({"alice", "bob"})
    assert billable_seats([], 3) == Seats(anonymous=3)
    assert billable_seats([], 0) == Seats()


def test_anonymous_seats_come_in_bands() -> None:
    # 5 seats from before April, 3 from the 10th, 6 from the 20th.
    log = [(START - DAY, Seats(anonymous=5)), (at(10), Seats(anonymous=3)),
           (at(20), Seats(anonymous=6))]
    iv = seat_intervals(log, START, END)
    assert iv == [
        SeatInterval("#1-3", START, END, 3, 1),
        SeatInterval("#4-5", START, at(10), 2, 4),
        SeatInterval("#4-6", at(20), END, 3, 4),
    ]
    assert seat_seconds(iv) == (3 * 30 + 2 * 9 + 3 * 11) * DAY
    assert peak_concurrent(iv) == 6
    assert charge(ProrationMode.WHOLE_PERIOD, iv, 100, START, END) == 600  # #1..#6 held
    assert charge(ProrationMode.NEXT_PERIOD, iv, 100, START, END) == 500
    # 141 seat-days of 30: 100 * 141 / 30 = 470
    assert charge(ProrationMode.PRORATA, iv, 100, START, END) == 470


def test_the_largest_seat_limit_costs_one_interval_and_fits_int64() -> None:
    log = [(START, Seats(anonymous=MAX_SEAT_LIMIT))]
    iv = seat_intervals(log, START, END)
    assert len(iv) == 1
    top_price = 10**12  # service.plans.MAX_UNIT_PRICE_MINOR
    for mode in ProrationMode:
        assert charge(mode, iv, top_price, START, END) == top_price * MAX_SEAT_LIMIT < 2**63


def _spelled_out(seats: Seats) -> Seats:
    """The same seats with #1..#N as users, how they were billed before bands existed."""
    return Seats(seats.named | {f"#{i}" for i in range(1, seats.anonymous + 1)})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(START - 3 * DAY, END + DAY),
                          st.frozensets(st.sampled_from("abc"), max_size=3),
                          st.integers(0, 6)), max_size=8))
def test_bands_bill_exactly_as_seats_spelled_out_one_by_one(
        changes: list[tuple[int, frozenset[str], int]]) -> None:
    log = [(t, Seats(users, n)) for t, users, n in changes]
    bands = seat_intervals(log, START, END)
    one_by_one = seat_intervals([(t, _spelled_out(s)) for t, s in log], START, END)
    assert all(i.count == 1 for i in one_by_one)
    assert seat_seconds(bands) == seat_seconds(one_by_one)
    assert peak_concurrent(bands) == peak_concurrent(one_by_one)
    for mode in ProrationMode:
        assert charge(mode, bands, 997, START, END) == charge(mode, one_by_one, 997, START, END)


def test_seat_log_follows_commit_order_not_request_times() -> None:
    from sessiongate.store.activity import encode_seat_change
    from sessiongate.store.usage import _seat_log

    # version 2 committed last but its request began 1 s before version 1's
    raw = [encode_seat_change(2, 9_000, named({"b"})), encode_seat_change(1, 10_000, named({"a"}))]
    assert _seat_log(raw) == [(10, named({"a"})), (10, named({"b"}))]
    iv = seat_intervals(_seat_log(raw), 0, 100)
    assert iv == [SeatInterval("b", 10, 100)]
