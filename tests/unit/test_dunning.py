"""The pure dunning rules: derived states, reminders once each, previews, policies."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessiongate.domain.dunning import evaluate, preview, reconsider
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.ledger import Ledger, Snapshot
from sessiongate.domain.model import Account, AccountKind, AccountState, StateOverride
from sessiongate.domain.payment_event import new_payment_event
from sessiongate.domain.policy import (
    DEFAULT_POLICY,
    REMINDER_STATES,
    DunningPolicy,
    DunningStage,
    new_policy,
)
from sessiongate.store.policies import decode_policy, encode_policy

S = AccountState
T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def invoice(amount: int = 12000, due: datetime = T0, iid: str = "inv-1") -> Ledger:
    e = new_payment_event(event_id=f"issue-{iid}", account_id="acme", type="INVOICE_ISSUED",
                          invoice_id=iid, amount_minor=amount, due_at=due)
    return Ledger().add(e, "USD")


def pay(ledger: Ledger, amount: int, eid: str = "pay-1") -> Ledger:
    e = new_payment_event(event_id=eid, account_id="acme", type="PAYMENT_SUCCEEDED",
                          amount_minor=amount)
    return ledger.add(e, "USD")


def test_default_policy_states_by_day() -> None:
    snap = invoice().snapshot()
    expect = {0: S.ACTIVE, 1: S.REMINDER, 14: S.REMINDER, 15: S.GRACE, 30: S.GRACE,
              31: S.SUSPENDED, 45: S.SUSPENDED}
    for day, state in expect.items():
        assert evaluate(snap, DEFAULT_POLICY, T0 + day * DAY).state is state, day
    ev = evaluate(snap, DEFAULT_POLICY, T0 + 15 * DAY)
    assert ev.suspends_at == T0 + 31 * DAY
    assert ev.reason.startswith("invoice inv-1 is 15 days overdue")


def run(account: Account, ledger: Ledger, until: datetime, step: timedelta = timedelta(hours=1)
        ) -> tuple[Account, Ledger, list[dict[str, object]], list[dict[str, object]]]:
    """A scheduler in miniature: re-evaluate whenever the next evaluation time comes."""
    notes: list[dict[str, object]] = []
    history: list[dict[str, object]] = []
    now = T0
    while now <= until:
        nxt = account.next_evaluation_at
        if nxt is None or nxt <= now:
            out = reconsider(account, ledger, DEFAULT_POLICY, now)
            # replaying the same evaluation (a second replica, a retry) sends nothing more
            again = reconsider(out.account, out.ledger, DEFAULT_POLICY, now)
            assert again.notifications == () and again.history_entry is None
            account, ledger = replace(out.account, version=account.version + 1), out.ledger
            notes += out.notifications
            history += [out.history_entry.to_dict()] if out.history_entry else []
        now += step
    return account, ledger, notes, history


def test_45_days_daily_reminders_grace_day_15_suspended_day_31() -> None:
    account = Account("acme", admin_emails=("billing@acme.test",))
    account, ledger, notes, history = run(account, invoice(), T0 + 45 * DAY)
    assert account.derived_state is S.SUSPENDED
    transitions = [(n["state"], n["at"]) for n in notes if n["kind"] == "transition"]
    assert transitions == [("REMINDER", (T0 + DAY).isoformat()),
                           ("GRACE", (T0 + 15 * DAY).isoformat()),
                           ("SUSPENDED", (T0 + 31 * DAY).isoformat())]
    reminders = [n for n in notes if n["kind"] == "reminder"]
    days = [(datetime.fromisoformat(str(n["at"])) - T0).days for n in reminders]
    assert days == [*range(2, 15), *range(16, 31)]  # daily; a transition day sends the notice
    assert len({n["id"] for n in notes}) == len(notes)
    assert all(n["amount_due_minor"] == 12000 and n["admin_emails"] == ["billing@acme.test"]
               for n in notes)
    assert [h["to"] for h in history] == ["REMINDER", "GRACE", "SUSPENDED"]
    # paid: ACTIVE at once, unscheduled
    out = reconsider(account, pay(ledger, 12000), DEFAULT_POLICY, T0 + 45 * DAY,
                     cause="PAYMENT_SUCCEEDED pay-1", actor="billing", event_id="pay-1")
    assert out.account.derived_state is S.ACTIVE and out.next_evaluation_at is None
    assert out.history_entry is not None and out.history_entry.event_id == "pay-1"
    assert [n["state"] for n in out.notifications] == ["ACTIVE"]


def test_durations_of_seconds() -> None:
    policy = new_policy("fast", [DunningStage(S.REMINDER, timedelta(seconds=1)),
                                 DunningStage(S.SUSPENDED, timedelta(seconds=5))],
                        timedelta(seconds=2))
    snap = invoice().snapshot()
    assert evaluate(snap, policy, T0 + timedelta(seconds=4)).state is S.REMINDER
    assert evaluate(snap, policy, T0 + timedelta(seconds=5)).state is S.SUSPENDED
    ev = evaluate(snap, policy, T0 + timedelta(seconds=1))
    assert ev.next_evaluation_at == T0 + timedelta(seconds=3)  # the next reminder slot


def test_tolerance_and_minimum_balance() -> None:
    policy = new_policy("p", [DunningStage(S.REMINDER, DAY),
                              DunningStage(S.SUSPENDED, 2 * DAY, min_balance_minor=10000)],
                        tolerance_minor=100)
    later = T0 + 5 * DAY
    assert evaluate(pay(invoice(), 11950).snapshot(), policy, later).state is S.ACTIVE
    assert evaluate(pay(invoice(), 5000).snapshot(), policy, later).state is S.REMINDER
    assert evaluate(invoice().snapshot(), policy, later).state is S.SUSPENDED


def test_exempt_stays_active_without_notifications() -> None:
    account = Account("gov", exempt=True)
    account, _, notes, history = run(account, invoice(), T0 + 40 * DAY)
    assert account.derived_state is S.ACTIVE
    assert notes == [] and history == []
    assert account.next_evaluation_at is None


def test_expired_override_is_cleared_with_history() -> None:
    from sessiongate.domain.model import StateOverride

    o = StateOverride(S.SUSPENDED, "fraud check", "ops", T0, T0 + DAY)
    account = Account("acme", override=o)
    out = reconsider(account, Ledger(), DEFAULT_POLICY, T0)
    assert out.next_evaluation_at == T0 + DAY and out.account.override == o
    out = reconsider(account, Ledger(), DEFAULT_POLICY, T0 + DAY)
    assert out.account.override is None
    assert out.history_entry is not None
    assert (out.history_entry.from_state, out.history_entry.to_state) == (S.SUSPENDED, S.ACTIVE)


def test_preview_timeline() -> None:
    snap = invoice(due=T0 + 10 * DAY).snapshot()
    assert preview(snap, DEFAULT_POLICY, T0) == [
        (S.ACTIVE, T0), (S.REMINDER, T0 + 11 * DAY), (S.GRACE, T0 + 25 * DAY),
        (S.SUSPENDED, T0 + 41 * DAY)]
    assert preview(snap, DEFAULT_POLICY, T0 + 20 * DAY) == [
        (S.REMINDER, T0 + 11 * DAY), (S.GRACE, T0 + 25 * DAY), (S.SUSPENDED, T0 + 41 * DAY)]
    assert preview(Ledger().snapshot(), DEFAULT_POLICY, T0) == [(S.ACTIVE, T0)]
    assert preview(snap, DEFAULT_POLICY, T0, exempt=True) == [(S.ACTIVE, T0)]


@pytest.mark.parametrize(("stages", "kw", "field"), [
    ([DunningStage(S.ACTIVE, DAY)], {}, "stages[0].state"),
    ([DunningStage(S.GRACE, DAY), DunningStage(S.GRACE, 2 * DAY)], {}, "stages[1].state"),
    ([DunningStage(S.GRACE, -DAY)], {}, "stages[0].after"),
    ([DunningStage(S.GRACE, DAY, -1)], {}, "stages[0].min_balance_minor"),
    ([], {"reminder_interval": timedelta(milliseconds=10)}, "reminder_interval"),
    ([], {"tolerance_minor": -5}, "tolerance_minor"),
])
def test_policy_validation(stages: list[DunningStage], kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        new_policy("p", stages, **kw)  # type: ignore[arg-type]
    assert err.value.field == field


def test_policy_codec_round_trip() -> None:
    p = new_policy("p", [DunningStage(S.SUSPENDED, timedelta(seconds=90), 500),
                         DunningStage(S.REMINDER, timedelta(seconds=1))], timedelta(hours=6), 7)
    assert [s.state for s in p.stages] == [S.REMINDER, S.SUSPENDED]
    assert decode_policy(encode_policy(p)) == p


# --- the sweep's shortcuts change nothing ----------------------------------------------------

def _former_evaluate(snapshot: Snapshot, policy: DunningPolicy, now: datetime
                     ) -> tuple[object, ...]:
    """evaluate before its one-pass loop (commit fd742a4), verbatim but the reason: what it
    derived, as a tuple."""
    balance = snapshot.balance_minor
    inv = snapshot.oldest_open
    if inv is None or balance <= policy.tolerance_minor:
        return (S.ACTIVE, balance, snapshot.oldest_due_at, None, None, None)
    due = inv.due_at
    holding = [s for s in policy.stages if balance >= s.min_balance_minor]
    state = S.ACTIVE
    for s in holding:
        if now >= due + s.after:
            state = s.state
    future = [due + s.after for s in holding if due + s.after > now]
    suspend = next((s for s in holding if s.state is S.SUSPENDED), None)
    suspends_at = None if suspend is None else due + suspend.after
    reminder = None
    if state in REMINDER_STATES:
        anchor = min(due + s.after for s in holding if s.state in REMINDER_STATES)
        ordinal = (now - anchor) // policy.reminder_interval + 1
        reminder = (due, ordinal)
        future.append(anchor + ordinal * policy.reminder_interval)
    return (state, balance, due, suspends_at, min(future, default=None), reminder)


stage_lists = st.lists(st.tuples(st.sampled_from([S.REMINDER, S.GRACE, S.SUSPENDED]),
                                 st.integers(0, 40 * 86400), st.integers(0, 20000)),
                       max_size=3, unique_by=lambda t: t[0])


@given(stage_lists, st.integers(1, 3 * 86400), st.integers(0, 500),
       st.lists(st.tuples(st.integers(1, 20000), st.integers(-40, 40)), max_size=3),
       st.integers(0, 30000), st.integers(-5 * 86400, 60 * 86400))
def test_evaluate_derives_what_it_derived_before(
        stages: list[tuple[AccountState, int, int]], interval: int, tolerance: int,
        invoices: list[tuple[int, int]], paid: int, at: int) -> None:
    policy = new_policy("p", [DunningStage(s, timedelta(seconds=after), least)
                              for s, after, least in stages],
                        timedelta(seconds=interval), tolerance)
    ledger = Ledger()
    for i, (amount, days) in enumerate(invoices):
        ledger = ledger.add(new_payment_event(
            event_id=f"issue-{i}", account_id="acme", type="INVOICE_ISSUED",
            invoice_id=f"inv-{i}", amount_minor=amount, due_at=T0 + days * DAY), "USD")
    if paid:
        ledger = pay(ledger, paid)
    snap = ledger.snapshot()
    now = T0 + timedelta(seconds=at)
    ev = evaluate(snap, policy, now)
    got = (ev.state, ev.balance_minor, ev.oldest_due_at, ev.suspends_at,
           ev.next_evaluation_at, ev.reminder)
    assert got == _former_evaluate(snap, policy, now)


def test_reconsider_keeps_every_field_it_does_not_derive() -> None:
    """Every field of the account but the derived ones comes out as it went in (and the
    derived ones as `dataclasses.replace` would set them)."""
    account = Account(
        "acme", kind=AccountKind.CONSUMER, users=frozenset({"u"}), policy_id="p",
        plan_id="pro", exempt=False, seat_limit=3, parent_id="parent",
        admin_emails=("x@y.test",), time_zone="Europe/Paris", currency="EUR",
        derived_state=S.GRACE, state_since=T0, balance_minor=7, oldest_due_at=T0,
        suspends_at=T0, next_evaluation_at=T0, version=9, extra={"k": "v"},
        override=StateOverride(S.CLOSED, "why", "ops", T0, T0 + 40 * DAY))
    out = reconsider(account, invoice(), DEFAULT_POLICY, T0 + 3 * DAY)
    derived = {"derived_state", "state_since", "override", "balance_minor", "oldest_due_at",
               "suspends_at", "next_evaluation_at"}
    for f in fields(Account):
        if f.name not in derived:
            assert getattr(out.account, f.name) == getattr(account, f.name), f.name
    assert out.account == replace(account, **{n: getattr(out.account, n) for n in derived})
    assert (out.account.derived_state, out.account.balance_minor) == (S.REMINDER, 12000)
    assert out.account.override == account.override


# What `reconsider` derives; every other field of the account is carried as it is.
_DERIVED = {"derived_state", "state_since", "override", "balance_minor", "oldest_due_at",
            "suspends_at", "next_evaluation_at"}


def test_reconsider_carries_every_field_it_does_not_derive() -> None:
    """`Account.with_derived` writes the fields out: one added to `Account` and not to it
    fails here (each field has its own value, so two swapped fail too)."""
    given_ = Account(
        "acme", kind=AccountKind.CONSUMER, users=frozenset({"u"}), policy_id="p",
        plan_id="pro", exempt=True, seat_limit=3, parent_id="partner",
        admin_emails=("a@x",), time_zone="Europe/Paris", currency="EUR",
        report_emails=("r@x",), created_at=T0 - 9 * DAY, derived_state=S.ACTIVE,
        state_since=T0 - 8 * DAY, override=StateOverride(S.GRACE, "why", "ops", T0 - 7 * DAY,
                                                         T0 + 30 * DAY),
        balance_minor=1, oldest_due_at=T0 - 6 * DAY, suspends_at=T0 - 5 * DAY,
        next_evaluation_at=T0 - 4 * DAY, version=11, extra={"k": "v"})
    defaults = Account("acme")
    names = {f.name for f in fields(Account)}
    assert all(getattr(given_, n) != getattr(defaults, n)
               for n in names - _DERIVED - {"account_id"})
    out = reconsider(given_, invoice(due=T0), DEFAULT_POLICY, T0 + 2 * DAY)
    for name in names - _DERIVED:
        assert getattr(out.account, name) == getattr(given_, name), name
    assert out.account.with_derived(
        *(getattr(out.account, n) for n in ("derived_state", "state_since", "override",
                                            "balance_minor", "oldest_due_at", "suspends_at",
                                            "next_evaluation_at"))) == out.account


def test_reconsider_changes_nothing_it_is_given() -> None:
    """An account is never changed once made (it is not `frozen`, for speed): the sweep's
    step makes a new one and leaves the one it read, and its ledger, as they were."""
    account = Account("acme", users=frozenset({"u"}), state_since=T0, extra={"k": "v"},
                      version=4)
    ledger = invoice(due=T0)
    before_account, before_ledger = replace(account), replace(ledger)
    before_events, before_extra = dict(ledger.events), dict(account.extra)
    out = reconsider(account, ledger, DEFAULT_POLICY, T0 + 2 * DAY)
    assert out.account is not account and out.account.derived_state is S.REMINDER
    assert account == before_account and account.derived_state is S.ACTIVE
    assert ledger == before_ledger and ledger.events == before_events
    assert account.extra == before_extra
