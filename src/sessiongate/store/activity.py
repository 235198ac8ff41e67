"""Compact report records: the fields of a month's hash, and the entries of the seat-change list.

Why this shape (issue #5, Redis memory per account): a key costs ~100 bytes before its value,
and a Redis set of strings or a zset with a member over 64 bytes is stored as a hash table,
~270 bytes for a single member. A small hash (up to 128 fields of up to 64 bytes) and a list
stay in Redis's compact encoding, a few bytes per entry. So a month's logins, active users and
daily seat peaks are fields of the month's usage hash (`keys.usage`), with the day as two
digits (the month is in the key name), and the seat log is a list (`keys.seat_changes`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sessiongate.domain.proration import SeatChange, Seats

SEP = "\x1f"  # unit separator: ids hold no control characters, so it cannot clash
ANONYMOUS = "\x1d"  # group separator, then N: the token for N anonymous seats (RS and US
# already delimit the account hash's entries and a seat change's tokens)

LOGIN, ACTIVE, PEAK = "l:", "a:", "p:"  # usage's own fields start with "t:", "n:" or "d:"


def login_field(day: str, nonce: str) -> str:
    """One session opened on `day` (YYYY-MM-DD): a field, so a rewrite counts nothing twice."""
    return f"{LOGIN}{day[8:10]}:{nonce}"


def active_field(day: str, user: str) -> str:
    """`user` was active on `day` (YYYY-MM-DD)."""
    return f"{ACTIVE}{day[8:10]}:{user}"


def peak_field(day: str) -> str:
    """Most seats held at once on `day` (YYYY-MM-DD): written by `take_seat.lua`."""
    return f"{PEAK}{day[8:10]}"


@dataclass(slots=True)
class MonthFields:
    """A month's hash split by kind of field; days are full `YYYY-MM-DD` names again."""

    usage: dict[str, int] = field(default_factory=dict)
    logins: dict[str, int] = field(default_factory=dict)  # day -> sessions opened
    active: set[tuple[str, str]] = field(default_factory=set)  # (day, user)
    peaks: dict[str, int] = field(default_factory=dict)  # day -> most seats held at once


def split_month(month: str, raw: dict[str, str]) -> MonthFields:
    """Read the hash of `month` (YYYY-MM) as HGETALL returns it (decoded to str)."""
    out = MonthFields()
    for name, value in raw.items():
        kind = name[:2]
        if kind in (LOGIN, ACTIVE, PEAK) and name[4:5] in (":", ""):
            day = f"{month}-{name[2:4]}"
            if kind == LOGIN:
                out.logins[day] = out.logins.get(day, 0) + 1
            elif kind == ACTIVE:
                out.active.add((day, name[5:]))
            else:
                out.peaks[day] = int(value)
        else:
            out.usage[name] = int(value)
    return out


def encode_seat_change(version: int, at_ms: int, seats: Seats) -> str:
    """`<version> US <ms> US <user> US ...`, or `<version> US <ms> US GS<N>` for N anonymous
    seats: one token however large N."""
    tokens = sorted(seats.named)
    if seats.anonymous:
        tokens.append(f"{ANONYMOUS}{seats.anonymous}")
    return SEP.join([str(version), str(at_ms), *tokens])


def seats_from_tokens(tokens: Iterable[str]) -> Seats:
    """Users and the `GS<N>` token (N anonymous seats)."""
    named: set[str] = set()
    anonymous = 0
    for token in tokens:
        if token.startswith(ANONYMOUS):
            anonymous = int(token[1:])
        else:
            named.add(token)
    return Seats(frozenset(named), anonymous)


# A seat change's first token when it is not a whole roster (`log_seats.lua`): a delta
# (`+<user>` joins, `-<user>` leaves, `GS<N>` anonymous seats), or the snapshot of the seats
# at a billing period's start (a whole roster, ordered after the entries of its version).
DELTA, SNAPSHOT = "\x1cd", "\x1cs"
SNAPSHOT_RANK = 1  # sorts after the entries of its version (its seats are theirs)


def encode_seat_delta(version: int, at_ms: int, before: Seats, after: Seats) -> str:
    """`<version> US <ms> US FSd US +<user>... US -<user>... US GS<N>`: what changed, a few
    bytes, however large the roster; idempotent (applied to `after` it gives `after`)."""
    tokens = [DELTA, *(f"+{u}" for u in sorted(after.named - before.named)),
              *(f"-{u}" for u in sorted(before.named - after.named)),
              f"{ANONYMOUS}{after.anonymous}"]
    return SEP.join([str(version), str(at_ms), *tokens])


def encode_seat_snapshot(version: int, at_ms: int, seats: Seats) -> str:
    """The seats at a period's start, written with the period's first delta."""
    whole = encode_seat_change(version, at_ms, seats).split(SEP, 2)
    return SEP.join([*whole[:2], SNAPSHOT, *whole[2:]])


def _delta(tokens: list[str], at_ms: int) -> SeatChange:
    joined: set[str] = set()
    left: set[str] = set()
    anonymous = 0
    for token in tokens:
        if token.startswith("+"):
            joined.add(token[1:])
        elif token.startswith("-"):
            left.add(token[1:])
        elif token.startswith(ANONYMOUS):
            anonymous = int(token[1:])
    return SeatChange(at_ms, frozenset(joined), frozenset(left), anonymous)


def decode_seat_entry(raw: str | bytes) -> tuple[int, int, SeatChange]:
    """(account version, rank among entries of that version, the change with its time in ms)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    version, at_ms, *tokens = text.split(SEP)
    ms = int(at_ms)
    if tokens and tokens[0] == DELTA:
        return int(version), 0, _delta(tokens[1:], ms)
    rank = 0
    if tokens and tokens[0] == SNAPSHOT:
        rank, tokens = SNAPSHOT_RANK, tokens[1:]
    seats = seats_from_tokens(tokens)
    return int(version), rank, SeatChange(ms, seats.named, frozenset(), seats.anonymous, True)


def decode_seat_change(raw: str | bytes) -> tuple[int, int, Seats]:
    """(account version, time in ms, billable seats from then on) of a whole entry."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    version, at_ms, *tokens = text.split(SEP)
    return int(version), int(at_ms), seats_from_tokens(tokens)
