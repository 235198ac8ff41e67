"""Accounts and their states, as plain values never changed once made (a change is a new
value): `StateOverride` is frozen, `Account` is so by rule (see why there)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class AccountState(enum.Enum):
    """Lifecycle state; the value is how it is stored. Severity orders the dunning stages."""

    ACTIVE = "ACTIVE"
    REMINDER = "REMINDER"
    GRACE = "GRACE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    AccountState.ACTIVE: 0,
    AccountState.REMINDER: 1,
    AccountState.GRACE: 2,
    AccountState.SUSPENDED: 3,
    AccountState.CLOSED: 4,
}


class AccountKind(enum.Enum):
    ENTERPRISE = "ENTERPRISE"  # one account, many named users, one invoice
    CONSUMER = "CONSUMER"  # one user


@dataclass(frozen=True, slots=True)
class StateOverride:
    """An admin's manual state, winning over the derived one until it expires."""

    state: AccountState
    reason: str
    actor: str
    set_at: datetime
    expires_at: datetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(slots=True)
class Account:
    """What the hot path needs to decide a login, plus the admin-managed settings.

    `derived_state` comes from the ledger and the dunning policy; `state` is what is enforced
    (the override when one is active). The ledger summary (`balance_minor`, `oldest_due_at`,
    `suspends_at`) is kept here so that a login check needs one read.

    Never changed once made: a change is a new account (`replace`, `with_derived`). Not
    `frozen`: its `__init__` would pay an `object.__setattr__` per field, and the sweep builds
    two per account it moves (docs/performance.md, row "Sweep: records not frozen"). Unhashable
    either way (`extra` is a dict).
    """

    account_id: str
    kind: AccountKind = AccountKind.ENTERPRISE
    users: frozenset[str] = frozenset()
    policy_id: str = ""
    plan_id: str = ""
    exempt: bool = False
    seat_limit: int = 0
    parent_id: str = ""
    admin_emails: tuple[str, ...] = ()
    time_zone: str = "UTC"
    currency: str = "USD"
    report_emails: tuple[str, ...] = ()
    created_at: datetime | None = None  # None: created by a release that did not record it
    derived_state: AccountState = AccountState.ACTIVE
    state_since: datetime | None = None
    override: StateOverride | None = None
    balance_minor: int = 0
    oldest_due_at: datetime | None = None
    suspends_at: datetime | None = None
    next_evaluation_at: datetime | None = None
    version: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    def with_derived(self, derived_state: AccountState, state_since: datetime | None,
                     override: StateOverride | None, balance_minor: int,
                     oldest_due_at: datetime | None, suspends_at: datetime | None,
                     next_evaluation_at: datetime | None) -> Account:
        """This account with what dunning derives replaced: `replace` with these fields,
        written out (`replace` looks every field up per call; the sweep makes one per
        account). tests/unit/test_dunning.py checks that every other field is carried."""
        return Account(self.account_id, self.kind, self.users, self.policy_id, self.plan_id,
                       self.exempt, self.seat_limit, self.parent_id, self.admin_emails,
                       self.time_zone, self.currency, self.report_emails, self.created_at,
                       derived_state, state_since, override, balance_minor, oldest_due_at,
                       suspends_at, next_evaluation_at, self.version, self.extra)

    def state_at(self, now: datetime) -> AccountState:
        """The enforced state: an active override wins; exempt accounts are never dunned."""
        if self.override is not None and self.override.active(now):
            return self.override.state
        if self.exempt:
            return AccountState.ACTIVE
        return self.derived_state
