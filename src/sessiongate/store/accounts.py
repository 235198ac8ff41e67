"""Account records in Redis: read one, commit a new version (compare-and-set, one Lua call).

Everything an account keeps lives in its hash (`keys.account`, fields in `record.py`); the
keys of the former layout are still read, and moved into the hash by the next commit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sessiongate.domain.errors import Conflict
from sessiongate.domain.model import Account
from sessiongate.domain.records import quick_init
from sessiongate.store import keys
from sessiongate.store.codec import decode_account, encode_account, kept_ms
from sessiongate.store.jsontext import dumps
from sessiongate.store.record import (
    EVENTS_BYTES,
    HISTORY_BYTES,
    SEAT_CHANGES_BYTES,
    VERSION_PREFIX,
    applied_in,
    decode_history,
    encode_history,
    entries,
    escape,
    in_compact_ledger,
)
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport, raise_first

# Applied event ids are remembered at least this long (a billing period and then some).
IDEMPOTENCY_RETENTION_MS = 62 * 24 * 3600 * 1000

# Sentinel for `next_evaluation`: remove the account from the due index.
UNSCHEDULE = "-"


@quick_init
@dataclass(frozen=True, slots=True)
class CommitResult:
    status: str  # "ok" | "conflict" | "duplicate"
    version: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@quick_init
@dataclass(frozen=True, slots=True)
class Change:
    """What a read-modify-write wants committed (see `AccountStore.update`)."""

    account: Account
    ledger_json: str = ""
    event_id: str = ""
    next_evaluation: datetime | str | None = None
    history_entry: dict[str, Any] | None = None
    notifications: Sequence[dict[str, Any]] = field(default_factory=tuple)


# mutate(current account or None, current ledger JSON or None) -> Change, or None for no change.
Mutator = Callable[[Account | None, str | None], Awaitable[Change | None] | Change | None]

MAX_CAS_ATTEMPTS = 50


def _commit_call(change: Change, expected_version: int, now: datetime
                 ) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of `commit_account.lua` for `change` (see its header)."""
    nxt = change.next_evaluation
    next_eval_arg = str(kept_ms(nxt)) if isinstance(nxt, datetime) else nxt or ""
    aid = change.account.account_id
    entry = change.history_entry
    event_id = change.event_id
    args = [expected_version, encode_account(change.account), change.ledger_json,
            event_id, kept_ms(now), next_eval_arg, encode_history(entry) if entry else "",
            keys.INVALIDATION_CHANNEL, aid, IDEMPOTENCY_RETENTION_MS,
            escape(event_id) if event_id else "", HISTORY_BYTES, EVENTS_BYTES,
            SEAT_CHANGES_BYTES]
    if change.notifications:
        args.extend([dumps(n) for n in change.notifications])
    return keys.commit_keys(aid), args


def _result(res: Any) -> CommitResult:
    return CommitResult(_text(res[0]), int(res[1]))


# A read: the account's data, version and ledger from its hash, and the former ledger key
# (what an account not yet moved into the hash still has; absent once it is).
_FIELDS = ["data", "v", "l"]


def _read_commands(account_id: str) -> list[tuple[Any, ...]]:
    return [("HMGET", keys.account(account_id), *_FIELDS), ("GET", keys.ledger(account_id))]


def _decode_read(fields: list[Any], former_ledger: Any) -> tuple[Account | None, str | None]:
    data, version, ledger = fields
    account = None if data is None else decode_account(data, int(version or 0))
    raw = ledger if ledger is not None else former_ledger
    return account, None if raw is None else _text(raw)


_PREFIX_BYTES = VERSION_PREFIX.encode()


def _prefixed(version: Any) -> bool:
    """Whether a `v` as read is in this layout's form (`record.VERSION_PREFIX`)."""
    if isinstance(version, bytes):
        return version.startswith(_PREFIX_BYTES)
    return isinstance(version, str) and version.startswith(VERSION_PREFIX)


class AccountStore:
    def __init__(self, redis: Transport, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts

    async def get(self, account_id: str) -> Account | None:
        data, version = await self._redis.call("HMGET", keys.account(account_id), "data", "v")
        if data is None:
            return None
        return decode_account(data, int(version or 0))

    async def get_ledger_json(self, account_id: str) -> str | None:
        """The ledger's text (`ledger_codec`), whichever layout holds it."""
        return (await self.read(account_id))[1]

    async def commit(
        self,
        account: Account,
        *,
        expected_version: int,
        now: datetime,
        ledger_json: str = "",
        event_id: str = "",
        next_evaluation: datetime | str | None = None,
        history_entry: dict[str, Any] | None = None,
        notifications: Sequence[dict[str, Any]] = (),
    ) -> CommitResult:
        """Write `account` as the version after `expected_version`, atomically with the rest."""
        change = Change(account, ledger_json, event_id, next_evaluation, history_entry,
                        notifications)
        res = await self._scripts["commit_account"](*_commit_call(change, expected_version,
                                                                  now))
        return _result(res)

    async def commit_many(self, changes: Sequence[tuple[Change, int]], now: datetime
                          ) -> list[CommitResult | Exception]:
        """`commit` of each (change, expected version), in one round trip; each commit is
        atomic on its own, and a failed one is returned as its exception."""
        calls = [_commit_call(c, v, now) for c, v in changes]
        return [r if isinstance(r, Exception) else _result(r)
                for r in await self._scripts.run_many("commit_account", calls)]

    async def history(self, account_id: str, limit: int = 0) -> list[dict[str, Any]]:
        """Every transition, oldest first (the last `limit` if > 0): the former list, then
        the archive of entries the hash pushed out, then the hash's newest ones."""
        former, archived, newest = raise_first(await self._redis.many([
            ("LRANGE", keys.history(account_id), 0, -1),
            ("LRANGE", keys.history_archive(account_id), 0, -1),
            ("HGET", keys.account(account_id), "h")]))
        raw = [*former, *archived, *entries(newest)]
        return [decode_history(r) for r in (raw[-limit:] if limit > 0 else raw)]

    async def was_applied(self, account_id: str, event_id: str) -> bool:
        """Whether the event id is recorded as applied: in the ledger, the hash's `e`, or
        the applied-events zset."""
        (events, ledger), score = raise_first(await self._redis.many([
            ("HMGET", keys.account(account_id), "e", "l"),
            ("ZSCORE", keys.applied_events(account_id), event_id)]))
        return (score is not None or applied_in(events, event_id)
                or in_compact_ledger(ledger, event_id))

    async def read(self, account_id: str) -> tuple[Account | None, str | None]:
        """The account and its ledger text, in one round trip."""
        fields, former_ledger = raise_first(await self._redis.many(_read_commands(account_id)))
        return _decode_read(fields, former_ledger)

    async def read_many(self, account_ids: Sequence[str]
                        ) -> list[tuple[Account | None, str | None]]:
        """`read` of each account, in one round trip (two if any is in the former layout):
        the hashes first, HMGET each; the former ledger key only of the accounts whose `v`
        lacks the prefix (absent, or in the former layout): one with it was moved in, its
        former keys deleted, by the commit that gave it the prefix. The sweep reads one
        reply per account, not two."""
        if not account_ids:
            return []
        replies = raise_first(await self._redis.many(
            [("HMGET", keys.account(aid), *_FIELDS) for aid in account_ids]))
        former = [i for i, (_, v, _) in enumerate(replies) if not _prefixed(v)]
        ledgers: dict[int, Any] = {}
        if former:
            got = raise_first(await self._redis.many(
                [("GET", keys.ledger(account_ids[i])) for i in former]))
            ledgers = dict(zip(former, got, strict=True))
        return [_decode_read(f, ledgers.get(i)) for i, f in enumerate(replies)]

    async def update(
        self, account_id: str, mutate: Mutator, now: Callable[[], datetime]
    ) -> tuple[CommitResult, Change | None]:
        """Read, mutate, compare-and-set; retried while another writer wins the race.

        `mutate` must be a pure function of what it is given: it may run more than once.
        """
        for _ in range(MAX_CAS_ATTEMPTS):
            account, ledger = await self.read(account_id)
            result = mutate(account, ledger)
            change = await result if isinstance(result, Awaitable) else result
            if change is None:
                version = 0 if account is None else account.version
                return CommitResult("unchanged", version), None
            expected = 0 if account is None else account.version
            res = _result(await self._scripts["commit_account"](
                *_commit_call(change, expected, now())))
            if res.status != "conflict":
                return res, change
        raise Conflict(f"account {account_id!r}: too many concurrent writers")
