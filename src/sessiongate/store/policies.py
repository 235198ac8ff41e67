"""Dunning policies in Redis: one JSON string per policy at `keys.policy(id)`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from redis.exceptions import RedisError

from sessiongate.domain.access import AccessLevel
from sessiongate.domain.model import AccountState
from sessiongate.domain.policy import DEFAULT_POLICY, DunningPolicy, DunningStage
from sessiongate.store import keys
from sessiongate.store.transport import Transport, raise_first


def encode_policy(p: DunningPolicy) -> str:
    return json.dumps(
        {
            "id": p.policy_id,
            "stages": [{"state": s.state.value, "after_s": s.after.total_seconds(),
                        "min": s.min_balance_minor,
                        **({"access": s.access.value} if s.access is not None else {})}
                       for s in p.stages],
            "interval_s": p.reminder_interval.total_seconds(),
            "tolerance": p.tolerance_minor,
        },
        separators=(",", ":"),
    )


def decode_policy(raw: str | bytes) -> DunningPolicy:
    d: dict[str, Any] = json.loads(raw)
    return DunningPolicy(
        policy_id=d["id"],
        stages=tuple(
            DunningStage(AccountState(s["state"]), timedelta(seconds=s["after_s"]),
                         int(s.get("min", 0)),
                         AccessLevel(s["access"]) if "access" in s else None)
            for s in d["stages"]
        ),
        reminder_interval=timedelta(seconds=d["interval_s"]),
        tolerance_minor=int(d.get("tolerance", 0)),
    )


class PolicyStore:
    def __init__(self, redis: Transport) -> None:
        self._redis = redis

    async def get(self, policy_id: str) -> DunningPolicy | None:
        """The stored policy; the built-in default for `"default"` unless one was stored."""
        raw = await self._redis.call("GET", keys.policy(policy_id))
        if raw is None:
            return DEFAULT_POLICY if policy_id == DEFAULT_POLICY.policy_id else None
        return decode_policy(raw)

    async def for_account(self, policy_id: str) -> DunningPolicy:
        """What an account with this `policy_id` is dunned by: its policy, else the default
        (an account naming a policy not (yet) stored is dunned by the default rather than
        never)."""
        found = await self.get(policy_id or DEFAULT_POLICY.policy_id)
        if found is None:
            found = await self.get(DEFAULT_POLICY.policy_id)
        assert found is not None
        return found

    async def for_accounts(self, policy_ids: Iterable[str]) -> dict[str, DunningPolicy]:
        """`for_account` of each policy id (as accounts name them, "" too), one round trip."""
        wanted = sorted({pid or DEFAULT_POLICY.policy_id for pid in policy_ids}
                        | {DEFAULT_POLICY.policy_id})
        replies = raise_first(await self._redis.many([("GET", keys.policy(pid))
                                                     for pid in wanted]))
        stored = dict(zip(wanted, replies, strict=True))
        default = stored[DEFAULT_POLICY.policy_id]
        fallback = DEFAULT_POLICY if default is None else decode_policy(default)
        found = {pid: fallback if raw is None else decode_policy(raw)
                 for pid, raw in stored.items()}
        found[""] = found[DEFAULT_POLICY.policy_id]
        return found

    async def put(self, policy: DunningPolicy) -> None:
        await self._redis.call("SET", keys.policy(policy.policy_id), encode_policy(policy))


class PolicyCache:
    """The policies login checks read (what a dunning stage grants), kept for a TTL.

    Read only for accounts in a dunning stage; when Redis cannot be read, the last policy
    known (else the built-in default) answers, so a login check never fails on it.
    """

    def __init__(self, redis: Transport, ttl: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._store = PolicyStore(redis)
        self._ttl = ttl
        self._now = monotonic
        self._cache: dict[str, tuple[DunningPolicy, float]] = {}

    async def for_account(self, policy_id: str) -> DunningPolicy:
        hit = self._cache.get(policy_id)
        if hit is not None and self._now() - hit[1] < self._ttl:
            return hit[0]
        try:
            policy = await self._store.for_account(policy_id)
        except (RedisError, OSError):
            return hit[0] if hit is not None else DEFAULT_POLICY
        self._cache[policy_id] = (policy, self._now())
        return policy

    def put(self, policy: DunningPolicy) -> None:
        """A policy just stored here: seen at once (accounts naming it by id)."""
        self._cache[policy.policy_id] = (policy, self._now())
        if policy.policy_id == DEFAULT_POLICY.policy_id:
            self._cache.pop("", None)
