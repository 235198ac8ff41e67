"""`Kept`: a memo of values that many callers share, bounded by emptying it when full.

Used where a hit must cost one dict lookup (a sweep's accounts share their times, a user's
logins their prepared Lua call): no LRU bookkeeping on the hit path, and the working set
refills a cleared memo at once. Misses go through `keep`.
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
