"""The read-only login check: near-cache/Redis lookup, failure mode, then `decide`.

One place for the verdict so that every front door (CheckSession, Envoy's ext_authz Check)
answers the same question the same way. It opens no session and takes no seat: callers that
need one do that on top of an allowed verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from sessiongate.domain.decision import Decision, Reason, Verdict, decide
from sessiongate.domain.parents import inherit_parent
from sessiongate.service.lookup import Lookup, lookup_account
from sessiongate.service.runtime import Runtime


@dataclass(frozen=True, slots=True)
class LoginCheck:
    verdict: Verdict
    lookup: Lookup  # where the state came from; `account` is None when unknown or unavailable


def failure_verdict(failure_mode: str, error: str) -> Verdict:
    """Redis is unreachable and no usable state is known: the configured failure mode decides."""
    allow = failure_mode == "open"
    return Verdict(
        Decision.ALLOW if allow else Decision.DENY,
        Reason.BACKEND_UNAVAILABLE,
        None,
        f"account state unavailable ({error}); failure mode {failure_mode}: "
        f"{'allowed' if allow else 'denied'}",
    )


async def check_login(rt: Runtime, account_id: str, user_id: str) -> LoginCheck:
    """Decide a login of validated ids; never raises for a Redis outage (the lookup absorbs it).

    A child of a channel partner is refused while its parent is suspended or closed (the
    parent comes from the near-cache too; if it cannot be read, the child's verdict stands).
    """
    found = await lookup_account(rt, account_id)
    if found.source == "unavailable":
        return LoginCheck(failure_verdict(rt.settings.failure_mode, found.error), found)
    now = rt.clock.now()
    verdict = decide(found.account, user_id, now)
    account = found.account
    if verdict.allowed and account is not None and account.parent_id:
        parent = await lookup_account(rt, account.parent_id)
        verdict = inherit_parent(verdict, account, parent.account, now)
    return LoginCheck(verdict, found)
