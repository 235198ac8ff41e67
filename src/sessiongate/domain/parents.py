"""Channel partners: a child account's access follows its parent chain. Pure.

A reseller's customers lose what the reseller loses: each ancestor's own access level (its
state under its own policy) bounds the child's, up to `MAX_DEPTH` levels, and the most
restrictive wins. An exempt account is never restricted by its parents, and neither is
anything under it through it. `check_ancestry` is the rule UpsertAccount applies so that a
chain never loops and never grows past `MAX_DEPTH`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sessiongate.domain.access import AccessLevel
from sessiongate.domain.decision import Decision, Reason, Verdict, restricted
from sessiongate.domain.errors import FailedPrecondition
from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.policy import DunningPolicy, stage_access

MAX_DEPTH = 5


def own_access(account: Account, policy: DunningPolicy | None, now: datetime) -> AccessLevel:
    """What an account's own state grants (an exempt one: FULL unless closed)."""
    state = account.state_at(now)
    if account.exempt and state is not AccountState.CLOSED:
        return AccessLevel.FULL
    return stage_access(policy, state)


def inherit_parents(verdict: Verdict, account: Account,
                    chain: Sequence[tuple[Account, DunningPolicy | None]],
                    now: datetime) -> Verdict:
    """The child's verdict bounded by its ancestors (`chain`: parent first, each with its
    policy; at most `MAX_DEPTH` are read). A denied verdict, or an exempt child's, stands."""
    if not verdict.allowed or account.exempt:
        return verdict
    worst: tuple[Account, AccessLevel] | None = None
    for ancestor, policy in chain[:MAX_DEPTH]:
        level = own_access(ancestor, policy, now)
        if level is not AccessLevel.FULL and (worst is None or level.rank > worst[1].rank):
            worst = (ancestor, level)
        if ancestor.exempt:
            break
    if worst is None or worst[1].rank <= verdict.access.rank:
        return verdict
    parent, level = worst
    state = parent.state_at(now)
    if state is AccountState.CLOSED:
        return Verdict(Decision.DENY, Reason.ACCOUNT_CLOSED, verdict.state,
                       f"parent account {parent.account_id!r} is closed")
    why = (f"parent account {parent.account_id!r} is {state.value.lower()}; full access"
           " returns when it is paid")
    bound = restricted(state, level, why)
    return Verdict(bound.decision, bound.reason, verdict.state, bound.message, bound.read_only)


def check_ancestry(account_id: str, ancestry: Sequence[str], field: str = "parent_id") -> None:
    """Refuse a parent whose chain (`ancestry`: the new parent, its parent, ... as stored,
    read until it ends, repeats, or passes `MAX_DEPTH`) would loop back to `account_id` or
    make the chain longer than `MAX_DEPTH`."""
    if account_id in ancestry:
        path = " -> ".join([account_id, *ancestry[: ancestry.index(account_id) + 1]])
        raise FailedPrecondition(f"{field}: a cycle ({path})")
    if len(set(ancestry)) < len(ancestry):
        raise FailedPrecondition(f"{field}: the parent's own chain is a cycle")
    if len(ancestry) > MAX_DEPTH:
        raise FailedPrecondition(
            f"{field}: the parent chain would be deeper than {MAX_DEPTH} levels")


def check_subtree(account_id: str, ancestors: int, height: int,
                  field: str = "parent_id") -> None:
    """Refuse a parent under which the deepest descendant of `account_id` (`height` levels
    below it; `ancestors` above it once moved) would sit more than `MAX_DEPTH` levels down."""
    if ancestors + height > MAX_DEPTH:
        raise FailedPrecondition(
            f"{field}: {account_id!r} has {height} level(s) of accounts under it; under this"
            f" parent their chain would be deeper than {MAX_DEPTH} levels")
