"""Plans and their features, and the entitlement verdict: pure, given the counter's value.

A plan names features. A boolean feature is on or off; a metered one has a quota per reset
window (day, ISO week, calendar month UTC, or never) and a hard limit (refuse past the quota)
or a soft one (allow, but report it). An account without a plan is entitled to nothing.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sessiongate.domain.decision import Decision, Reason
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.periods import ResetPeriod, window
from sessiongate.domain.records import ConsumeStatus
from sessiongate.domain.validation import check_id


class FeatureKind(enum.Enum):
    BOOLEAN = "BOOLEAN"
    METERED = "METERED"


class LimitMode(enum.Enum):
    HARD = "HARD"
    SOFT = "SOFT"


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    kind: FeatureKind = FeatureKind.BOOLEAN
    quota: int = 0
    period: ResetPeriod = ResetPeriod.MONTH
    limit: LimitMode = LimitMode.HARD
    # Usable while the account is restricted for non-payment (a billing page, an export).
    available_while_restricted: bool = False

    @property
    def metered(self) -> bool:
        return self.kind is FeatureKind.METERED


@dataclass(frozen=True, slots=True)
class Plan:
    plan_id: str
    features: tuple[Feature, ...] = ()

    def feature(self, name: str) -> Feature | None:
        for f in self.features:
            if f.name == name:
                return f
        return None


def check_plan(plan: Plan, field: str = "") -> Plan:
    """Ids well-formed, feature names unique, quotas not negative."""
    check_id(f"{field}plan_id", plan.plan_id)
    seen: set[str] = set()
    for i, f in enumerate(plan.features):
        check_id(f"{field}features[{i}].name", f.name)
        if f.name in seen:
            raise InvalidArgument(f"{field}features[{i}].name", f"duplicate feature {f.name!r}")
        seen.add(f.name)
        if f.quota < 0:
            raise InvalidArgument(f"{field}features[{i}].quota", "must not be negative")
    return plan


@dataclass(frozen=True, slots=True)
class Entitlement:
    decision: Decision
    reason: Reason
    message: str
    remaining: int = -1  # -1: not metered
    quota: int = 0
    resets_at: datetime | None = None
    over_soft_limit: bool = False
    duplicate: bool = False

    @property
    def allowed(self) -> bool:
        return self.decision is Decision.ALLOW


@dataclass(frozen=True, slots=True)
class Consumed:
    """What a consumption of a metered feature did, and the units used in its window."""

    status: ConsumeStatus
    used: int


def not_entitled(feature: str, why: str) -> Entitlement:
    return Entitlement(Decision.DENY, Reason.FEATURE_NOT_ENTITLED, f"feature {feature!r}: {why}")


def resolve(plan: Plan | None, plan_id: str, feature: str) -> Feature | Entitlement:
    """The feature definition, or the refusal when the account's plan does not name it."""
    if not plan_id:
        return not_entitled(feature, "the account has no plan")
    if plan is None:
        return not_entitled(feature, f"plan {plan_id!r} does not exist")
    found = plan.feature(feature)
    if found is None:
        return not_entitled(feature, f"not in plan {plan_id!r}")
    return found


def evaluate(feature: Feature, used: int, now: datetime, *, consumed: bool = False,
             refused: bool = False, duplicate: bool = False) -> Entitlement:
    """The verdict with `used` units counted in the window holding `now`.

    A check (neither flag) is refused under a hard limit once the quota is used up, since the
    next unit could not be consumed; a consumption that went through (`consumed`) or a replayed
    one (`duplicate`) is allowed; `refused` is a consumption the hard limit turned away.
    """
    if not feature.metered:
        return Entitlement(Decision.ALLOW, Reason.OK, f"feature {feature.name!r} entitled")
    _, resets_at = window(feature.period, now)
    remaining = max(feature.quota - used, 0)
    hard = feature.limit is LimitMode.HARD
    if refused or (hard and not consumed and not duplicate and used >= feature.quota):
        when = "never resets" if resets_at is None else f"resets {resets_at:%Y-%m-%d %H:%M} UTC"
        return Entitlement(
            Decision.DENY, Reason.QUOTA_EXHAUSTED,
            f"feature {feature.name!r}: quota of {feature.quota} exhausted; {when}",
            remaining=remaining, quota=feature.quota, resets_at=resets_at, duplicate=duplicate)
    over = not hard and used > feature.quota
    msg = (f"feature {feature.name!r}: {used - feature.quota} over the soft limit" if over
           else f"feature {feature.name!r}: {remaining} of {feature.quota} left")
    return Entitlement(Decision.ALLOW, Reason.OK, msg, remaining=remaining, quota=feature.quota,
                       resets_at=resets_at, over_soft_limit=over, duplicate=duplicate)
