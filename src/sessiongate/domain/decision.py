"""The login decision: a pure function of the account snapshot, the user and the time."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sessiongate.domain.access import AccessLevel
from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.money import format_money
from sessiongate.domain.policy import DunningPolicy, stage_access


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


_PAYMENT = frozenset({Reason.PAYMENT_OVERDUE, Reason.ACCOUNT_SUSPENDED})


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: Reason
    state: AccountState | None
    message: str
    read_only: bool = False  # allowed, but only to read (a READ_ONLY dunning stage)

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW

    @property
    def access(self) -> AccessLevel:
        if self.decision is not Decision.ALLOW:
            return AccessLevel.NONE
        return AccessLevel.READ_ONLY if self.read_only else AccessLevel.FULL

    @property
    def restricted_by_payment(self) -> bool:
        """Access is cut (NONE or READ_ONLY) because money is owed, by this account or a
        parent: what a feature or path that stays available may lift. Never for a closed or
        unknown account, a user off the roster, or a backend outage."""
        return self.reason in _PAYMENT and (self.read_only or self.decision is Decision.DENY)


UNKNOWN_ACCOUNT = Verdict(Decision.DENY, Reason.UNKNOWN_ACCOUNT, None, "unknown account")


def decide(account: Account | None, user_id: str, now: datetime,
           policy: DunningPolicy | None = None) -> Verdict:
    """Decide a login. Order matters: existence, roster, exemption, then the account state,
    whose access level `policy` (the account's; None: the defaults) says."""
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
    if state is AccountState.CLOSED:
        return Verdict(Decision.DENY, Reason.ACCOUNT_CLOSED, state, "account closed")
    return restricted(state, stage_access(policy, state), _owed(account, state))


def restricted(state: AccountState, level: AccessLevel, why: str) -> Verdict:
    """The verdict of a dunning stage granting `level`; `why` says what is owed."""
    reason = Reason.ACCOUNT_SUSPENDED if state is AccountState.SUSPENDED else (
        Reason.PAYMENT_OVERDUE)
    if level is AccessLevel.FULL:
        return Verdict(Decision.ALLOW, reason, state, why)
    if level is AccessLevel.READ_ONLY:
        return Verdict(Decision.ALLOW, reason, state, f"access is read-only: {why}",
                       read_only=True)
    return Verdict(Decision.DENY, reason, state, why)


def _owed(account: Account, state: AccountState) -> str:
    if state is AccountState.SUSPENDED:
        return ("account suspended for non-payment; "
                f"{format_money(account.balance_minor, account.currency)} is owed;"
                " access returns as soon as it is paid")
    return overdue_message(account)


def overdue_message(account: Account) -> str:
    owed = format_money(account.balance_minor, account.currency)
    if account.suspends_at is not None:
        when = account.suspends_at.strftime("%Y-%m-%d %H:%M UTC")
        return f"payment overdue: {owed} is owed; access ends on {when} unless paid"
    return f"payment overdue: {owed} is owed"
