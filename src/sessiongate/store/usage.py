"""Usage events (idempotent append to the billing stream), seat log, and what summaries read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sessiongate.domain.errors import AlreadyExists
from sessiongate.domain.periods import day_name
from sessiongate.domain.proration import Seats
from sessiongate.store import keys
from sessiongate.store.accounts import IDEMPOTENCY_RETENTION_MS
from sessiongate.store.activity import (
    SEP,
    decode_seat_change,
    encode_seat_change,
    seats_from_tokens,
    split_month,
)
from sessiongate.store.codec import to_ms
from sessiongate.store.record import SEAT_CHANGES_BYTES, US
from sessiongate.store.record import entries as hash_entries
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport, pairs, raise_first


@dataclass(frozen=True, slots=True)
class UsageRecord:
    event_id: str
    account_id: str
    user_id: str
    feature: str
    quantity: int
    occurred_at: datetime
    attributes: dict[str, str] = field(default_factory=dict)
    stated_at: bool = True  # occurred_at came with the event (not the time it arrived)


@dataclass(frozen=True, slots=True)
class MonthData:
    """Raw records of one account and month, as the summary and report need them."""

    usage: dict[str, int]  # hash fields of keys.usage
    logins: dict[str, int]  # day -> logins
    peak_seats: dict[str, int]  # day -> most seats held at once (seat-limited accounts)
    active: list[tuple[str, str]]  # (day, user)
    seat_log: list[tuple[int, Seats]]  # (Unix seconds, billable seats from then on)


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _legacy_seat_log(raw: list[tuple[bytes, float]]) -> list[tuple[int, int, Seats]]:
    """Entries of the former `keys.seat_log` zset: JSON {v, seats} -> time (ms)."""
    entries = []
    for member, score in raw:
        d = json.loads(member)
        entries.append((int(d["v"]), int(score), seats_from_tokens(d["seats"])))
    return entries


def _seat_log(raw: list[tuple[bytes, float]],
              changes: Sequence[str | bytes] = (),
              until_ms: int | None = None) -> list[tuple[int, Seats]]:
    """In commit order (account version); a time earlier than its predecessor's is raised to it.

    Each entry is logged after its commit with the time its request began, so two racing
    upserts may log times out of commit order; the version says which roster won. `raw` is
    the legacy zset, `changes` the seat-change list (`activity.encode_seat_change`).
    """
    entries = _legacy_seat_log(raw) + [decode_seat_change(c) for c in changes]
    if until_ms is not None:
        entries = [e for e in entries if e[1] <= until_ms]
    entries.sort(key=lambda e: e[0])
    out: list[tuple[int, Seats]] = []
    last = None
    for _, ms, seats in entries:
        last = ms if last is None else max(last, ms)
        out.append((last // 1000, seats))
    return out


def _attributes_json(attributes: dict[str, str]) -> str:
    """Canonical JSON of an event's attributes (most events have none)."""
    if not attributes:
        return "{}"
    return json.dumps(attributes, sort_keys=True, separators=(",", ":"))


def usage_digest(e: UsageRecord, stamp: str) -> str:
    """What a reused event id is compared by (its content but not the time it arrived, which
    a retry changes): 16 hex digits."""
    text = US.join((e.user_id, e.feature, str(e.quantity), stamp if e.stated_at else "",
                    _attributes_json(e.attributes)))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


class ConflictingDuplicates(AlreadyExists):
    """Events whose id was recorded with other content (`positions` in the call's events);
    the call's other events were recorded."""

    def __init__(self, positions: list[int]) -> None:
        super().__init__("event_id", "recorded before with other content (an event id names "
                         "one event: use a new id)")
        self.positions = positions


# Events per `record_usage.lua` call: a call blocks Redis while it runs (~10 us an event),
# so a large batch is cut into calls that keep other clients' commands waiting ~2 ms at most.
EVENTS_PER_CALL = 200


class UsageStore:
    def __init__(self, redis: Transport, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts
        self._sharded = redis.sharded  # see keys.usage_shard

    async def record(self, events: Sequence[UsageRecord], now: datetime) -> list[bool]:
        """Record each event once (`record_usage.lua`); True: recorded, False: a duplicate.
        An event whose id was recorded with other content is not recorded: after the others,
        `ConflictingDuplicates` is raised naming them.

        One script call per account and month and at most `EVENTS_PER_CALL` events, all
        calls in one round trip (`Scripts.run_many`). A failed call writes nothing; the
        others stay recorded, and a retry of the batch counts them as duplicates. The
        first failure is raised after every call has run.
        """
        groups: dict[tuple[str, str], list[int]] = {}
        # Most events of a stream share a few times (often the call's `now`): each is
        # formatted once.
        formatted: dict[datetime, str] = {}
        stamps = []
        for e in events:
            stamp = formatted.get(e.occurred_at)
            if stamp is None:
                stamp = formatted[e.occurred_at] = e.occurred_at.astimezone(UTC).isoformat()
            stamps.append(stamp)
        for i, e in enumerate(events):  # "YYYY-MM" is month_name, "YYYY-MM-DD" day_name
            groups.setdefault((e.account_id, stamps[i][:7]), []).append(i)
        recorded_at = now.isoformat()
        calls: list[tuple[list[str], list[Any]]] = []
        parts: list[list[int]] = []
        for (aid, month), positions in groups.items():
            for start in range(0, len(positions), EVENTS_PER_CALL):
                part = positions[start:start + EVENTS_PER_CALL]
                batch = [[events[i].event_id, events[i].user_id, events[i].feature,
                          str(events[i].quantity), stamps[i], stamps[i][:10],
                          _attributes_json(events[i].attributes)] for i in part]
                args = [to_ms(now), IDEMPOTENCY_RETENTION_MS, aid, recorded_at,
                        json.dumps(batch, ensure_ascii=False, separators=(",", ":")),
                        json.dumps([usage_digest(events[i], stamps[i]) for i in part])]
                calls.append(([keys.usage_events(aid), keys.usage(aid, month),
                               keys.usage_stream_of(aid, sharded=self._sharded)], args))
                parts.append(part)
        out = [False] * len(events)
        conflicts: list[int] = []
        failed: Exception | None = None
        for part, res in zip(parts, await self._scripts.run_many("record_usage", calls),
                             strict=True):
            if isinstance(res, Exception):
                failed = failed or res
                continue
            for i, r in zip(part, res, strict=True):
                out[i] = int(r) == 1
                if int(r) == 2:
                    conflicts.append(i)
        if failed is not None:
            raise failed
        if conflicts:
            raise ConflictingDuplicates(sorted(conflicts))
        return out

    async def log_seats(self, account_id: str, version: int, seats: Seats,
                        at: datetime) -> None:
        """Append the account's billable seats as of `at` (after a roster or limit change), to
        the account hash's `s` (`log_seats.lua`)."""
        entry = encode_seat_change(version, to_ms(at) or 0, seats)
        await self._scripts["log_seats"](
            keys=[keys.account(account_id), keys.seat_changes(account_id)],
            args=[entry, SEAT_CHANGES_BYTES])

    async def month(self, account_id: str, month: str, start: datetime,
                    end: datetime) -> MonthData:
        """Everything recorded for `month` [start, end), and the seat log, in one round trip.

        Reads the compact layout (the month hash, the account hash's seat changes and the
        list they overflow to) and the keys written by releases before it (`keys.logins`,
        `active_users`, `peak_seats`, `seat_log`), so a month recorded partly by each still
        adds up.
        """
        days = [day_name(start + timedelta(days=i)) for i in range((end - start).days)]
        end_ms = to_ms(end) or 0
        replies = raise_first(await self._redis.many([
            ("HGETALL", keys.usage(account_id, month)),
            ("LRANGE", keys.seat_changes(account_id), 0, -1),
            ("HGET", keys.account(account_id), "s"),
            ("SMEMBERS", keys.active_users(account_id, month)),
            ("ZRANGEBYSCORE", keys.seat_log(account_id), "-inf", end_ms, "WITHSCORES"),
            ("HGETALL", keys.peak_seats(account_id, month)),
            *[("SCARD", keys.logins(account_id, day)) for day in days]]))
        fields, changes, newest, active, raw_log, peaks, *counts = replies
        log = [(m, float(s)) for m, s in pairs(raw_log)]
        got = split_month(month, {_text(k): _text(v) for k, v in pairs(fields)})
        for day, n in zip(days, counts, strict=True):
            if n:  # legacy per-day sets and the month hash hold different sessions
                got.logins[day] = got.logins.get(day, 0) + int(n)
        for k, v in pairs(peaks):
            got.peaks[_text(k)] = max(got.peaks.get(_text(k), 0), int(v))
        users = [tuple(_text(m).split(SEP, 1)) for m in active]
        got.active.update((p[0], p[1]) for p in users if len(p) == 2)
        return MonthData(
            usage=got.usage,
            logins=dict(sorted(got.logins.items())),
            peak_seats=got.peaks,
            active=sorted(got.active),
            seat_log=_seat_log(log, [*changes, *hash_entries(newest)], end_ms),
        )
