"""The read-only login check: near-cache/Redis lookup, failure mode, then `decide`.

One place for the verdict so that every front door (CheckSession, Envoy's ext_authz Check)
answers the same question the same way. It opens no session and takes no seat: callers that
need one do that on top of an allowed verdict.

A near-cache hit is answered without a coroutine hop, and its verdict is remembered in the
entry's memo (per user) when it depends on the snapshot alone: no parent to consult and no
override that expires. The entry is dropped on invalidation and after the TTL, and the
memo with it, so a remembered verdict is exactly what `decide` would answer again.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sessiongate.domain.decision import Decision, Reason, Verdict, decide
from sessiongate.domain.model import Account
from sessiongate.domain.parents import inherit_parent
from sessiongate.domain.records import FailureMode, StateSource
from sessiongate.service.lookup import Lookup, load_account, lookup_account
from sessiongate.service.runtime import Runtime

# Entries per memo (verdicts per user, plus what callers derive from them): a burst of
# logins by unknown users must not grow an entry without bound. Beyond it: computed anew.
MAX_MEMO = 256


class LoginCheck(NamedTuple):
    verdict: Verdict
    lookup: Lookup  # where the state came from; `account` is None when unknown or unavailable
    # The fresh near-cache entry's memo when `verdict` came from it and holds as long as the
    # entry: callers may keep there what they derive from the verdict (keys: tuples).
    memo: dict[Any, Any] | None = None


def failure_verdict(failure_mode: FailureMode, error: str) -> Verdict:
    """Redis is unreachable and no usable state is known: the configured failure mode decides."""
    allow = failure_mode is FailureMode.OPEN
    return Verdict(
        Decision.ALLOW if allow else Decision.DENY,
        Reason.BACKEND_UNAVAILABLE,
        None,
        f"account state unavailable ({error}); failure mode {failure_mode}: "
        f"{'allowed' if allow else 'denied'}",
    )


def remembered_login(rt: Runtime, account_id: str, user_id: str) -> LoginCheck | None:
    """`check_login` without a coroutine when the near-cache remembers this user's verdict;
    None (nothing counted) otherwise: then await `check_login`."""
    got = rt.cache.remembered(account_id, user_id)
    if got is None:
        return None
    verdict, age_ms, entry = got
    return LoginCheck(verdict, Lookup(entry.account, StateSource.NEAR_CACHE, age_ms), entry.memo)


async def check_login(rt: Runtime, account_id: str, user_id: str) -> LoginCheck:
    """Decide a login of validated ids; never raises for a Redis outage (the lookup absorbs it).

    A child of a channel partner is refused while its parent is suspended or closed (the
    parent comes from the near-cache too; if it cannot be read, the child's verdict stands).
    """
    hit = rt.cache.hit(account_id)
    if hit is not None:
        entry, age_ms = hit
        found = Lookup(entry.account, StateSource.NEAR_CACHE, age_ms)
        memo = entry.memo
        known: Verdict | None = memo.get(user_id)
        if known is not None:
            return LoginCheck(known, found, memo)
        if not _timeless(entry.account):
            return LoginCheck(await _decide(rt, found, user_id), found)
        verdict = await _decide(rt, found, user_id)
        if len(memo) < MAX_MEMO:
            memo[user_id] = verdict
        return LoginCheck(verdict, found, memo)
    found = await load_account(rt, account_id)
    if found.source is StateSource.UNAVAILABLE:
        return LoginCheck(failure_verdict(rt.settings.failure_mode, found.error), found)
    return LoginCheck(await _decide(rt, found, user_id), found)


async def _decide(rt: Runtime, found: Lookup, user_id: str) -> Verdict:
    now = rt.clock.now()
    verdict = decide(found.account, user_id, now)
    account = found.account
    if verdict.allowed and account is not None and account.parent_id:
        parent = await lookup_account(rt, account.parent_id)
        verdict = inherit_parent(verdict, account, parent.account, now)
    return verdict


def _timeless(account: Account | None) -> bool:
    """Whether `decide` answers the same for this snapshot at any time: no parent to consult,
    no override that expires (`state_at` reads the clock only for that)."""
    if account is None:
        return True
    override = account.override
    return not account.parent_id and (override is None or override.expires_at is None)
