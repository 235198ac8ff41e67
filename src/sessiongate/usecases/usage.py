"""Usage recording: events validated (ids, quantity, time window, attributes), their account
and feature checked, then written once each (RecordUsage, and the bulk RecordUsageStream and
RecordUsageBatches).

A bulk call holds what it has read and not yet written: at most one chunk of events
(`CHUNK_EVENTS`, `CHUNK_BYTES` as received), validated whole, then written. A stream of up to
a chunk is all or nothing on validation; a longer one is written chunk by chunk, and a call
that fails says how many of its first events are recorded (`stopped`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple, TypeVar

import structlog

from sessiongate.domain.clock import Clock
from sessiongate.domain.entitlements import Entitlement
from sessiongate.domain.errors import (
    AlreadyExists,
    BackendUnavailable,
    InvalidArgument,
    NotFound,
    SessionGateError,
)
from sessiongate.domain.records import StateSource
from sessiongate.domain.usage import ConflictingDuplicates, Unrecorded, UsageRecord
from sessiongate.domain.validation import check_id, is_plain_id
from sessiongate.ports import UsageEvents
from sessiongate.usecases.account_state import AccountLookup
from sessiongate.usecases.entitlements import MAX_QUANTITY, Entitlements, check_quantity

log = structlog.get_logger(__name__)

# Usage events may be stamped this far ahead of our clock (clock skew between hosts).
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_LENGTH = 256
MAX_STREAM_EVENTS = 10_000
# A bulk call's chunk (`UsageEvents.record_in_order` writes it).
CHUNK_EVENTS = 1000
CHUNK_BYTES = 1 << 20  # of events as received (serialized size)

T = TypeVar("T")
Window = tuple[datetime, datetime, datetime]  # (now, earliest, latest) `occurred_at`


class Event(NamedTuple):
    """One usage event as received, not yet validated."""

    event_id: str
    account_id: str
    user_id: str
    feature: str
    quantity: int
    occurred_at: datetime | None  # None: not stated (the time it arrived)
    attributes: Mapping[str, str]
    unreadable: str | None = None  # why a stated `occurred_at` could not be read
    size: int = 0  # serialized, as received: what a bulk chunk is bounded by


class UsageRecorder:
    def __init__(self, usage: UsageEvents, bulk: UsageEvents, lookup: AccountLookup,
                 entitlements: Entitlements, clock: Clock) -> None:
        self.usage = usage
        self.bulk = bulk  # bulk calls' writes (a connection of their own)
        self.lookup = lookup
        self.entitlements = entitlements
        self.clock = clock
        self.retention = timedelta(milliseconds=usage.retention_ms)

    def window(self, now: datetime) -> Window:
        """(now, earliest, latest) `occurred_at` an event may carry, for one call: not older
        than the log remembers event ids."""
        return now, now - self.retention, now + MAX_FUTURE_SKEW

    @staticmethod
    def validate(e: Event, window: Window, f: str = "") -> UsageRecord:
        """Validate one event (no I/O): nothing is written until every event of a call is
        valid. Field names (prefix `f`, e.g. `events[3].`) are built only for an error."""
        now, earliest, latest = window
        event_id, account_id, user_id, feature = e.event_id, e.account_id, e.user_id, e.feature
        if not (is_plain_id(event_id) and is_plain_id(account_id) and is_plain_id(feature)
                and (not user_id or is_plain_id(user_id))):
            check_id(f + "event_id", event_id)
            check_id(f + "account_id", account_id)
            check_id(f + "user_id", user_id, required=False)
            check_id(f + "feature", feature)
        quantity = e.quantity
        if quantity < 0 or quantity > MAX_QUANTITY:
            check_quantity(f + "quantity", quantity)
        stated = True
        occurred = e.occurred_at
        if e.unreadable is not None:
            raise InvalidArgument(f + "occurred_at", e.unreadable)
        if occurred is not None:
            if occurred > latest:
                raise InvalidArgument(f + "occurred_at",
                                      f"{occurred.isoformat()} is in the future")
            if occurred < earliest:
                raise InvalidArgument(f + "occurred_at", "older than the deduplication window")
        else:
            occurred = now
            stated = False
        attributes = e.attributes
        if attributes:
            if len(attributes) > MAX_ATTRIBUTES:
                raise InvalidArgument(f + "attributes", f"more than {MAX_ATTRIBUTES} entries")
            for k, v in attributes.items():
                check_id(f + "attributes", k)
                if len(v) > MAX_ATTRIBUTE_LENGTH or not v.isprintable():
                    raise InvalidArgument(f"{f}attributes[{k}]", "too long or not printable")
            return UsageRecord(event_id, account_id, user_id, feature, quantity, occurred,
                               dict(attributes), stated)
        return UsageRecord(event_id, account_id, user_id, feature, quantity, occurred,
                           stated_at=stated)

    async def _check_recordable(self, account_id: str, feature: str, f: str) -> None:
        """The account exists, and its plan (if any) has `feature`."""
        found = await self.lookup.find(account_id)
        if found.source is StateSource.UNAVAILABLE:
            log.warning("account state unavailable", error=found.error)
            raise BackendUnavailable("account state unavailable")
        account = found.account
        if account is None:
            raise NotFound(f"{f}account_id: no account {account_id!r}")
        if account.plan_id:
            definition = await self.entitlements.feature(account, feature)
            if isinstance(definition, Entitlement):
                raise InvalidArgument(f + "feature", definition.message)

    async def record(self, event: Event) -> bool:
        """RecordUsage: True recorded, False a duplicate."""
        now = self.clock.now()
        record = self.validate(event, self.window(now))
        await self._check_recordable(record.account_id, record.feature, "")
        (recorded,) = await self.usage.record([record], now)
        return recorded

    async def record_stream(self, events: AsyncIterator[T], read: Callable[[T], Event],
                            stopped: Callable[[int], None]) -> tuple[int, int]:
        """A bulk call: each of `events` (`read` makes it an `Event`) validated and written in
        chunks; (accepted, duplicates). A call that fails tells `stopped` how many of its
        first events are recorded, then raises."""
        now = self.clock.now()
        window = self.window(now)
        pending: list[UsageRecord] = []
        pending_bytes = 0
        recorded: list[bool] = []
        # (account, feature) pairs found recordable in this call: a stream of one account's
        # events looks its account and plan up once, not per event.
        known: set[tuple[str, str]] = set()
        try:
            n = 0
            async for item in events:
                if n >= MAX_STREAM_EVENTS:
                    raise InvalidArgument("events",
                                          f"more than {MAX_STREAM_EVENTS} in one stream")
                event = read(item)
                try:
                    record = self.validate(event, window)
                except InvalidArgument:  # again, for the message naming the event's field
                    record = self.validate(event, window, f"events[{n}].")
                pair = (record.account_id, record.feature)
                if pair not in known:
                    await self._check_recordable(*pair, f"events[{n}].")
                    known.add(pair)
                pending.append(record)
                pending_bytes += event.size
                n += 1
                if len(pending) >= CHUNK_EVENTS or pending_bytes >= CHUNK_BYTES:
                    recorded += await self.bulk.record_in_order(pending, now)
                    pending, pending_bytes = [], 0
            if pending:
                recorded += await self.bulk.record_in_order(pending, now)
        except ConflictingDuplicates as exc:  # the others of its chunk are recorded
            first = len(recorded) + exc.positions[0]
            stopped(len(recorded))
            raise AlreadyExists(f"events[{first}].event_id", "recorded before with other"
                                " content (an event id names one event: use a new id);"
                                f" {len(exc.positions)} such event(s) refused, the others of"
                                " the stream before it recorded") from None
        except Unrecorded as exc:  # the events before it stay recorded: say how many
            done = len(recorded) + exc.done
            stopped(done)
            if isinstance(exc.cause, SessionGateError):  # refused: nothing of it written
                raise exc.cause from None
            log.warning("usage write failed", recorded=done, error=str(exc.cause))
            raise BackendUnavailable(f"usage write failed after the first {done} events of"
                                     " the stream were recorded") from exc
        except BaseException:
            stopped(len(recorded))
            raise
        accepted = sum(recorded)
        return accepted, len(recorded) - accepted
