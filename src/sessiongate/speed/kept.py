"""`Kept`: a memo of values that many calls share, bounded by emptying it when full.

A hit costs one dict lookup (no LRU bookkeeping), and the working set refills a cleared memo
at once.

Callers: `store/sessions.py` `SessionStore._login_calls`: a seat-limited login's `take_seat`
call, encoded once per (account, user, seat limit, day) and reused by each login of that user
that day. Gain: 362 -> 335 us of server CPU per seat-limited login (-7.5 %;
docs/performance.md, row "take_seat call prepared once per user and day").
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Kept(dict[K, V]):
    """A dict of at most `limit` entries: `keep` empties it first when it is full."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def keep(self, key: K, value: V) -> V:
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
