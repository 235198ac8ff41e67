"""Applies payment events, scheduled evaluations and overrides to accounts.

Every change is one `AccountStore.update`: read the account and its ledger, run the pure
`dunning.reconsider`, compare-and-set. The commit records the event id (idempotency), the
history entry, the next evaluation in the due index and the notifications in the outbox,
atomically; so among any number of replicas each transition and reminder happens once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sessiongate.domain.dunning import Outcome, reconsider
from sessiongate.domain.errors import NotFound
from sessiongate.domain.ledger import Ledger
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.payment_event import PaymentEvent
from sessiongate.store.accounts import UNSCHEDULE, AccountStore, Change, CommitResult
from sessiongate.store.codec import to_ms
from sessiongate.store.ledger_codec import decode_ledger, encode_ledger
from sessiongate.store.policies import PolicyStore


@dataclass(frozen=True, slots=True)
class Applied:
    duplicate: bool
    account: Account | None  # as committed (None for a duplicate: nothing was written)


def _next(out: Outcome) -> datetime | str:
    return UNSCHEDULE if out.next_evaluation_at is None else out.next_evaluation_at


def _change(out: Outcome, ledger: Ledger, *, event_id: str = "",
            history_entry: dict[str, Any] | None = None) -> Change:
    return Change(
        out.account,
        ledger_json=encode_ledger(out.ledger) if out.ledger != ledger else "",
        event_id=event_id,
        next_evaluation=_next(out),
        history_entry=history_entry or out.history_entry,
        notifications=out.notifications,
    )


def _saved(res: CommitResult, change: Change | None) -> Account | None:
    if change is None or not res.ok:
        return None
    return replace(change.account, version=res.version)


class DunningEngine:
    def __init__(self, accounts: AccountStore, policies: PolicyStore,
                 now: Callable[[], datetime]) -> None:
        self.accounts = accounts
        self.policies = policies
        self.now = now

    async def _reconsider(self, account: Account, ledger: Ledger, now: datetime, **kw: Any
                          ) -> Outcome:
        policy = await self.policies.for_account(account.policy_id)
        return reconsider(account, ledger, policy, now, **kw)

    async def apply_event(self, event: PaymentEvent) -> Applied:
        """Fold one payment event into its account's ledger and re-evaluate. Idempotent."""
        now = self.now()
        aid = event.account_id

        async def mutate(account: Account | None, raw: str | None) -> Change | None:
            if account is None:
                raise NotFound(f"account_id: no account {aid!r} (create it with UpsertAccount)")
            ledger = decode_ledger(raw, aid)
            if event.event_id in ledger:
                return None  # applied long ago (beyond the idempotency window): still a no-op
            grown = ledger.add(event, account.currency)
            out = await self._reconsider(account, grown, now, actor="billing",
                                         cause=f"{event.type.name} {event.event_id}",
                                         event_id=event.event_id)
            change = _change(out, ledger, event_id=event.event_id)
            return replace(change, ledger_json=encode_ledger(out.ledger))

        res, change = await self.accounts.update(aid, mutate, self.now)
        if res.status in ("duplicate", "unchanged"):
            return Applied(True, None)
        return Applied(False, _saved(res, change))

    async def evaluate_due(self, account_id: str, *, _quiet: bool = False) -> CommitResult:
        """The scheduled evaluation of an account whose next evaluation time has come.

        A replica that lost the race finds the next evaluation moved into the future and
        does nothing; a reminder's commit also carries a `reminder:` event id, deduplicated
        by the commit script like any event.
        """
        now = self.now()

        async def mutate(account: Account | None, raw: str | None) -> Change | None:
            if account is None:
                return None
            if account.next_evaluation_at is not None and account.next_evaluation_at > now:
                return None
            ledger = decode_ledger(raw, account_id)
            out = await self._reconsider(account, ledger, now, actor="scheduler")
            event_id = ""
            reminders = [n for n in out.notifications if n["kind"] == "reminder"]
            if reminders and len(reminders) == len(out.notifications):
                if _quiet:  # this reminder's event id is recorded as sent: send it no more
                    out = replace(out, notifications=())
                else:
                    due, ordinal = out.evaluation.reminder or (now, 0)
                    event_id = f"reminder:{account_id}:{to_ms(due)}:{ordinal}"
            return _change(out, ledger, event_id=event_id)

        res, _ = await self.accounts.update(account_id, mutate, self.now)
        if res.status == "duplicate" and not _quiet:
            # Still move the account's next evaluation on, or it would stay due forever.
            return await self.evaluate_due(account_id, _quiet=True)
        return res

    async def override(self, account_id: str, state: AccountState | None, reason: str,
                       expires_at: datetime | None, actor: str) -> Account:
        """Set (or with `state=None` clear) the admin override; history records the change."""
        now = self.now()

        async def mutate(account: Account | None, raw: str | None) -> Change:
            if account is None:
                raise NotFound(f"account_id: no account {account_id!r}")
            wanted = None if state is None else StateOverride(state, reason, actor, now,
                                                              expires_at)
            before = account.state_at(now)
            ledger = decode_ledger(raw, account_id)
            out = await self._reconsider(replace(account, override=wanted), ledger, now,
                                         actor=actor)
            after = out.account.state_at(now)
            entry = None
            if before is not after or (wanted is None and account.override is not None):
                cause = f"override: {reason}" if wanted else "override cleared"
                entry = {"at": now.isoformat(), "from": before.value, "to": after.value,
                         "cause": cause, "actor": actor, "event_id": ""}
            return _change(out, ledger, history_entry=entry)

        res, change = await self.accounts.update(account_id, mutate, self.now)
        saved = _saved(res, change)
        assert saved is not None
        return saved

    async def upsert_change(self, current: Account | None, account: Account, raw: str | None,
                            now: datetime, history_entry: dict[str, Any] | None) -> Change:
        """UpsertAccount's change, re-evaluated when what dunning depends on (the policy, the
        exemption) changed; else left as the caller built it."""
        if current is not None and (current.policy_id, current.exempt) == (
                account.policy_id, account.exempt):
            return Change(account, history_entry=history_entry)
        ledger = decode_ledger(raw, account.account_id)
        out = await self._reconsider(account, ledger, now, actor="admin",
                                     cause="policy or exemption changed")
        return _change(out, ledger, history_entry=out.history_entry or history_entry)
