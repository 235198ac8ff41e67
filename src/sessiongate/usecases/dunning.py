"""The dunning engine: applies payment events, scheduled evaluations and overrides to accounts.

Every change is one compare-and-set through the account-commit port
(`ports.AccountCommits.update`): read the account and its ledger, run the pure
`dunning.reconsider`, commit. The commit records the event id (idempotency), the history
entry, the next evaluation in the due index and the notifications in the outbox, atomically;
so among any number of replicas each transition and reminder happens once.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sessiongate.domain.clock import to_ms
from sessiongate.domain.commits import UNSCHEDULE, Change, CommitResult, StoredLedger
from sessiongate.domain.dunning import Outcome, preview, reconsider
from sessiongate.domain.errors import AlreadyExists, NotFound
from sessiongate.domain.ledger import Ledger
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.notifications import NotificationKind
from sessiongate.domain.payment_event import PaymentEvent
from sessiongate.domain.policy import DEFAULT_POLICY, DunningPolicy
from sessiongate.domain.records import CommitStatus, HistoryEntry
from sessiongate.ports import AccountCommits, StoredPolicies

T = TypeVar("T")

# The port's decoding of a stored ledger (`AccountCommits.ledger_of`).
LedgerOf = Callable[[StoredLedger, str], Ledger]


@dataclass(frozen=True, slots=True)
class Applied:
    duplicate: bool
    account: Account | None  # as committed (None for a duplicate: nothing was written)


def _next(out: Outcome) -> datetime | str:
    return UNSCHEDULE if out.next_evaluation_at is None else out.next_evaluation_at


def _change(out: Outcome, ledger: Ledger, *, event_id: str = "",
            history_entry: HistoryEntry | None = None, raw: StoredLedger = None) -> Change:
    """The commit of `out`; its ledger is written unless it equals `ledger`, `raw` being
    the stored form `ledger` was read from."""
    changed = out.ledger != ledger
    return Change(
        out.account,
        ledger=out.ledger if changed else None,
        ledger_read=(ledger, raw) if changed else None,
        event_id=event_id,
        next_evaluation=_next(out),
        history_entry=history_entry or out.history_entry,
        notifications=out.notifications,
    )


def _saved(res: CommitResult, change: Change | None) -> Account | None:
    if change is None or not res.ok:
        return None
    return replace(change.account, version=res.version)


def _event_change(event: PaymentEvent, account: Account | None, raw: StoredLedger,
                  policy: Callable[[Account], DunningPolicy], now: datetime,
                  ledger_of: LedgerOf) -> Change | None:
    """The commit that folds `event` into the account; None if it is already in the ledger."""
    aid = event.account_id
    if account is None:
        raise NotFound(f"account_id: no account {aid!r} (create it with UpsertAccount)")
    ledger = ledger_of(raw, aid)
    if event.event_id in ledger:
        _refuse_conflicting(ledger, event)
        return None  # a redelivery (even beyond the idempotency window): a no-op
    grown = ledger.add(event, account.currency)
    out = reconsider(account, grown, policy(account), now, actor="billing",
                     cause=f"{event.type.name} {event.event_id}", event_id=event.event_id)
    return _change(out, ledger, event_id=event.event_id, raw=raw)


def _refuse_conflicting(ledger: Ledger, event: PaymentEvent) -> None:
    if ledger.differs(event):
        raise AlreadyExists("event_id", f"{event.event_id!r} was applied with other content "
                            "(an event id names one event: use a new id)")


def _due_change(account_id: str, account: Account | None, raw: StoredLedger,
                policy: Callable[[Account], DunningPolicy], now: datetime,
                ledger_of: LedgerOf, *, quiet: bool) -> Change | None:
    """The scheduled evaluation's commit; None if the account is not (or no longer) due."""
    if account is None:
        return None
    if account.next_evaluation_at is not None and account.next_evaluation_at > now:
        return None
    ledger = ledger_of(raw, account_id)
    out = reconsider(account, ledger, policy(account), now, actor="scheduler")
    event_id = ""
    reminders = [n for n in out.notifications if n.kind is NotificationKind.REMINDER]
    if reminders and len(reminders) == len(out.notifications):
        if quiet:  # this reminder's event id is recorded as sent: send it no more
            out = replace(out, notifications=())
        else:
            due, ordinal = out.evaluation.reminder or (now, 0)
            event_id = f"reminder:{account_id}:{to_ms(due)}:{ordinal}"
    return _change(out, ledger, event_id=event_id, raw=raw)


# The place of a batch's commit until its result is in (a shared object: none per account).
_UNANSWERED = Exception("not answered")


def _rounds(keys_in_order: Sequence[str]) -> list[list[int]]:
    """Positions grouped so that each group holds each key at most once and a key's
    positions keep their order across groups (the n-th of each key is in group n)."""
    seen: dict[str, int] = {}
    rounds: list[list[int]] = []
    for i, key in enumerate(keys_in_order):
        n = seen[key] = seen.get(key, -1) + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(i)
    return rounds


class DunningEngine:
    """Applies changes one account at a time (`apply_event`, `evaluate_due`) or many
    accounts in three round trips (`apply_events`, `evaluate_many`: read all, fetch their
    policies, commit all), which is what makes the payment queue and the sweep fast.
    Built once by app.py over the stores' ports; the payment handler, the sweep and the
    servicers share it."""

    def __init__(self, accounts: AccountCommits, policies: StoredPolicies,
                 now: Callable[[], datetime]) -> None:
        self.accounts = accounts
        self.policies = policies
        self.now = now

    async def _reconsider(self, account: Account, ledger: Ledger, now: datetime, **kw: Any
                          ) -> Outcome:
        policy = await self._policy_of(account)
        return reconsider(account, ledger, policy(account), now, **kw)

    async def _policy_of(self, account: Account | None) -> Callable[[Account], DunningPolicy]:
        policy = (await self.policies.for_account(account.policy_id) if account is not None
                  else DEFAULT_POLICY)
        return lambda _account: policy

    async def _read_many(self, ids: Sequence[str]
                         ) -> tuple[list[tuple[Account | None, StoredLedger]],
                                    Callable[[Account], DunningPolicy]]:
        reads = await self.accounts.read_many(ids)
        found = await self.policies.for_accounts(a.policy_id for a, _ in reads if a)
        return reads, lambda account: found[account.policy_id]

    async def apply_event(self, event: PaymentEvent) -> Applied:
        """Fold one payment event into its account's ledger and re-evaluate. Idempotent."""
        now = self.now()

        async def mutate(account: Account | None, raw: StoredLedger) -> Change | None:
            return _event_change(event, account, raw, await self._policy_of(account), now,
                                 self.accounts.ledger_of)

        res, change = await self.accounts.update(event.account_id, mutate, self.now)
        if res.status == CommitStatus.DUPLICATE:  # committed by another writer since it was read
            _, raw = await self.accounts.read(event.account_id)
            _refuse_conflicting(self.accounts.ledger_of(raw, event.account_id), event)
        if res.status in (CommitStatus.DUPLICATE, CommitStatus.UNCHANGED):
            return Applied(True, None)
        return Applied(False, _saved(res, change))

    async def apply_events(self, events: Sequence[PaymentEvent], *, lanes: int = 2
                           ) -> list[Applied | Exception]:
        """`apply_event` of each, in order per account, in rounds of distinct accounts.

        Accounts are spread over `lanes` that run concurrently (one computes while another
        waits for Redis); all events of an account go to the same lane, in order.
        Returns each event's outcome or the exception that `apply_event` would have raised.
        A commit that lost a race to another writer is redone alone by `apply_event`.
        """
        out: list[Applied | Exception] = [Exception("not applied")] * len(events)
        by_lane: list[list[int]] = [[] for _ in range(max(1, lanes))]
        for i, e in enumerate(events):
            by_lane[zlib.crc32(e.account_id.encode()) % len(by_lane)].append(i)

        async def lane(mine: list[int]) -> None:
            for positions in _rounds([events[i].account_id for i in mine]):
                batch = [events[mine[p]] for p in positions]
                for p, result in zip(positions, await self._apply_round(batch), strict=True):
                    out[mine[p]] = result

        await asyncio.gather(*(lane(mine) for mine in by_lane if mine))
        return out

    async def _apply_round(self, events: Sequence[PaymentEvent]) -> list[Applied | Exception]:
        ledger_of = self.accounts.ledger_of

        def build(i: int, account: Account | None, raw: StoredLedger,
                  policy: Callable[[Account], DunningPolicy], now: datetime) -> Change | None:
            return _event_change(events[i], account, raw, policy, now, ledger_of)

        def done(res: CommitResult, change: Change | None) -> Applied:
            return Applied(not res.ok, _saved(res, change))

        return await self._batch([e.account_id for e in events], build, done,
                                 lambda i: self.apply_event(events[i]),
                                 redo_on=(CommitStatus.CONFLICT, CommitStatus.DUPLICATE))

    async def _batch(
        self,
        ids: Sequence[str],
        build: Callable[[int, Account | None, StoredLedger, Callable[[Account], DunningPolicy],
                         datetime], Change | None],
        done: Callable[[CommitResult, Change | None], T],
        redo: Callable[[int], Awaitable[T]],
        redo_on: tuple[CommitStatus, ...],
    ) -> list[T | Exception]:
        """Read the (distinct) accounts `ids` and their policies, `build` each change, commit
        them all; `done` turns each commit's result into the answer, `redo` (one account
        alone, with its CAS loop) answers those whose commit status is in `redo_on`. An
        error is answered in its place, never raised."""
        try:
            reads, policy = await self._read_many(ids)
        except Exception as exc:  # the round trip failed: so did every account of the batch
            return [exc] * len(ids)
        now = self.now()
        out: list[T | Exception] = []
        pending: list[tuple[int, Change, int]] = []
        for i, (account, raw) in enumerate(reads):
            try:
                change = build(i, account, raw, policy, now)
            except Exception as exc:
                out.append(exc)
                continue
            version = 0 if account is None else account.version
            if change is None:
                out.append(done(CommitResult(CommitStatus.UNCHANGED, version), None))
            else:
                out.append(_UNANSWERED)  # each pending commit is answered below
                pending.append((i, change, version))
        try:
            results: list[CommitResult | Exception] = await self.accounts.commit_many(
                [(c, v) for _, c, v in pending], self.now())
        except Exception as exc:
            results = [exc] * len(pending)
        for (i, change, _), res in zip(pending, results, strict=True):
            try:
                if isinstance(res, Exception):
                    out[i] = res
                elif res.status in redo_on:
                    out[i] = await redo(i)
                else:
                    out[i] = done(res, change)
            except Exception as exc:
                out[i] = exc
        return out

    async def evaluate_due(self, account_id: str, *, _quiet: bool = False) -> CommitResult:
        """The scheduled evaluation of an account whose next evaluation time has come.

        A replica that lost the race finds the next evaluation moved into the future and
        does nothing; a reminder's commit also carries a `reminder:` event id, deduplicated
        by the commit script like any event.
        """
        now = self.now()

        async def mutate(account: Account | None, raw: StoredLedger) -> Change | None:
            return _due_change(account_id, account, raw, await self._policy_of(account), now,
                               self.accounts.ledger_of, quiet=_quiet)

        res, _ = await self.accounts.update(account_id, mutate, self.now)
        if res.status is CommitStatus.DUPLICATE and not _quiet:
            # Still move the account's next evaluation on, or it would stay due forever.
            return await self.evaluate_due(account_id, _quiet=True)
        return res

    async def evaluate_many(self, account_ids: Sequence[str]) -> list[CommitResult | Exception]:
        """`evaluate_due` of each (distinct) account, in three round trips; an account whose
        commit lost a race or found its reminder already sent is redone alone."""
        ledger_of = self.accounts.ledger_of

        def build(i: int, account: Account | None, raw: StoredLedger,
                  policy: Callable[[Account], DunningPolicy], now: datetime) -> Change | None:
            return _due_change(account_ids[i], account, raw, policy, now, ledger_of,
                               quiet=False)

        return await self._batch(account_ids, build, lambda res, _change: res,
                                 lambda i: self.evaluate_due(account_ids[i]),
                                 redo_on=(CommitStatus.CONFLICT, CommitStatus.DUPLICATE))

    async def preview(self, account_id: str
                      ) -> tuple[list[tuple[AccountState, datetime]], int]:
        """The account's dunning timeline if nothing is paid (domain/dunning.py `preview`)
        and its balance in minor units; NotFound when there is no such account."""
        account, raw = await self.accounts.read(account_id)
        if account is None:
            raise NotFound(f"account_id: no account {account_id!r}")
        policy = await self.policies.for_account(account.policy_id)
        snapshot = self.accounts.ledger_of(raw, account_id).snapshot()
        return (preview(snapshot, policy, self.now(), exempt=account.exempt),
                snapshot.balance_minor)

    async def override(self, account_id: str, state: AccountState | None, reason: str,
                       expires_at: datetime | None, actor: str) -> Account:
        """Set (or with `state=None` clear) the admin override; history records the change."""
        now = self.now()

        async def mutate(account: Account | None, raw: StoredLedger) -> Change:
            if account is None:
                raise NotFound(f"account_id: no account {account_id!r}")
            wanted = None if state is None else StateOverride(state, reason, actor, now,
                                                              expires_at)
            before = account.state_at(now)
            ledger = self.accounts.ledger_of(raw, account_id)
            out = await self._reconsider(replace(account, override=wanted), ledger, now,
                                         actor=actor)
            after = out.account.state_at(now)
            entry = None
            if before is not after or (wanted is None and account.override is not None):
                cause = f"override: {reason}" if wanted else "override cleared"
                entry = HistoryEntry(now, before, after, cause, actor)
            return _change(out, ledger, history_entry=entry, raw=raw)

        res, change = await self.accounts.update(account_id, mutate, self.now)
        saved = _saved(res, change)
        assert saved is not None
        return saved

    async def upsert_change(self, current: Account | None, account: Account,
                            raw: StoredLedger, now: datetime,
                            history_entry: HistoryEntry | None) -> Change:
        """UpsertAccount's change, re-evaluated when what dunning depends on (the policy, the
        exemption) changed; else left as the caller built it."""
        if current is not None and (current.policy_id, current.exempt) == (
                account.policy_id, account.exempt):
            return Change(account, history_entry=history_entry)
        ledger = self.accounts.ledger_of(raw, account.account_id)
        out = await self._reconsider(account, ledger, now, actor="admin",
                                     cause="policy or exemption changed")
        return _change(out, ledger, history_entry=out.history_entry or history_entry,
                       raw=raw)
