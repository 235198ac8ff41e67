"""Dunning policies: a customer's business rules for what happens when an invoice goes unpaid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sessiongate.domain.access import DEFAULT_STAGE_ACCESS, AccessLevel
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.model import AccountState
from sessiongate.domain.validation import check_id

DEFAULT_POLICY_ID = "default"
STAGE_STATES = (AccountState.REMINDER, AccountState.GRACE, AccountState.SUSPENDED)
# States in which reminders repeat (SUSPENDED gets its own notice, then silence).
REMINDER_STATES = (AccountState.REMINDER, AccountState.GRACE)
MIN_INTERVAL = timedelta(seconds=1)
MAX_AFTER = timedelta(days=3660)


@dataclass(frozen=True, slots=True)
class DunningStage:
    """Holds when the oldest open invoice is `after` past due and the balance >= the minimum;
    grants `access` (None: the default of its state, see access.py)."""

    state: AccountState
    after: timedelta
    min_balance_minor: int = 0
    access: AccessLevel | None = None


@dataclass(frozen=True, slots=True)
class DunningPolicy:
    policy_id: str
    stages: tuple[DunningStage, ...]
    reminder_interval: timedelta = timedelta(days=1)
    tolerance_minor: int = 0

    def stage(self, state: AccountState) -> DunningStage | None:
        return next((s for s in self.stages if s.state is state), None)


DEFAULT_POLICY = DunningPolicy(
    policy_id=DEFAULT_POLICY_ID,
    stages=(
        DunningStage(AccountState.REMINDER, timedelta(days=1)),
        DunningStage(AccountState.GRACE, timedelta(days=15)),
        DunningStage(AccountState.SUSPENDED, timedelta(days=31)),
    ),
)


def new_policy(
    policy_id: str,
    stages: list[DunningStage] | tuple[DunningStage, ...],
    reminder_interval: timedelta | None = None,
    tolerance_minor: int = 0,
) -> DunningPolicy:
    """Validate a policy; stages come back ordered by severity. Fields named as in the proto."""
    check_id("policy_id", policy_id)
    seen: set[AccountState] = set()
    for i, st in enumerate(stages):
        f = f"stages[{i}]"
        if st.state not in STAGE_STATES:
            raise InvalidArgument(f + ".state", "must be REMINDER, GRACE or SUSPENDED")
        if st.state in seen:
            raise InvalidArgument(f + ".state", f"{st.state.value} appears twice")
        seen.add(st.state)
        if st.after < timedelta(0):
            raise InvalidArgument(f + ".after", "must not be negative")
        if st.after > MAX_AFTER:
            raise InvalidArgument(f + ".after", "longer than ten years")
        if st.min_balance_minor < 0:
            raise InvalidArgument(f + ".min_balance_minor", "must not be negative")
    interval = reminder_interval or timedelta(days=1)
    if interval < MIN_INTERVAL:
        raise InvalidArgument("reminder_interval", "must be at least one second")
    if interval > MAX_AFTER:
        raise InvalidArgument("reminder_interval", "longer than ten years")
    if tolerance_minor < 0:
        raise InvalidArgument("tolerance_minor", "must not be negative")
    ordered = tuple(sorted(stages, key=lambda s: s.state.severity))
    return DunningPolicy(policy_id, ordered, interval, tolerance_minor)


def stage_access(policy: DunningPolicy | None, state: AccountState) -> AccessLevel:
    """What `state` grants under `policy` (None: the defaults). ACTIVE is always FULL and
    CLOSED always NONE, whatever a policy says."""
    if state is AccountState.ACTIVE or state is AccountState.CLOSED or policy is None:
        return DEFAULT_STAGE_ACCESS[state]
    stage = policy.stage(state)
    if stage is None or stage.access is None:
        return DEFAULT_STAGE_ACCESS[state]
    return stage.access
