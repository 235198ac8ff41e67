"""Usage events (idempotent append to the billing stream), seat log, and what summaries read."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from redis.exceptions import RedisError, ResponseError

from sessiongate.domain.errors import FailedPrecondition, OutOfRange, SessionGateError
from sessiongate.domain.periods import month_start, months_before
from sessiongate.domain.proration import SeatChange, Seats
from sessiongate.domain.usage import ConflictingDuplicates, Unrecorded, UsageRecord
from sessiongate.store import keys
from sessiongate.store.accounts import IDEMPOTENCY_RETENTION_MS
from sessiongate.store.activity import (
    decode_seat_entry,
    encode_seat_change,
    encode_seat_delta,
    encode_seat_snapshot,
    split_month,
)
from sessiongate.store.codec import to_ms
from sessiongate.store.plans import MAX_COUNTER
from sessiongate.store.record import SEAT_CHANGES_BYTES, US
from sessiongate.store.record import entries as hash_entries
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport, pairs, raise_first

log = structlog.get_logger(__name__)

# Billing periods (months) whose seats the log keeps: the current one and those before it.
# A summary of an older month is refused (OUT_OF_RANGE): its seats may be trimmed.
SEAT_LOG_MONTHS = 25


@dataclass(frozen=True, slots=True)
class MonthData:
    """Raw records of one account and month, as the summary and report need them. The seat
    log stays as read (`seat_entries`) until `seat_changes` decodes it: a large roster's log
    is decoded where the summary is computed (`domain/usage_summary.py`), off the event loop."""

    usage: dict[str, int]  # hash fields of keys.usage
    logins: dict[str, int]  # day -> logins
    peak_seats: dict[str, int]  # day -> most seats held at once (seat-limited accounts)
    active: list[tuple[str, str]]  # (day, user)
    seat_entries: list[str | bytes] = field(default_factory=list)  # the seat-change entries
    until_ms: int | None = None  # entries after it are not read

    def seat_changes(self) -> list[SeatChange]:
        """The seat log in commit order, times in seconds (`_seat_changes`)."""
        return _seat_changes(self.seat_entries, self.until_ms)

    @property
    def seat_log(self) -> list[tuple[int, Seats]]:
        """(Unix seconds, billable seats from then on) of each entry: every roster spelled
        out, for reading; the summary works on `seat_changes`."""
        return _whole(self.seat_changes())


def _text(v: str | bytes) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _seat_changes(changes: Sequence[str | bytes] = (),
                  until_ms: int | None = None) -> list[SeatChange]:
    """In commit order (account version; a period's snapshot after the entries of its
    version), times in seconds; a time earlier than its predecessor's is raised to it.

    Each entry is logged after its commit with the time its request began, so two racing
    upserts may log times out of commit order; the version says which roster won (a delta is
    idempotent, so a snapshot that already holds it reads the same). `changes` are the
    seat-change entries (`activity.py`).
    """
    entries = [decode_seat_entry(c) for c in changes]
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


def _seat_log(changes: Sequence[str | bytes] = (),
              until_ms: int | None = None) -> list[tuple[int, Seats]]:
    """`_seat_changes` with every roster spelled out."""
    return _whole(_seat_changes(changes, until_ms))


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


def _refusal(exc: Exception) -> SessionGateError | None:
    """The domain error of a call that `record_usage.lua` refused (its error reply leads with
    the status: it wrote nothing, and a retry would be refused again); None for a failure of
    Redis itself. The reason is logged; the answer names no key."""
    if not isinstance(exc, ResponseError):
        return None
    status, _, detail = str(exc).partition(" ")
    if status == "OUT_OF_RANGE":
        return OutOfRange("quantity", f"the usage total of feature {detail!r} would pass"
                          f" {MAX_COUNTER}; nothing recorded")
    if status == "FAILED_PRECONDITION":
        log.error("usage not recorded: its keys are unwritable", reason=detail)
        return FailedPrecondition("usage records of the account are unwritable (see the"
                                  " server log); nothing recorded")
    return None


# Events per `record_usage.lua` call: a call blocks Redis while it runs (~10 us an event),
# so a large batch is cut into calls that keep other clients' commands waiting ~2 ms at most;
# a bulk stream's calls also stop at `CALL_BYTES` of events (attributes make an event up to
# ~12 KB: 200 of them would block Redis ~20 ms).
EVENTS_PER_CALL = 200
CALL_BYTES = 128 * 1024


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
    retention_ms = IDEMPOTENCY_RETENTION_MS  # event ids remembered (`ports.UsageEvents`)

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
        stamps = _stamps(events)
        for i, e in enumerate(events):  # "YYYY-MM" is month_name, "YYYY-MM-DD" day_name
            groups.setdefault((e.account_id, stamps[i][:7]), []).append(i)
        calls: list[tuple[list[str], list[Any]]] = []
        parts: list[list[int]] = []
        for (aid, month), positions in groups.items():
            for start in range(0, len(positions), EVENTS_PER_CALL):
                part = positions[start:start + EVENTS_PER_CALL]
                calls.append(self._call(aid, month, [events[i] for i in part],
                                        [stamps[i] for i in part], now))
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
            raise _refusal(failed) or failed
        if conflicts:
            raise ConflictingDuplicates(sorted(conflicts))
        return out

    async def record_in_order(self, events: Sequence[UsageRecord], now: datetime
                              ) -> list[bool]:
        """`record`, for a bulk stream: in the events' order, one script call at a time, each
        a run of consecutive events of one account and month, at most `EVENTS_PER_CALL` of
        them and `CALL_BYTES` of JSON (so a call blocks Redis ~2 ms at most, and the
        command in flight is small). What is recorded is always a prefix: the first failure
        raises `Unrecorded` with the number of events before its call. Conflicting
        duplicates are not recorded; after the others, `ConflictingDuplicates` names them."""
        stamps = _stamps(events)
        out: list[bool] = []
        conflicts: list[int] = []
        i, n = 0, len(events)
        while i < n:
            aid, month = events[i].account_id, stamps[i][:7]
            size = len(_row(events[i], stamps[i]))
            j = i + 1
            while (j < n and j - i < EVENTS_PER_CALL and events[j].account_id == aid
                   and stamps[j][:7] == month):
                size += len(_row(events[j], stamps[j]))
                if size > CALL_BYTES:
                    break
                j += 1
            call_keys, args = self._call(aid, month, events[i:j], stamps[i:j], now)
            try:
                res = await self._scripts["record_usage"](keys=call_keys, args=args)
            except (RedisError, OSError) as exc:
                raise Unrecorded(len(out), _refusal(exc) or exc) from exc
            for k, r in enumerate(res):
                out.append(int(r) == 1)
                if int(r) == 2:
                    conflicts.append(i + k)
            i = j
        if conflicts:
            raise ConflictingDuplicates(conflicts)
        return out

    def _call(self, aid: str, month: str, events: Sequence[UsageRecord], stamps: Sequence[str],
              now: datetime) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of one `record_usage.lua` call of `events` (one account and month)."""
        rows = ",".join(_row(e, stamp) for e, stamp in zip(events, stamps, strict=True))
        digests = [usage_digest(e, stamp) for e, stamp in zip(events, stamps, strict=True)]
        args = [to_ms(now), IDEMPOTENCY_RETENTION_MS, aid, now.isoformat(), f"[{rows}]",
                json.dumps(digests)]
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
        call_keys = [keys.account(account_id), keys.seat_changes(account_id)]
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
        """Everything recorded for `month` [start, end), and the seat log, in one round trip:
        the month hash, the account hash's seat changes and the list they overflow to."""
        end_ms = to_ms(end) or 0
        fields, changes, newest = raise_first(await self._redis.many([
            ("HGETALL", keys.usage(account_id, month)),
            ("LRANGE", keys.seat_changes(account_id), 0, -1),
            ("HGET", keys.account(account_id), "s")]))
        got = split_month(month, {_text(k): _text(v) for k, v in pairs(fields)})
        return MonthData(
            usage=got.usage,
            logins=dict(sorted(got.logins.items())),
            peak_seats=got.peaks,
            active=sorted(got.active),
            seat_entries=[*changes, *hash_entries(newest)],
            until_ms=end_ms,
        )
