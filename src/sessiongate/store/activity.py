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

from sessiongate.domain.proration import Seats

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


def decode_seat_change(raw: str | bytes) -> tuple[int, int, Seats]:
    """(account version, time in ms, billable seats from then on)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    version, at_ms, *tokens = text.split(SEP)
    return int(version), int(at_ms), seats_from_tokens(tokens)
