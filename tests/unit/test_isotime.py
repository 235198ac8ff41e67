"""`iso` is `isoformat`, whatever the zone, and keeps a bounded number of texts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sessiongate.domain import isotime
from sessiongate.domain.isotime import iso

T = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_iso_is_isoformat_in_any_zone() -> None:
    plus_one = T.astimezone(timezone(timedelta(hours=1)))
    assert plus_one == T  # equal instants, different text: the cache must not mix them
    assert iso(T) == T.isoformat() == "2026-01-02T03:04:05.678901+00:00"
    assert iso(plus_one) == plus_one.isoformat() == "2026-01-02T04:04:05.678901+01:00"
    assert iso(T) == "2026-01-02T03:04:05.678901+00:00"
    naive = T.replace(tzinfo=None)
    assert iso(naive) == "2026-01-02T03:04:05.678901"


def test_iso_keeps_a_bounded_number() -> None:
    for i in range(isotime._TEXT.limit + 10):
        t = T + timedelta(seconds=i)
        assert iso(t) == t.isoformat()
        assert len(isotime._TEXT) <= isotime._TEXT.limit
