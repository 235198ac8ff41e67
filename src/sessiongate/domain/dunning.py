"""Dunning: the account state derived from the ledger by the policy at a time. Pure.

`evaluate` is the rule: the most severe stage whose condition holds wins; nothing holds (the
balance is at or under the tolerance) -> ACTIVE. `reconsider` applies it to an account: the
new derived fields, the history entry of a transition, and the notifications (each
transition, and each reminder). Reminders are numbered by time since the account first
became overdue (`ordinal`), and the last one sent is stored with the ledger, so re-running
an evaluation (a replay, a second replica, a retried compare-and-set) never reminds twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sessiongate.domain.clock import later
from sessiongate.domain.ledger import Ledger, Snapshot
from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.money import format_money
from sessiongate.domain.notifications import DunningNotice, NotificationKind
from sessiongate.domain.policy import REMINDER_STATES, DunningPolicy
from sessiongate.domain.records import HistoryEntry

ACTIVE = AccountState.ACTIVE
SUSPENDED = AccountState.SUSPENDED


@dataclass(slots=True, unsafe_hash=True)
class Evaluation:
    """What `evaluate` derives.
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    state: AccountState
    balance_minor: int
    oldest_due_at: datetime | None
    suspends_at: datetime | None  # when SUSPENDED holds if nothing is paid (may be past)
    next_evaluation_at: datetime | None  # the next time the outcome can change by time alone
    reminder: tuple[datetime, int] | None  # (due date, ordinal) of the current reminder slot
    reason: str


def evaluate(snapshot: Snapshot, policy: DunningPolicy, now: datetime, *,
             exempt: bool = False) -> Evaluation:
    balance = snapshot.balance_minor
    inv = snapshot.oldest_open
    if exempt:
        return Evaluation(ACTIVE, balance, snapshot.oldest_due_at, None, None, None,
                          "exempt account")
    if inv is None or balance <= policy.tolerance_minor:
        why = "settled" if balance == 0 else "balance within the settlement tolerance"
        return Evaluation(ACTIVE, balance, snapshot.oldest_due_at, None, None, None, why)
    due = inv.due_at
    # The stages that hold, in order of severity (one pass: the sweep evaluates every
    # account it meets): the last one past wins, the future ones are the next times.
    state = ACTIVE
    future: list[datetime] = []
    suspends_at = None
    anchor = None  # the first reminder stage's start
    for s in policy.stages:
        if balance < s.min_balance_minor:
            continue
        at = later(due, s.after)
        if now >= at:
            state = s.state
        else:
            future.append(at)
        if s.state in REMINDER_STATES:
            anchor = at if anchor is None else min(anchor, at)
        elif suspends_at is None and s.state is SUSPENDED:
            suspends_at = at
    reminder = None
    if state in REMINDER_STATES and anchor is not None:
        ordinal = (now - anchor) // policy.reminder_interval + 1
        reminder = (due, ordinal)
        future.append(later(anchor, ordinal * policy.reminder_interval))
    overdue = now - due
    if overdue >= timedelta(0):
        why = f"invoice {inv.invoice_id} is {_span(overdue)} overdue"
    else:
        why = f"invoice {inv.invoice_id} is due in {_span(-overdue)}"
    why += f"; {format_money(balance, snapshot.currency or 'USD')} owed"
    return Evaluation(state, balance, due, suspends_at, min(future, default=None), reminder, why)


def _span(d: timedelta) -> str:
    if d >= timedelta(days=1):
        n = d.days
        return f"{n} day" + ("s" if n != 1 else "")
    secs = int(d.total_seconds())
    if secs >= 3600:
        return f"{secs // 3600} h"
    return f"{secs} s"


@dataclass(slots=True, unsafe_hash=True)
class Outcome:
    """What `reconsider` derives.
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    account: Account
    ledger: Ledger
    history_entry: HistoryEntry | None
    notifications: tuple[DunningNotice, ...]
    next_evaluation_at: datetime | None
    evaluation: Evaluation


def reconsider(account: Account, ledger: Ledger, policy: DunningPolicy, now: datetime, *,
               cause: str = "", actor: str = "scheduler", event_id: str = "") -> Outcome:
    """Re-derive the account from its ledger; `account.version + 1` is the version it commits as."""
    ev = evaluate(ledger.snapshot(), policy, now, exempt=account.exempt)
    version = account.version + 1
    prev = account.derived_state
    override = account.override
    entry: HistoryEntry | None = None
    if override is not None and not override.active(now):
        override = None
        entry = HistoryEntry(now, account.override.state if account.override else prev,
                             ev.state, "override expired", actor, event_id)
    notes: list[DunningNotice] = []
    since = account.state_since
    if ev.state is not prev:
        since = now
        why = f"{cause}: {ev.reason}" if cause else ev.reason
        entry = HistoryEntry(now, prev, ev.state, why, actor, event_id)
        if not account.exempt:
            notes.append(_note(account, version, NotificationKind.TRANSITION, ev, prev, now,
                               ledger.currency))
    mark = ledger.last_reminder
    if ev.reminder is not None:
        due, ordinal = ev.reminder
        fresh = mark is None or mark[0] != due or mark[1] < ordinal
        if ev.state is prev and fresh:
            notes.append(_note(account, version, NotificationKind.REMINDER, ev, prev, now,
                               ledger.currency, ordinal=ordinal))
        if fresh:
            mark = ev.reminder
    nxt = ev.next_evaluation_at
    if override is not None and override.expires_at is not None:
        nxt = override.expires_at if nxt is None else min(nxt, override.expires_at)
    new = account.with_derived(ev.state, since, override, ev.balance_minor, ev.oldest_due_at,
                               ev.suspends_at, nxt)
    return Outcome(new, ledger.with_reminder(mark), entry, tuple(notes), nxt, ev)


def _note(account: Account, version: int, kind: NotificationKind, ev: Evaluation,
          prev: AccountState, at: datetime, currency: str, ordinal: int = 0) -> DunningNotice:
    """One outbox notification (schema: docs/architecture.md, "Outbox notification schema")."""
    return DunningNotice(
        f"{account.account_id}:{version}:{kind.value}", kind, account.account_id, ev.state,
        prev, ev.balance_minor, currency or account.currency, ev.suspends_at, ev.reason, at,
        tuple(account.admin_emails), ordinal)


def preview(snapshot: Snapshot, policy: DunningPolicy, now: datetime, *,
            exempt: bool = False) -> list[tuple[AccountState, datetime]]:
    """The timeline if nothing is paid: each state with the moment it begins (the current
    state first, dated when it began if the policy says so, else now)."""
    ev = evaluate(snapshot, policy, now, exempt=exempt)
    if ev.state is ACTIVE and (ev.oldest_due_at is None or ev.next_evaluation_at is None):
        return [(ACTIVE, now)]
    due = ev.oldest_due_at
    assert due is not None
    starts = {s.state: later(due, s.after) for s in policy.stages
              if snapshot.balance_minor >= s.min_balance_minor}
    timeline = [(ev.state, starts.get(ev.state, now))]
    for t in sorted(set(starts.values())):
        if t <= now:
            continue
        state = evaluate(snapshot, policy, t, exempt=exempt).state
        if state is not timeline[-1][0]:
            timeline.append((state, t))
    return timeline
