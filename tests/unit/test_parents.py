"""The channel-partner rule: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.domain.access import AccessLevel
from sessiongate.domain.decision import Decision, Reason, decide
from sessiongate.domain.errors import FailedPrecondition
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.parents import MAX_DEPTH, check_ancestry, inherit_parents
from sessiongate.domain.policy import DunningPolicy, DunningStage

NOW = datetime(2026, 10, 1, tzinfo=UTC)
READ_ONLY_SUSPENSION = DunningPolicy("ro", (
    DunningStage(AccountState.SUSPENDED, timedelta(days=30), access=AccessLevel.READ_ONLY),))


def in_state(account_id: str, state: AccountState, parent_id: str = "",
             exempt: bool = False) -> Account:
    return Account(account_id, parent_id=parent_id, exempt=exempt,
                   override=StateOverride(state, "test", "admin", NOW))


def test_parent_states() -> None:
    child = Account("child", parent_id="partner")
    allowed = decide(child, "alice", NOW)
    for state, decision, reason in (
        (AccountState.ACTIVE, Decision.ALLOW, Reason.OK),
        (AccountState.GRACE, Decision.ALLOW, Reason.OK),
        (AccountState.SUSPENDED, Decision.DENY, Reason.ACCOUNT_SUSPENDED),
        (AccountState.CLOSED, Decision.DENY, Reason.ACCOUNT_CLOSED),
    ):
        v = inherit_parents(allowed, child, [(in_state("partner", state), None)], NOW)
        assert (v.decision, v.reason, v.state) == (decision, reason, AccountState.ACTIVE)
        if decision is Decision.DENY:
            assert "partner" in v.message
    assert inherit_parents(allowed, child, [], NOW) is allowed  # unknown parent: own verdict


def test_a_read_only_parent_makes_the_child_read_only() -> None:
    child = Account("child", parent_id="partner")
    v = inherit_parents(decide(child, "alice", NOW), child,
                        [(in_state("partner", AccountState.SUSPENDED), READ_ONLY_SUSPENSION)],
                        NOW)
    assert (v.decision, v.access, v.reason) == (
        Decision.ALLOW, AccessLevel.READ_ONLY, Reason.ACCOUNT_SUSPENDED)
    assert v.restricted_by_payment and "read-only" in v.message and "partner" in v.message


def test_the_chain_is_followed_to_five_levels_and_the_worst_wins() -> None:
    child = Account("c", parent_id="p1")
    allowed = decide(child, "alice", NOW)
    chain = [(in_state(f"p{i}", AccountState.ACTIVE), None) for i in range(1, MAX_DEPTH)]
    chain.append((in_state("p5", AccountState.SUSPENDED), None))
    v = inherit_parents(allowed, child, chain, NOW)
    assert v.decision is Decision.DENY and "'p5'" in v.message
    beyond = [*chain[:-1], (in_state("p5", AccountState.ACTIVE), None),
              (in_state("p6", AccountState.SUSPENDED), None)]
    assert inherit_parents(allowed, child, beyond, NOW) is allowed  # the sixth is not read
    # READ_ONLY at level 1, NONE at level 3: NONE wins.
    mixed = [(in_state("p1", AccountState.SUSPENDED), READ_ONLY_SUSPENSION),
             (in_state("p2", AccountState.ACTIVE), None),
             (in_state("p3", AccountState.SUSPENDED), None)]
    assert inherit_parents(allowed, child, mixed, NOW).decision is Decision.DENY


def test_exempt_accounts_are_never_restricted_by_their_parents() -> None:
    gov = Account("gov", parent_id="partner", exempt=True)
    v = decide(gov, "clerk", NOW)
    assert inherit_parents(v, gov, [(in_state("partner", AccountState.SUSPENDED), None)],
                           NOW) is v
    # An exempt parent shields its children from the grandparent.
    child = Account("child", parent_id="agency")
    allowed = decide(child, "alice", NOW)
    chain = [(Account("agency", parent_id="partner", exempt=True), None),
             (in_state("partner", AccountState.SUSPENDED), None)]
    assert inherit_parents(allowed, child, chain, NOW) is allowed
    denied = decide(Account("c", parent_id="p", users=frozenset({"bob"})), "mallory", NOW)
    assert inherit_parents(denied, Account("c", parent_id="p"),
                           [(in_state("p", AccountState.SUSPENDED), None)], NOW) is denied


def test_check_ancestry_refuses_cycles_and_depth() -> None:
    check_ancestry("a", [])
    check_ancestry("a", ["p1", "p2", "p3", "p4", "p5"])
    with pytest.raises(FailedPrecondition, match=r"parent_id: .*deeper than 5"):
        check_ancestry("a", ["p1", "p2", "p3", "p4", "p5", "p6"])
    with pytest.raises(FailedPrecondition, match=r"parent_id: a cycle \(a -> b -> c -> a\)"):
        check_ancestry("a", ["b", "c", "a"])
    with pytest.raises(FailedPrecondition, match="parent_id"):
        check_ancestry("a", ["b", "c", "b"])
