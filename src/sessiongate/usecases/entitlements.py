"""Entitlements: what an account's plan grants (CheckEntitlement, ConsumeEntitlement, a login
asking for a feature), and the features that stay open while an account is restricted for
non-payment (domain/restricted.py)."""

from __future__ import annotations

from datetime import datetime

import structlog

from sessiongate.domain.clock import Clock
from sessiongate.domain.decision import Verdict
from sessiongate.domain.entitlements import Entitlement, Feature, evaluate, resolve
from sessiongate.domain.errors import AlreadyExists, BackendUnavailable, InvalidArgument
from sessiongate.domain.model import Account
from sessiongate.domain.records import ConsumeStatus, StateSource
from sessiongate.domain.restricted import lift_for_feature
from sessiongate.domain.validation import check_id
from sessiongate.ports import Plans
from sessiongate.usecases.login import LoginCheck, LoginChecker

log = structlog.get_logger(__name__)

# Larger quantities are surely a bug, and would risk overflowing Redis's 64-bit counters.
MAX_QUANTITY = 10**12


def check_quantity(field: str, value: int) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    if value > MAX_QUANTITY:
        raise InvalidArgument(field, f"larger than {MAX_QUANTITY}")
    return value


def known_state(checked: LoginCheck) -> LoginCheck:
    """The login check for calls that cannot answer by failure mode: UNAVAILABLE instead."""
    if checked.lookup.source is StateSource.UNAVAILABLE:
        log.warning("account state unavailable", error=checked.lookup.error)
        raise BackendUnavailable("account state unavailable")
    return checked


class Entitlements:
    """Reads plans and quota counters through the `Plans` port; its calls raise one of
    `unavailable` when the backend cannot answer."""

    def __init__(self, plans: Plans, logins: LoginChecker, clock: Clock) -> None:
        self.plans = plans
        self.logins = logins
        self.clock = clock
        self.unavailable = plans.unavailable

    async def feature(self, account: Account, feature: str) -> Feature | Entitlement:
        """The plan's feature, or the refusal when the plan does not name it."""
        plan = await self.plans.get(account.plan_id) if account.plan_id else None
        return resolve(plan, account.plan_id, feature)

    async def lift(self, account: Account, feature: str, verdict: Verdict) -> Verdict:
        """`verdict` lifted to FULL for a feature that stays available while the account is
        restricted for non-payment (domain/restricted.py); unchanged otherwise."""
        found = await self.feature(account, feature)
        return lift_for_feature(verdict, found if isinstance(found, Feature) else None)

    async def entitlement(self, account: Account, feature: str, now: datetime) -> Entitlement:
        """Whether a login may use `feature` now (a metered one: its counter read)."""
        found = await self.feature(account, feature)
        if isinstance(found, Entitlement):
            return found
        used = await self.plans.used(account.account_id, found, now) if found.metered else 0
        return evaluate(found, used, now)

    async def check(self, account_id: str, user_id: str, feature: str, quantity: int,
                    event_id: str, *, consume: bool) -> Entitlement:
        """CheckEntitlement (`consume` False) and ConsumeEntitlement: the login check first
        (a denial answers, with no quota), then the plan and, if metered, the counter."""
        account_id = check_id("account_id", account_id)
        user_id = check_id("user_id", user_id)
        feature = check_id("feature", feature)
        quantity = check_quantity("quantity", quantity) or 1
        event_id = check_id("event_id", event_id, required=False)
        checked = known_state(await self.logins.check(account_id, user_id))
        verdict, account = checked.verdict, checked.lookup.account
        now = self.clock.now()
        if account is not None and verdict.restricted_by_payment:
            verdict = await self.lift(account, feature, verdict)
        if not verdict.allowed or account is None:
            return Entitlement(verdict.decision, verdict.reason, verdict.message)
        definition = await self.feature(account, feature)
        if isinstance(definition, Entitlement):
            return definition
        if not definition.metered:
            return evaluate(definition, 0, now)
        if not consume:
            return evaluate(definition, await self.plans.used(account_id, definition, now), now)
        done = await self.plans.consume(account_id, definition, quantity, event_id, now,
                                        user_id)
        if done.status is ConsumeStatus.CONFLICT:
            raise AlreadyExists("event_id", f"{event_id!r} was consumed with other content"
                                " (an event id names one consumption: use a new id)")
        return evaluate(definition, done.used, now, consumed=done.status is ConsumeStatus.OK,
                        refused=done.status is ConsumeStatus.EXHAUSTED,
                        duplicate=done.status is ConsumeStatus.DUPLICATE)
