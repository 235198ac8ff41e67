"""Bounds of bulk usage uploads (`RecordUsageStream`, `RecordUsageBatches`), issue #26.7.

A bulk call holds what it has read and not yet written: at most one chunk of events
(usecases/usage.py) and the message being read, never its whole stream. `BulkSlots` caps how
many such calls run at once, so that their memory together is bounded too; a call that finds
no slot within `WAIT` seconds is RESOURCE_EXHAUSTED (retry later), having read and written
nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sessiongate.domain.errors import ResourceExhausted

MAX_CALLS = 8  # bulk calls at once, per process
WAIT = 1.0  # seconds a call waits for a slot
# Trailing metadata of a bulk call that failed: how many of its first events are recorded.
RECORDED_KEY = "sessiongate-recorded-events"


class BulkSlots:
    def __init__(self, calls: int = MAX_CALLS, wait: float = WAIT) -> None:
        self._calls = calls
        self._wait = wait
        self._free = asyncio.Semaphore(calls)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait):
                await self._free.acquire()
        except TimeoutError:
            raise ResourceExhausted(
                f"more than {self._calls} usage streams at once: retry later") from None
        try:
            yield
        finally:
            self._free.release()
