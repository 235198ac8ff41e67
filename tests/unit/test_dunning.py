"""The pure dunning rules: derived states, reminders once each, previews, policies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.domain.dunning import evaluate, preview, reconsider
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.ledger import Ledger
from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.payment_event import new_payment_event
from sessiongate.domain.policy import DEFAULT_POLICY, DunningStage, new_policy
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
            history += [out.history_entry] if out.history_entry else []
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
    assert out.history_entry is not None and out.history_entry["event_id"] == "pay-1"
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
    assert (out.history_entry["from"], out.history_entry["to"]) == ("SUSPENDED", "ACTIVE")


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
