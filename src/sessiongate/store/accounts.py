"""Account records in Redis: read one, commit a new version (compare-and-set, one Lua call).

Everything an account keeps lives in its hash (`keys.account`, fields in `record.py`), but
what its growing fields push out beyond their byte budgets (`commit_account.lua`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sessiongate.domain.commits import Change, CommitResult, Mutator, StoredLedger
from sessiongate.domain.errors import Conflict
from sessiongate.domain.ledger import Ledger
from sessiongate.domain.model import Account
from sessiongate.domain.notifications import Notice, encode
from sessiongate.domain.records import CommitStatus, HistoryEntry
from sessiongate.store import keys
from sessiongate.store.codec import decode_account, encode_account, to_ms
from sessiongate.store.ledger_codec import decode_ledger, encode_ledger, reencode_ledger
from sessiongate.store.record import (
    EVENTS_BYTES,
    HISTORY_BYTES,
    applied_in,
    decode_history,
    encode_entry,
    entries,
    escape,
    in_compact_ledger,
)
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport, raise_first

# Applied event ids are remembered at least this long (a billing period and then some).
IDEMPOTENCY_RETENTION_MS = 62 * 24 * 3600 * 1000


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


MAX_CAS_ATTEMPTS = 50


def _commit_call(change: Change, expected_version: int, now_ms: int
                 ) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of `commit_account.lua` for `change` (see its header); `now_ms` is
    `to_ms` of the commit's time (a batch's commits share it: one conversion, ~4k
    instructions, per batch)."""
    nxt = change.next_evaluation
    next_eval_arg = str(to_ms(nxt)) if isinstance(nxt, datetime) else nxt or ""
    aid = change.account.account_id
    entry = change.history_entry
    event_id = change.event_id
    ledger, read = change.ledger, change.ledger_read
    ledger_text = ("" if ledger is None else encode_ledger(ledger) if read is None
                   else reencode_ledger(ledger, *read))
    args = [expected_version, encode_account(change.account), ledger_text,
            event_id, now_ms, next_eval_arg, encode_entry(entry) if entry else "",
            keys.INVALIDATION_CHANNEL, aid, IDEMPOTENCY_RETENTION_MS,
            escape(event_id) if event_id else "", HISTORY_BYTES, EVENTS_BYTES]
    if change.notifications:
        args.extend([encode(n) for n in change.notifications])
    return keys.commit_keys(aid), args


# The script's statuses by their text: a dict's lookup, not `CommitStatus(text)` (the enum's
# Python-level `__call__`, ~3k instructions; one per commit of the sweep).
_STATUSES = {s.value: s for s in CommitStatus}


def _result(res: Any) -> CommitResult:
    text = _text(res[0])
    return CommitResult(_STATUSES.get(text) or CommitStatus(text), int(res[1]))


# A read: the account's data, version and ledger, from its hash.
_FIELDS = ["data", "v", "l"]


def _decode_read(fields: list[Any]) -> tuple[Account | None, StoredLedger]:
    data, version, ledger = fields
    account = None if data is None else decode_account(data, int(version or 0))
    return account, None if ledger is None else _text(ledger)


class AccountStore:
    """Accounts in Redis: `ports.Accounts` and `ports.AccountCommits` (the ledger's stored
    form is its compact text, store/ledger_codec.py)."""

    def __init__(self, redis: Transport, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts

    async def get(self, account_id: str) -> Account | None:
        data, version = await self._redis.call("HMGET", keys.account(account_id), "data", "v")
        if data is None:
            return None
        return decode_account(data, int(version or 0))

    async def commit(
        self,
        account: Account,
        *,
        expected_version: int,
        now: datetime,
        ledger: Ledger | None = None,
        event_id: str = "",
        next_evaluation: datetime | str | None = None,
        history_entry: HistoryEntry | None = None,
        notifications: Sequence[Notice | Mapping[str, Any]] = (),
    ) -> CommitResult:
        """Write `account` as the version after `expected_version`, atomically with the rest."""
        change = Change(account, ledger=ledger, event_id=event_id,
                        next_evaluation=next_evaluation, history_entry=history_entry,
                        notifications=notifications)
        res = await self._scripts["commit_account"](*_commit_call(change, expected_version,
                                                                  to_ms(now)))
        return _result(res)

    async def commit_many(self, changes: Sequence[tuple[Change, int]], now: datetime
                          ) -> list[CommitResult | Exception]:
        """`commit` of each (change, expected version), in one round trip; each commit is
        atomic on its own, and a failed one is returned as its exception."""
        now_ms = to_ms(now)
        calls = [_commit_call(c, v, now_ms) for c, v in changes]
        return [r if isinstance(r, Exception) else _result(r)
                for r in await self._scripts.run_many("commit_account", calls)]

    async def history(self, account_id: str, limit: int = 0) -> list[dict[str, Any]]:
        """Every transition, oldest first (the last `limit` if > 0): the archive of entries
        the hash pushed out, then the hash's newest ones."""
        archived, newest = raise_first(await self._redis.many([
            ("LRANGE", keys.history_archive(account_id), 0, -1),
            ("HGET", keys.account(account_id), "h")]))
        raw = [*archived, *entries(newest)]
        return [decode_history(r) for r in (raw[-limit:] if limit > 0 else raw)]

    async def was_applied(self, account_id: str, event_id: str) -> bool:
        """Whether the event id is recorded as applied: in the ledger, the hash's `e`, or
        the applied-events zset."""
        (events, ledger), score = raise_first(await self._redis.many([
            ("HMGET", keys.account(account_id), "e", "l"),
            ("ZSCORE", keys.applied_events(account_id), event_id)]))
        return (score is not None or applied_in(events, event_id)
                or in_compact_ledger(ledger, event_id))

    async def read(self, account_id: str) -> tuple[Account | None, StoredLedger]:
        """The account and its ledger text, in one round trip."""
        return _decode_read(await self._redis.call("HMGET", keys.account(account_id), *_FIELDS))

    async def read_many(self, account_ids: Sequence[str]
                        ) -> list[tuple[Account | None, StoredLedger]]:
        """`read` of each account, all in one round trip."""
        replies = raise_first(await self._redis.many(
            [("HMGET", keys.account(aid), *_FIELDS) for aid in account_ids]))
        return [_decode_read(f) for f in replies]

    # The ledger `read` returned as text, decoded: the codec itself (no call in between; the
    # sweep decodes one a due account).
    ledger_of = staticmethod(decode_ledger)

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
                return CommitResult(CommitStatus.UNCHANGED, version), None
            expected = 0 if account is None else account.version
            res = _result(await self._scripts["commit_account"](
                *_commit_call(change, expected, to_ms(now()))))
            if res.status is not CommitStatus.CONFLICT:
                return res, change
        raise Conflict(f"account {account_id!r}: too many concurrent writers")
