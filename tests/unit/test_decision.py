from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.domain.decision import Decision, Reason, decide
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.money import format_money

NOW = datetime(2026, 3, 1, tzinfo=UTC)
BASE = Account(account_id="acme", users=frozenset({"alice", "bob"}))


@pytest.mark.parametrize(
    ("state", "decision", "reason"),
    [
        (AccountState.ACTIVE, Decision.ALLOW, Reason.OK),
        (AccountState.REMINDER, Decision.ALLOW, Reason.PAYMENT_OVERDUE),
        (AccountState.GRACE, Decision.ALLOW, Reason.PAYMENT_OVERDUE),
        (AccountState.SUSPENDED, Decision.DENY, Reason.ACCOUNT_SUSPENDED),
        (AccountState.CLOSED, Decision.DENY, Reason.ACCOUNT_CLOSED),
    ],
)
def test_state_decides(state: AccountState, decision: Decision, reason: Reason) -> None:
    v = decide(replace(BASE, derived_state=state), "alice", NOW)
    assert (v.decision, v.reason, v.state) == (decision, reason, state)


def test_unknown_account_is_denied() -> None:
    v = decide(None, "alice", NOW)
    assert (v.decision, v.reason, v.state) == (Decision.DENY, Reason.UNKNOWN_ACCOUNT, None)


def test_user_off_roster_is_denied_even_when_active() -> None:
    v = decide(BASE, "mallory", NOW)
    assert (v.decision, v.reason) == (Decision.DENY, Reason.USER_NOT_AUTHORIZED)
    assert "mallory" in v.message


def test_empty_roster_admits_any_user() -> None:
    v = decide(replace(BASE, users=frozenset()), "anyone", NOW)
    assert v.decision is Decision.ALLOW


def test_overdue_message_says_what_is_owed_and_when_access_ends() -> None:
    acct = replace(
        BASE,
        derived_state=AccountState.GRACE,
        balance_minor=12345,
        currency="EUR",
        suspends_at=datetime(2026, 3, 15, 9, 30, tzinfo=UTC),
    )
    v = decide(acct, "alice", NOW)
    assert "123.45 EUR" in v.message
    assert "2026-03-15 09:30 UTC" in v.message


def test_exempt_account_is_always_allowed_but_closed_is_closed() -> None:
    suspended = replace(BASE, exempt=True, derived_state=AccountState.SUSPENDED)
    assert decide(suspended, "alice", NOW).decision is Decision.ALLOW
    assert decide(suspended, "alice", NOW).state is AccountState.ACTIVE
    closed = replace(
        BASE, exempt=True,
        override=StateOverride(AccountState.CLOSED, "contract ended", "admin", NOW),
    )
    assert decide(closed, "alice", NOW).reason is Reason.ACCOUNT_CLOSED


def test_override_wins_until_it_expires() -> None:
    o = StateOverride(AccountState.SUSPENDED, "fraud review", "ops", NOW, NOW + timedelta(hours=1))
    acct = replace(BASE, override=o)
    assert decide(acct, "alice", NOW).reason is Reason.ACCOUNT_SUSPENDED
    assert decide(acct, "alice", NOW + timedelta(hours=2)).reason is Reason.OK


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [(12345, "USD", "123.45 USD"), (-5, "usd", "-0.05 USD"), (500, "JPY", "500 JPY"),
     (1234, "KWD", "1.234 KWD"), (0, "EUR", "0.00 EUR")],
)
def test_format_money_is_exact(amount: int, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text
