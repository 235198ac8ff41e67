"""Channel partners: a child account is refused while its parent is suspended or closed.

One level: the parent's own parent is not consulted. Exempt children are never refused.
"""

from __future__ import annotations

from datetime import datetime

from sessiongate.domain.decision import Decision, Reason, Verdict
from sessiongate.domain.model import Account, AccountState

_BLOCKING = (AccountState.SUSPENDED, AccountState.CLOSED)


def inherit_parent(verdict: Verdict, account: Account, parent: Account | None,
                   now: datetime) -> Verdict:
    """The child's verdict, turned into a refusal when its parent is suspended or closed."""
    if not verdict.allowed or parent is None or account.exempt:
        return verdict
    state = parent.state_at(now)
    if state not in _BLOCKING:
        return verdict
    return Verdict(
        Decision.DENY, Reason.ACCOUNT_SUSPENDED, verdict.state,
        f"parent account {parent.account_id!r} is {state.value.lower()}; access returns when"
        " it is reinstated",
    )
