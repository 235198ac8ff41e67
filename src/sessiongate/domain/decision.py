"""The login decision: a pure function of the account snapshot, the user and the time."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.money import format_money


class Decision(enum.Enum):
    ALLOW = "ALLOW"
    DENY = "DENY"


class Reason(enum.Enum):
    OK = "OK"
    PAYMENT_OVERDUE = "PAYMENT_OVERDUE"
    ACCOUNT_SUSPENDED = "ACCOUNT_SUSPENDED"
    ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    USER_NOT_AUTHORIZED = "USER_NOT_AUTHORIZED"
    SEAT_LIMIT_REACHED = "SEAT_LIMIT_REACHED"
    FEATURE_NOT_ENTITLED = "FEATURE_NOT_ENTITLED"
    QUOTA_EXHAUSTED = "QUOTA_EXHAUSTED"
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: Reason
    state: AccountState | None
    message: str

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


UNKNOWN_ACCOUNT = Verdict(Decision.DENY, Reason.UNKNOWN_ACCOUNT, None, "unknown account")


def decide(account: Account | None, user_id: str, now: datetime) -> Verdict:
    """Decide a login. Order matters: existence, roster, exemption, then the account state."""
    if account is None:
        return UNKNOWN_ACCOUNT
    state = account.state_at(now)
    if account.users and user_id not in account.users:
        return Verdict(
            Decision.DENY,
            Reason.USER_NOT_AUTHORIZED,
            state,
            f"user {user_id!r} is not on the roster of account {account.account_id!r}",
        )
    if account.exempt and state is not AccountState.CLOSED:
        return Verdict(Decision.ALLOW, Reason.OK, state, "exempt account")
    if state is AccountState.ACTIVE:
        return Verdict(Decision.ALLOW, Reason.OK, state, "account in good standing")
    if state in (AccountState.REMINDER, AccountState.GRACE):
        return Verdict(Decision.ALLOW, Reason.PAYMENT_OVERDUE, state, overdue_message(account))
    if state is AccountState.SUSPENDED:
        return Verdict(
            Decision.DENY,
            Reason.ACCOUNT_SUSPENDED,
            state,
            "account suspended for non-payment; "
            f"{format_money(account.balance_minor, account.currency)} is owed;"
            " access returns as soon as it is paid",
        )
    return Verdict(Decision.DENY, Reason.ACCOUNT_CLOSED, state, "account closed")


def overdue_message(account: Account) -> str:
    owed = format_money(account.balance_minor, account.currency)
    if account.suspends_at is not None:
        when = account.suspends_at.strftime("%Y-%m-%d %H:%M UTC")
        return f"payment overdue: {owed} is owed; access ends on {when} unless paid"
    return f"payment overdue: {owed} is owed"
