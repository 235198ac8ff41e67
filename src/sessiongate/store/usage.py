"""Usage events (idempotent append to the billing stream), seat log, and what summaries read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sessiongate.domain.periods import day_name, month_start, months_before
from sessiongate.domain.proration import SeatChange, Seats
from sessiongate.store import keys
from sessiongate.store.accounts import IDEMPOTENCY_RETENTION_MS
from sessiongate.store.activity import (
    SEP,
    decode_seat_entry,
    encode_seat_change,
    encode_seat_delta,
    encode_seat_snapshot,
    seats_from_tokens,
    split_month,
)
from sessiongate.store.client import is_cluster
from sessiongate.store.codec import to_ms
from sessiongate.store.record import SEAT_CHANGES_BYTES
from sessiongate.store.record import entries as hash_entries
from sessiongate.store.scripts import Scripts


@dataclass(frozen=True, slots=True)
class UsageRecord:
    event_id: str
    account_id: str
    user_id: str
    feature: str
    quantity: int
    occurred_at: datetime
    attributes: dict[str, str] = field(default_factory=dict)


# Billing periods (months) whose seats the log keeps: the current one and those before it.
# A summary of an older month is refused (OUT_OF_RANGE): its seats may be trimmed.
SEAT_LOG_MONTHS = 25

Raw = list[tuple[bytes, float]]  # the former zset's (member, score) pairs


@dataclass(frozen=True, slots=True)
class MonthData:
    """Raw records of one account and month, as the summary and report need them. The seat
    log stays as read (`seat_entries`) until `seat_changes` decodes it: a large roster's log
    is decoded where the summary is computed, off the event loop (`service/plans.py`)."""

    usage: dict[str, int]  # hash fields of keys.usage
    logins: dict[str, int]  # day -> logins
    peak_seats: dict[str, int]  # day -> most seats held at once (seat-limited accounts)
    active: list[tuple[str, str]]  # (day, user)
    seat_entries: tuple[Raw, list[str | bytes]] = ([], [])  # former zset, seat-change list
    until_ms: int | None = None  # entries after it are not read

    def seat_changes(self) -> list[SeatChange]:
        """The seat log in commit order, times in seconds (`_seat_changes`)."""
        return _seat_changes(*self.seat_entries, self.until_ms)

    @property
    def seat_log(self) -> list[tuple[int, Seats]]:
        """(Unix seconds, billable seats from then on) of each entry: every roster spelled
        out, for reading; the summary works on `seat_changes`."""
        return _whole(self.seat_changes())


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _legacy_seat_log(raw: Raw) -> list[tuple[int, int, SeatChange]]:
    """Entries of the former `keys.seat_log` zset: JSON {v, seats} -> time (ms)."""
    entries = []
    for member, score in raw:
        d = json.loads(member)
        seats = seats_from_tokens(d["seats"])
        entries.append((int(d["v"]), 0, SeatChange(int(score), seats.named, frozenset(),
                                                    seats.anonymous, True)))
    return entries


def _seat_changes(raw: Raw, changes: Sequence[str | bytes] = (),
                  until_ms: int | None = None) -> list[SeatChange]:
    """In commit order (account version; a period's snapshot after the entries of its
    version), times in seconds; a time earlier than its predecessor's is raised to it.

    Each entry is logged after its commit with the time its request began, so two racing
    upserts may log times out of commit order; the version says which roster won (a delta is
    idempotent, so a snapshot that already holds it reads the same). `raw` is the legacy
    zset, `changes` the seat-change list (`activity.py`).
    """
    entries = _legacy_seat_log(raw) + [decode_seat_entry(c) for c in changes]
    if until_ms is not None:
        entries = [e for e in entries if e[2].at <= until_ms]
    entries.sort(key=lambda e: (e[0], e[1]))
    out: list[SeatChange] = []
    last = None
    for _, _, change in entries:
        last = change.at if last is None else max(last, change.at)
        out.append(SeatChange(last // 1000, change.joined, change.left, change.anonymous,
                              change.whole))
    return out


def _whole(changes: Sequence[SeatChange]) -> list[tuple[int, Seats]]:
    """Each change as the whole roster it leaves."""
    named: frozenset[str] = frozenset()
    out = []
    for c in changes:
        named = c.joined if c.whole else (named | c.joined) - c.left
        out.append((c.at, Seats(named, c.anonymous)))
    return out


def _seat_log(raw: Raw, changes: Sequence[str | bytes] = (),
              until_ms: int | None = None) -> list[tuple[int, Seats]]:
    """`_seat_changes` with every roster spelled out."""
    return _whole(_seat_changes(raw, changes, until_ms))


def _attributes_json(attributes: dict[str, str]) -> str:
    """Canonical JSON of an event's attributes (most events have none)."""
    if not attributes:
        return "{}"
    return json.dumps(attributes, sort_keys=True, separators=(",", ":"))


# Events per `record_usage.lua` call: a call blocks Redis while it runs (~10 us an event),
# so a large batch is cut into calls that keep other clients' commands waiting ~2 ms at most;
# a bulk stream's calls also stop at `CALL_BYTES` of events (attributes make an event up to
# ~12 KB: 200 of them would block Redis ~20 ms).
EVENTS_PER_CALL = 200
CALL_BYTES = 128 * 1024


class Unrecorded(Exception):
    """A bulk write stopped at a failed call: the first `done` events are recorded (or were
    duplicates), the rest are not, but for the failed call's after a timeout (it may have
    run): a retry of them counts each event once."""

    def __init__(self, done: int, cause: Exception) -> None:
        super().__init__(f"{done} events recorded before: {cause}")
        self.done = done
        self.cause = cause


def _stamps(events: Sequence[UsageRecord]) -> list[str]:
    """Each event's time in RFC 3339 UTC; most events of a stream share a few times (often
    the call's `now`): each is formatted once."""
    formatted: dict[datetime, str] = {}
    stamps = []
    for e in events:
        stamp = formatted.get(e.occurred_at)
        if stamp is None:
            stamp = formatted[e.occurred_at] = e.occurred_at.astimezone(UTC).isoformat()
        stamps.append(stamp)
    return stamps


def _row(e: UsageRecord, stamp: str) -> str:
    """One event as `record_usage.lua` reads it (ARGV[5]'s array element)."""
    return json.dumps([e.event_id, e.user_id, e.feature, str(e.quantity), stamp, stamp[:10],
                       _attributes_json(e.attributes)], ensure_ascii=False,
                      separators=(",", ":"))


class UsageStore:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts
        self._sharded = is_cluster(redis)  # see keys.usage_shard

    async def record(self, events: Sequence[UsageRecord], now: datetime) -> list[bool]:
        """Record each event once (`record_usage.lua`); True: recorded, False: a duplicate.

        One script call per account and month and at most `EVENTS_PER_CALL` events, all
        calls in one round trip (`Scripts.run_many`). A failed call writes nothing; the
        others stay recorded, and a retry of the batch counts them as duplicates. The
        first failure is raised after every call has run.
        """
        stamps = _stamps(events)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, e in enumerate(events):  # "YYYY-MM" is month_name, "YYYY-MM-DD" day_name
            groups.setdefault((e.account_id, stamps[i][:7]), []).append(i)
        calls: list[tuple[list[str], list[Any]]] = []
        parts: list[list[int]] = []
        for (aid, month), positions in groups.items():
            for start in range(0, len(positions), EVENTS_PER_CALL):
                part = positions[start:start + EVENTS_PER_CALL]
                calls.append(self._call(aid, month, [_row(events[i], stamps[i]) for i in part],
                                        now))
                parts.append(part)
        out = [False] * len(events)
        failed: Exception | None = None
        for part, res in zip(parts, await self._scripts.run_many("record_usage", calls),
                             strict=True):
            if isinstance(res, Exception):
                failed = failed or res
                continue
            for i, r in zip(part, res, strict=True):
                out[i] = bool(int(r))
        if failed is not None:
            raise failed
        return out

    async def record_in_order(self, events: Sequence[UsageRecord], now: datetime
                              ) -> list[bool]:
        """`record`, for a bulk stream: in the events' order, one script call at a time, each
        a run of consecutive events of one account and month, at most `EVENTS_PER_CALL` of
        them and `CALL_BYTES` of JSON (so a call blocks Redis ~2 ms at most, and the
        command in flight is small). What is recorded is always a prefix: the first failure
        raises `Unrecorded` with the number of events before its call."""
        stamps = _stamps(events)
        out: list[bool] = []
        i, n = 0, len(events)
        while i < n:
            aid, month = events[i].account_id, stamps[i][:7]
            rows = [_row(events[i], stamps[i])]
            size = len(rows[0])
            j = i + 1
            while (j < n and j - i < EVENTS_PER_CALL and events[j].account_id == aid
                   and stamps[j][:7] == month):
                row = _row(events[j], stamps[j])
                if size + len(row) > CALL_BYTES:
                    break
                rows.append(row)
                size += len(row)
                j += 1
            call_keys, args = self._call(aid, month, rows, now)
            try:
                res = await self._scripts["record_usage"](keys=call_keys, args=args)
            except (RedisError, OSError) as exc:
                raise Unrecorded(len(out), exc) from exc
            out.extend(bool(int(r)) for r in res)
            i = j
        return out

    def _call(self, aid: str, month: str, rows: list[str], now: datetime
              ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one `record_usage.lua` call of `rows` (`_row`)."""
        args = [to_ms(now), IDEMPOTENCY_RETENTION_MS, aid, now.isoformat(),
                f"[{','.join(rows)}]"]
        return [keys.usage_events(aid), keys.usage(aid, month),
                keys.usage_stream_of(aid, sharded=self._sharded)], args

    async def log_seats(self, account_id: str, version: int, seats: Seats, at: datetime,
                        previous: tuple[int, Seats] | None = None) -> None:
        """Log the account's billable seats as of `at` (after a roster or limit change), to
        the account hash's `s` (`log_seats.lua`): what changed since `previous` (the version
        the commit replaced and its seats), or the whole roster when there is none.

        The first change of a billing period also needs the seats at the period's start: the
        script says so, and the call is made again with them (a roster is sent once per
        period, not with each change)."""
        at_ms = to_ms(at) or 0
        start = month_start(at.astimezone(UTC))
        period = [to_ms(start) or 0, to_ms(months_before(start, SEAT_LOG_MONTHS - 1)) or 0]
        call_keys = [keys.account(account_id), keys.seat_changes(account_id),
                     keys.seat_log(account_id)]
        script = self._scripts["log_seats"]
        if previous is None:
            await script(keys=call_keys, args=[encode_seat_change(version, at_ms, seats),
                                               SEAT_CHANGES_BYTES, "", *period, ""])
            return
        entry = encode_seat_delta(version, at_ms, previous[1], seats)
        args = [entry, SEAT_CHANGES_BYTES, "d", *period]
        if int(await script(keys=call_keys, args=[*args, ""])) == -1:
            snapshot = encode_seat_snapshot(previous[0], period[0], previous[1])
            await script(keys=call_keys, args=[*args, snapshot])

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
        pipe = self._redis.pipeline(transaction=False)
        pipe.hgetall(keys.usage(account_id, month))
        pipe.lrange(keys.seat_changes(account_id), 0, -1)
        pipe.hget(keys.account(account_id), "s")
        pipe.smembers(keys.active_users(account_id, month))
        pipe.zrangebyscore(keys.seat_log(account_id), "-inf", end_ms, withscores=True)
        pipe.hgetall(keys.peak_seats(account_id, month))
        for day in days:
            pipe.scard(keys.logins(account_id, day))
        fields, changes, newest, active, log, peaks, *counts = await pipe.execute()
        got = split_month(month, {_text(k): _text(v) for k, v in fields.items()})
        for day, n in zip(days, counts, strict=True):
            if n:  # legacy per-day sets and the month hash hold different sessions
                got.logins[day] = got.logins.get(day, 0) + int(n)
        for k, v in peaks.items():
            got.peaks[_text(k)] = max(got.peaks.get(_text(k), 0), int(v))
        pairs = [tuple(_text(m).split(SEP, 1)) for m in active]
        got.active.update((p[0], p[1]) for p in pairs if len(p) == 2)
        return MonthData(
            usage=got.usage,
            logins=dict(sorted(got.logins.items())),
            peak_seats=got.peaks,
            active=sorted(got.active),
            seat_entries=(log, [*changes, *hash_entries(newest)]),
            until_ms=end_ms,
        )
