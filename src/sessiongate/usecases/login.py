"""The read-only login check: account state (near-cache, backend, failure mode), then
`decide`, the parent chain and what a dunning stage grants.

One place for the verdict so that every front door (CheckSession, Envoy's ext_authz Check,
the HTTP forward auth) answers the same question the same way. It opens no session and
takes no seat: callers that need one do that on top of an allowed verdict. It remembers
nothing: what CheckSession may remember of its answers is service/answer_memo.py's rule.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import NamedTuple

import structlog

from sessiongate.domain.clock import Clock
from sessiongate.domain.decision import Decision, Reason, Verdict, decide
from sessiongate.domain.model import Account
from sessiongate.domain.parents import MAX_DEPTH, inherit_parents
from sessiongate.domain.policy import STAGE_STATES, DunningPolicy
from sessiongate.domain.records import FailureMode, StateSource
from sessiongate.ports import Policies, Snapshot
from sessiongate.usecases.account_state import AccountLookup, Lookup

log = structlog.get_logger(__name__)


class LoginCheck(NamedTuple):
    verdict: Verdict
    lookup: Lookup  # where the state came from; `account` is None when unknown or unavailable
    # The fresh near-cache snapshot the verdict was decided on; None when the state came
    # from the backend, was stale or unavailable.
    snapshot: Snapshot | None = None


def failure_verdict(failure_mode: FailureMode, error: str) -> Verdict:
    """The backend is unreachable and no usable state is known: the configured failure mode
    decides.

    `error` goes to the log (at most once a second: an outage fails every login), never to
    the client: Redis's text names hosts, ports and script hashes."""
    global _logged_at
    allow = failure_mode is FailureMode.OPEN
    now = time.monotonic()
    if now - _logged_at >= 1.0:
        _logged_at = now
        log.warning("account state unavailable", error=error, failure_mode=failure_mode)
    return Verdict(
        Decision.ALLOW if allow else Decision.DENY,
        Reason.BACKEND_UNAVAILABLE,
        None,
        f"account state unavailable; failure mode {failure_mode}: "
        f"{'allowed' if allow else 'denied'}",
    )


_logged_at = float("-inf")


def answers_at_any_time(account: Account | None) -> bool:
    """Whether `decide` answers the same for this snapshot at any time: no parent to consult,
    no override that expires (`state_at` reads the clock only for that)."""
    if account is None:
        return True
    override = account.override
    return not account.parent_id and (override is None or override.expires_at is None)


class LoginChecker:
    """Decides logins of validated ids; never raises for an unreachable backend (the lookup
    absorbs it, then the failure mode decides).

    A child of a channel partner gets no more than its parent chain grants (up to five
    levels, each from the near-cache too; an unreadable parent ends the chain). An account
    in a dunning stage reads its policy (cached) for what the stage grants.
    """

    def __init__(self, lookup: AccountLookup, policies: Policies, clock: Clock) -> None:
        self.lookup = lookup
        self.policies = policies
        self.clock = clock

    @property
    def failure_mode(self) -> FailureMode:
        return self.lookup.failure_mode

    async def check(self, account_id: str, user_id: str) -> LoginCheck:
        hit = self.lookup.cache.hit(account_id)
        if hit is not None:
            snapshot, age_ms = hit
            found = Lookup(snapshot.account, StateSource.NEAR_CACHE, age_ms)
            return LoginCheck(await self._decide(found, user_id), found, snapshot)
        found = await self.lookup.load(account_id)
        if found.source is StateSource.UNAVAILABLE:
            return LoginCheck(failure_verdict(self.failure_mode, found.error), found)
        return LoginCheck(await self._decide(found, user_id), found)

    async def _decide(self, found: Lookup, user_id: str) -> Verdict:
        now = self.clock.now()
        account = found.account
        policy = None
        if _in_stage(account, now):
            assert account is not None
            policy = await self.policies.for_account(account.policy_id)
        verdict = decide(account, user_id, now, policy)
        if verdict.allowed and account is not None and account.parent_id and not account.exempt:
            verdict = inherit_parents(verdict, account, await self._ancestors(account, now),
                                      now)
        return verdict

    async def _ancestors(self, account: Account, now: datetime
                         ) -> list[tuple[Account, DunningPolicy | None]]:
        """The parent chain, parent first, as far as it is known: up to MAX_DEPTH accounts
        from the near-cache or the backend, ending at an unknown or unreadable one, or at a
        repeat (a cycle stored before UpsertAccount refused them)."""
        chain: list[tuple[Account, DunningPolicy | None]] = []
        seen = {account.account_id}
        parent_id = account.parent_id
        while parent_id and parent_id not in seen and len(chain) < MAX_DEPTH:
            parent = (await self.lookup.find(parent_id)).account
            if parent is None:
                break
            policy = (await self.policies.for_account(parent.policy_id)
                      if _in_stage(parent, now) else None)
            chain.append((parent, policy))
            seen.add(parent_id)
            parent_id = parent.parent_id
        return chain


def _in_stage(account: Account | None, now: datetime) -> bool:
    """Whether the account's policy matters: its state is a dunning stage (ACTIVE and CLOSED
    grant the same under every policy)."""
    return (account is not None and not account.exempt
            and account.state_at(now) in STAGE_STATES)
