"""The seat log as changes (issue #26.6): deltas bill exactly as whole rosters did, and the
summary's figures, replayed without per-seat intervals, equal those of the intervals."""

from __future__ import annotations

from datetime import UTC, datetime

import hypothesis.strategies as st
from hypothesis import given, settings

from sessiongate.domain.periods import months_before
from sessiongate.domain.proration import (
    ProrationMode,
    SeatChange,
    Seats,
    change_figures,
    change_intervals,
    charge,
    charge_of,
    peak_concurrent,
    seat_intervals,
    seat_seconds,
)
from sessiongate.store.activity import (
    decode_seat_entry,
    encode_seat_change,
    encode_seat_delta,
    encode_seat_snapshot,
)
from sessiongate.store.usage import _seat_changes, _seat_log

START = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())
END = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp())
DAY = 86_400

LOGS = st.lists(st.tuples(st.integers(START - 3 * DAY, END + DAY),
                          st.frozensets(st.sampled_from("abcde"), max_size=5),
                          st.integers(0, 6)), max_size=10)


def as_changes(log: list[tuple[int, Seats]], whole_every: int) -> list[SeatChange]:
    """The log (in time order) as deltas from each entry's predecessor, every
    `whole_every`-th entry whole (as the first of each billing period is)."""
    out, before = [], Seats()
    for i, (at, seats) in enumerate(sorted(log, key=lambda e: e[0])):
        if i % whole_every == 0:
            out.append(SeatChange(at, seats.named, frozenset(), seats.anonymous, True))
        else:
            out.append(SeatChange(at, seats.named - before.named, before.named - seats.named,
                                  seats.anonymous))
        before = seats
    return out


@settings(max_examples=300, deadline=None)
@given(LOGS, st.integers(1, 4))
def test_deltas_bill_as_whole_rosters_and_figures_as_intervals(
        entries: list[tuple[int, frozenset[str], int]], whole_every: int) -> None:
    log = [(t, Seats(users, n)) for t, users, n in entries]
    expected = seat_intervals(log, START, END)
    changes = as_changes(log, whole_every)
    assert change_intervals(changes, START, END) == expected
    figures = change_figures(changes, START, END)
    assert figures.seat_seconds == seat_seconds(expected)
    assert figures.peak == peak_concurrent(expected)
    for mode in ProrationMode:
        assert charge_of(mode, figures, 997, START, END) == charge(mode, expected, 997,
                                                                    START, END)


def test_entries_round_trip_and_a_delta_names_only_what_changed() -> None:
    before = Seats(frozenset(f"u{i}" for i in range(1000)))
    after = Seats(before.named - {"u7"} | {"new"})
    delta = encode_seat_delta(5, 1_000, before, after)
    assert len(delta) < 40
    assert decode_seat_entry(delta) == (5, 0, SeatChange(1_000, frozenset({"new"}),
                                                         frozenset({"u7"}), 0))
    snap = encode_seat_snapshot(4, 500, Seats(anonymous=3))
    assert decode_seat_entry(snap) == (4, 1, SeatChange(500, anonymous=3, whole=True))
    whole = encode_seat_change(1, 9, after)
    assert decode_seat_entry(whole) == (1, 0, SeatChange(9, after.named, whole=True))


def test_a_period_snapshot_sorts_after_the_changes_of_its_version() -> None:
    """Two upserts raced across the period's start and the later version was logged first:
    its snapshot (the seats of version 2, at the period's start) and the earlier version's
    delta both say version 2; the delta (logged time 1,500 ms) comes first, the snapshot's
    time is raised to it, and the seats are right at every second."""
    entries = [encode_seat_change(1, 0, Seats(frozenset({"a"}))),
               encode_seat_snapshot(2, 1_000, Seats(frozenset({"a", "b"}))),
               encode_seat_delta(3, 3_000, Seats(frozenset({"a", "b"})), Seats(frozenset({"b"}))),
               encode_seat_delta(2, 1_500, Seats(frozenset({"a"})), Seats(frozenset({"a", "b"})))]
    assert [c.at for c in _seat_changes(entries)] == [0, 1, 1, 3]
    assert _seat_log(entries) == [(0, Seats(frozenset({"a"}))),
                                      (1, Seats(frozenset({"a", "b"}))),
                                      (1, Seats(frozenset({"a", "b"}))),
                                      (3, Seats(frozenset({"b"})))]


def test_months_before() -> None:
    jan = datetime(2027, 1, 1, tzinfo=UTC)
    assert months_before(jan, 0) == jan
    assert months_before(jan, 1) == datetime(2026, 12, 1, tzinfo=UTC)
    assert months_before(jan, 24) == datetime(2025, 1, 1, tzinfo=UTC)
