"""Input rules shared by every entry point (gRPC, payment stream, CLI)."""

from __future__ import annotations

import functools
import unicodedata
import zoneinfo

from sessiongate.domain.errors import InvalidArgument

MAX_ID_LENGTH = 128


def check_id(field: str, value: str, *, required: bool = True) -> str:
    """An identifier: 1..128 characters, no control characters, no surrounding whitespace."""
    if not value:
        if required:
            raise InvalidArgument(field, "must not be empty")
        return value
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(field, f"longer than {MAX_ID_LENGTH} characters")
    if value != value.strip():
        raise InvalidArgument(field, "has leading or trailing whitespace")
    if not value.isprintable():  # C-speed check first: this runs on every login
        bad = next(ch for ch in value if not ch.isprintable())
        kind = "control" if unicodedata.category(bad).startswith("C") else "non-printable"
        raise InvalidArgument(field, f"contains {kind} character U+{ord(bad):04X}")
    return value


def is_plain_id(value: str) -> bool:
    """`check_id`'s rules as a test, for loops over many ids (no exception, no field name
    built): on False, `check_id` says what is wrong."""
    return 0 < len(value) <= MAX_ID_LENGTH and value.isprintable() and value == value.strip()


def check_ids(field: str, values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    for i, v in enumerate(values):
        check_id(f"{field}[{i}]", v)
    return tuple(values)


def check_emails(field: str, values: list[str] | tuple[str, ...], *,
                 limit: int = 20) -> tuple[str, ...]:
    """Email addresses (`local@domain`, no whitespace), at most `limit`."""
    if len(values) > limit:
        raise InvalidArgument(field, f"more than {limit} addresses")
    for i, e in enumerate(check_ids(field, values)):
        local, at, domain = e.rpartition("@")
        if not at or not local or not domain or any(c.isspace() for c in e):
            raise InvalidArgument(f"{field}[{i}]", "not an email address")
    return tuple(values)


def check_non_negative(field: str, value: int) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    return value


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


def check_time_zone(field: str, name: str) -> str:
    """An IANA time zone name (`Europe/Paris`); empty means UTC. Looked up in the set of
    known names, never opened as a path (`../../../etc/passwd` is a file, not a zone). The
    one check of a time zone: the monthly report is sent at 06:00 on the 1st in it."""
    if not name:
        return "UTC"
    if name not in _zones():
        raise InvalidArgument(field, f"{name[:64]!r} is not an IANA time zone name "
                              "(e.g. Europe/Paris)")
    return name
