"""The channel-partner rule: pure."""

from __future__ import annotations

from datetime import UTC, datetime

from sessiongate.domain.decision import Decision, Reason, decide
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.parents import inherit_parent

NOW = datetime(2026, 10, 1, tzinfo=UTC)


def parent_in(state: AccountState) -> Account:
    return Account("partner", override=StateOverride(state, "test", "admin", NOW))


def test_parent_states() -> None:
    child = Account("child", parent_id="partner")
    allowed = decide(child, "alice", NOW)
    for state, blocked in ((AccountState.ACTIVE, False), (AccountState.GRACE, False),
                           (AccountState.SUSPENDED, True), (AccountState.CLOSED, True)):
        v = inherit_parent(allowed, child, parent_in(state), NOW)
        assert (v.decision is Decision.DENY) is blocked
        if blocked:
            assert v.reason is Reason.ACCOUNT_SUSPENDED and v.state is AccountState.ACTIVE
    assert inherit_parent(allowed, child, None, NOW) is allowed  # unknown parent: own verdict


def test_exempt_child_and_already_denied_verdicts_are_kept() -> None:
    gov = Account("gov", parent_id="partner", exempt=True)
    v = decide(gov, "clerk", NOW)
    assert inherit_parent(v, gov, parent_in(AccountState.SUSPENDED), NOW) is v
    child = Account("child", parent_id="partner", users=frozenset({"bob"}))
    denied = decide(child, "mallory", NOW)
    assert inherit_parent(denied, child, parent_in(AccountState.SUSPENDED), NOW) is denied
