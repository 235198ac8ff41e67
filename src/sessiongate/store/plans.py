"""Plans in Redis (JSON at `keys.plan(id)`), an in-process plan cache, and quota counters."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import datetime

from redis.exceptions import RedisError

from sessiongate.domain.entitlements import Consumed, Feature, FeatureKind, LimitMode, Plan
from sessiongate.domain.errors import OutOfRange
from sessiongate.domain.periods import ResetPeriod, window, window_key
from sessiongate.domain.records import ConsumeStatus
from sessiongate.store import keys
from sessiongate.store.accounts import IDEMPOTENCY_RETENTION_MS
from sessiongate.store.codec import to_ms
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport


def encode_plan(plan: Plan) -> str:
    return json.dumps(
        {"id": plan.plan_id, "features": [
            {"name": f.name, "kind": f.kind.value, "quota": f.quota, "period": f.period.value,
             "limit": f.limit.value, **({"open": True} if f.available_while_restricted else {})}
            for f in plan.features]},
        separators=(",", ":"),
    )


def decode_plan(raw: str | bytes) -> Plan:
    d = json.loads(raw)
    return Plan(d["id"], tuple(
        Feature(f["name"], FeatureKind(f["kind"]), int(f["quota"]), ResetPeriod(f["period"]),
                LimitMode(f["limit"]), bool(f.get("open", False))) for f in d["features"]))


WEEK_MS = 7 * 24 * 3600 * 1000
MAX_COUNTER = 2**63 - 1  # Redis's integers (INCRBY, HINCRBY): the Lua scripts refuse beyond


class PlanStore:
    # What its calls raise when Redis cannot answer (`ports.Plans.unavailable`).
    unavailable: tuple[type[Exception], ...] = (RedisError, OSError)

    def __init__(self, redis: Transport, scripts: Scripts, ttl: float = 2.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._redis = redis
        self._scripts = scripts
        self._ttl = ttl
        self._now = monotonic
        self._cache: dict[str, tuple[Plan | None, float]] = {}

    async def get(self, plan_id: str) -> Plan | None:
        """From the cache when younger than the TTL, else one GET."""
        hit = self._cache.get(plan_id)
        if hit is not None and self._now() - hit[1] < self._ttl:
            return hit[0]
        raw = await self._redis.call("GET", keys.plan(plan_id))
        plan = None if raw is None else decode_plan(raw)
        self._cache[plan_id] = (plan, self._now())
        return plan

    async def put(self, plan: Plan) -> None:
        await self._redis.call("SET", keys.plan(plan.plan_id), encode_plan(plan))
        self._cache[plan.plan_id] = (plan, self._now())

    async def used(self, account_id: str, feature: Feature, now: datetime) -> int:
        raw = await self._redis.call(
            "GET", keys.quota(account_id, feature.name, window_key(feature.period, now)))
        return int(raw or 0)

    async def consume(self, account_id: str, feature: Feature, quantity: int, event_id: str,
                      now: datetime, user_id: str = "") -> Consumed:
        """One Lua call (`consume_quota.lua`). A reused `event_id` is compared by the
        consumption's content (user, feature, quantity): "conflict" if it differs."""
        digest = hashlib.blake2b(f"{user_id}\x1f{feature.name}\x1f{quantity}".encode(),
                                 digest_size=8).hexdigest()
        _, end = window(feature.period, now)
        # Relative, so that a test clock far from Redis's own clock cannot expire it early.
        expire = "" if end is None else str(int((end - now).total_seconds() * 1000) + WEEK_MS)
        status, used = await self._scripts["consume_quota"](
            keys=[keys.quota(account_id, feature.name, window_key(feature.period, now)),
                  keys.usage_events(account_id)],
            args=[quantity, feature.quota, "1" if feature.limit is LimitMode.HARD else "0",
                  f"c:{event_id}" if event_id else "", to_ms(now), IDEMPOTENCY_RETENTION_MS,
                  expire, digest],
        )
        text = status.decode() if isinstance(status, bytes) else str(status)
        if text == "overflow":
            raise OutOfRange("quantity", f"{quantity} more would take the counter of feature"
                             f" {feature.name!r} past {MAX_COUNTER}; nothing consumed")
        return Consumed(ConsumeStatus(text), int(used))
