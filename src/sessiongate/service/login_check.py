"""The read-only login check: near-cache/Redis lookup, failure mode, then `decide`.

One place for the verdict so that every front door (CheckSession, Envoy's ext_authz Check)
answers the same question the same way. It opens no session and takes no seat: callers that
need one do that on top of an allowed verdict.

A near-cache hit is answered without a coroutine hop, and its verdict is remembered in the
entry's memo (per user) when it depends on the snapshot alone: no parent to consult and no
override that expires. The entry is dropped on invalidation and after the TTL, and the
memo with it, so a remembered verdict is exactly what `decide` would answer again (for an
account in a dunning stage, with its policy as cached: a policy change reaches remembered
verdicts within the two TTLs).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import NamedTuple

import structlog

from sessiongate.domain.decision import Decision, Reason, Verdict, decide
from sessiongate.domain.model import Account
from sessiongate.domain.parents import MAX_DEPTH, inherit_parents
from sessiongate.domain.policy import STAGE_STATES, DunningPolicy
from sessiongate.domain.records import FailureMode, StateSource
from sessiongate.service.lookup import Lookup, load_account, lookup_account
from sessiongate.service.runtime import Runtime
from sessiongate.store.nearcache import Memo
from sessiongate.store.policies import PolicyCache

log = structlog.get_logger(__name__)

# Entries per memo (verdicts per user, plus what callers derive from them): a burst of
# logins by unknown users must not grow an entry without bound. Beyond it: computed anew.
# Every memo's bytes count against the near-cache's budget too (`NearCache.keep`).
MAX_MEMO = 256
# Bytes charged for a remembered verdict beyond its user id and message: the dict slot, the
# key and the `Verdict` object.
VERDICT_COST = 300


class LoginCheck(NamedTuple):
    verdict: Verdict
    lookup: Lookup  # where the state came from; `account` is None when unknown or unavailable
    # The fresh near-cache entry's memo when `verdict` came from it and holds as long as the
    # entry: callers may keep there what they derive from the verdict (keys: tuples).
    memo: Memo | None = None


def failure_verdict(failure_mode: FailureMode, error: str) -> Verdict:
    """Redis is unreachable and no usable state is known: the configured failure mode decides.

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

    A child of a channel partner gets no more than its parent chain grants (up to five
    levels, each from the near-cache too; an unreadable parent ends the chain). An account
    in a dunning stage reads its policy (cached) for what the stage grants.
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
            rt.cache.keep(memo, user_id, verdict,
                          VERDICT_COST + len(user_id) + len(verdict.message))
        return LoginCheck(verdict, found, memo)
    found = await load_account(rt, account_id)
    if found.source is StateSource.UNAVAILABLE:
        return LoginCheck(failure_verdict(rt.settings.failure_mode, found.error), found)
    return LoginCheck(await _decide(rt, found, user_id), found)


async def _decide(rt: Runtime, found: Lookup, user_id: str) -> Verdict:
    now = rt.clock.now()
    account = found.account
    verdict = decide(account, user_id, now, await _policy_of(rt, account, now))
    if verdict.allowed and account is not None and account.parent_id and not account.exempt:
        verdict = inherit_parents(verdict, account, await _ancestors(rt, account, now), now)
    return verdict


async def _policy_of(rt: Runtime, account: Account | None, now: datetime
                     ) -> DunningPolicy | None:
    """The account's policy when its state is a dunning stage (what the stage grants);
    None otherwise: ACTIVE and CLOSED grant the same under every policy."""
    if account is None or account.exempt or account.state_at(now) not in STAGE_STATES:
        return None
    return await PolicyCache.shared(rt.transport, rt.settings.near_cache_ttl).for_account(
        account.policy_id)


async def _ancestors(rt: Runtime, account: Account, now: datetime
                     ) -> list[tuple[Account, DunningPolicy | None]]:
    """The parent chain, parent first, as far as it is known: up to MAX_DEPTH accounts from
    the near-cache or Redis, ending at an unknown or unreadable one, or at a repeat (a cycle
    stored before UpsertAccount refused them)."""
    chain: list[tuple[Account, DunningPolicy | None]] = []
    seen = {account.account_id}
    parent_id = account.parent_id
    while parent_id and parent_id not in seen and len(chain) < MAX_DEPTH:
        parent = (await lookup_account(rt, parent_id)).account
        if parent is None:
            break
        chain.append((parent, await _policy_of(rt, parent, now)))
        seen.add(parent_id)
        parent_id = parent.parent_id
    return chain


def _timeless(account: Account | None) -> bool:
    """Whether `decide` answers the same for this snapshot at any time: no parent to consult,
    no override that expires (`state_at` reads the clock only for that)."""
    if account is None:
        return True
    override = account.override
    return not account.parent_id and (override is None or override.expires_at is None)
