"""Account records in Redis: read one, commit a new version (compare-and-set, one Lua call)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from sessiongate.domain.errors import Conflict
from sessiongate.domain.model import Account
from sessiongate.store import keys
from sessiongate.store.codec import decode_account, encode_account, to_ms
from sessiongate.store.scripts import Scripts

# Applied event ids are remembered at least this long (a billing period and then some).
IDEMPOTENCY_RETENTION_MS = 62 * 24 * 3600 * 1000

# Sentinel for `next_evaluation`: remove the account from the due index.
UNSCHEDULE = "-"


@dataclass(frozen=True, slots=True)
class CommitResult:
    status: str  # "ok" | "conflict" | "duplicate"
    version: int

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


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


class AccountStore:
    def __init__(self, redis: Redis, scripts: Scripts) -> None:
        self._redis = redis
        self._scripts = scripts

    async def get(self, account_id: str) -> Account | None:
        data, version = await self._redis.hmget(keys.account(account_id), ["data", "v"])
        if data is None:
            return None
        return decode_account(data, int(version or 0))

    async def get_ledger_json(self, account_id: str) -> str | None:
        raw = await self._redis.get(keys.ledger(account_id))
        return None if raw is None else _text(raw)

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
        if isinstance(next_evaluation, datetime):
            next_eval_arg = str(to_ms(next_evaluation))
        else:
            next_eval_arg = next_evaluation or ""
        aid = account.account_id
        res = await self._scripts["commit_account"](
            keys=[
                keys.account(aid),
                keys.ledger(aid),
                keys.history(aid),
                keys.applied_events(aid),
                keys.due_index_of(aid),
                keys.outbox_of(aid),
            ],
            args=[
                expected_version,
                encode_account(account),
                ledger_json,
                event_id,
                to_ms(now),
                next_eval_arg,
                json.dumps(history_entry, separators=(",", ":")) if history_entry else "",
                keys.INVALIDATION_CHANNEL,
                aid,
                IDEMPOTENCY_RETENTION_MS,
                *(json.dumps(n, separators=(",", ":")) for n in notifications),
            ],
        )
        return CommitResult(_text(res[0]), int(res[1]))

    async def history(self, account_id: str, limit: int = 0) -> list[dict[str, Any]]:
        start = -limit if limit > 0 else 0
        raw = await self._redis.lrange(keys.history(account_id), start, -1)
        return [json.loads(r) for r in raw]

    async def was_applied(self, account_id: str, event_id: str) -> bool:
        return await self._redis.zscore(keys.applied_events(account_id), event_id) is not None

    async def read(self, account_id: str) -> tuple[Account | None, str | None]:
        """The account and its ledger JSON, in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.hmget(keys.account(account_id), ["data", "v"])
        pipe.get(keys.ledger(account_id))
        (data, version), ledger = await pipe.execute()
        account = None if data is None else decode_account(data, int(version or 0))
        return account, None if ledger is None else _text(ledger)

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
            res = await self.commit(
                change.account,
                expected_version=0 if account is None else account.version,
                now=now(),
                ledger_json=change.ledger_json,
                event_id=change.event_id,
                next_evaluation=change.next_evaluation,
                history_entry=change.history_entry,
                notifications=change.notifications,
            )
            if res.status != "conflict":
                return res, change
        raise Conflict(f"account {account_id!r}: too many concurrent writers")
