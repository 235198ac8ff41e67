"""Proration against hand-computed values: April 2026 has 30 days = 2,592,000 seconds."""

from __future__ import annotations

from datetime import UTC, datetime

from sessiongate.domain.proration import (
    ProrationMode,
    SeatInterval,
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


def at(day: int) -> int:
    """Midnight starting day-of-month `day`."""
    return START + (day - 1) * DAY


def test_period_length() -> None:
    assert T == 2_592_000


def test_mid_period_add_and_remove() -> None:
    # a and b from before the month; c added on the 10th; b removed on the 20th.
    log = [
        (START - 5 * DAY, frozenset({"a", "b"})),
        (at(10), frozenset({"a", "b", "c"})),
        (at(20), frozenset({"a", "c"})),
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
    log = [(at(16), frozenset({"new"}))]
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
        (START, frozenset({"a"})),
        (at(5) + 7, frozenset()),
        (at(25), frozenset({"a"})),
    ]
    iv = seat_intervals(log, START, END)
    assert iv == [SeatInterval("a", START, at(5) + 7), SeatInterval("a", at(25), END)]
    assert seat_seconds(iv) == 4 * DAY + 7 + 6 * DAY
    assert peak_concurrent(iv) == 1
    assert charge(ProrationMode.WHOLE_PERIOD, iv, 100, START, END) == 100  # one seat, once


def test_swap_at_the_same_second_does_not_overlap() -> None:
    log = [(START, frozenset({"a"})), (at(10), frozenset({"b"}))]
    iv = seat_intervals(log, START, END)
    assert peak_concurrent(iv) == 1
    assert seat_seconds(iv) == T


def test_changes_after_the_period_are_ignored_and_empty_log_costs_nothing() -> None:
    log = [(START, frozenset({"a"})), (END + 10, frozenset({"a", "b"}))]
    assert seat_intervals(log, START, END) == [SeatInterval("a", START, END)]
    assert seat_intervals([], START, END) == []
    for mode in ProrationMode:
        assert charge(mode, [], 1000, START, END) == 0


def test_billable_seats_are_named_users_else_the_seat_limit() -> None:
    assert billable_seats(["bob", "alice"], 10) == {"alice", "bob"}
    assert billable_seats([], 3) == {"#1", "#2", "#3"}
    assert billable_seats([], 0) == frozenset()


def test_seat_log_follows_commit_order_not_request_times() -> None:
    from sessiongate.store.usage import _seat_log

    # version 2 committed last but its request began 1 s before version 1's
    raw = [(b'{"v":2,"seats":["b"]}', 9_000.0), (b'{"v":1,"seats":["a"]}', 10_000.0)]
    assert _seat_log(raw) == [(10, frozenset({"a"})), (10, frozenset({"b"}))]
    iv = seat_intervals(_seat_log(raw), 0, 100)
    assert iv == [SeatInterval("b", 10, 100)]
