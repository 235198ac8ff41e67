"""Time is injected: production uses the system clock, tests move a manual one."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol

# The latest time there is: what a derived time beyond the calendar saturates at.
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def later(when: datetime, span: timedelta) -> datetime:
    """`when + span` (span >= 0), or `END_OF_TIME` past the calendar's end: an invoice due
    9999-12-31 (a common "never") plus a dunning stage's delay must not overflow."""
    if span > END_OF_TIME - when:
        return END_OF_TIME
    return when + span


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; thread-safe, for tests and demos."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when
