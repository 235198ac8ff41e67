"""Accounts methods for plans/entitlements and usage summaries (issue #4)."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.domain.entitlements import Feature, FeatureKind, LimitMode, Plan, check_plan
from sessiongate.domain.errors import InvalidArgument, NotFound, OutOfRange
from sessiongate.domain.periods import ResetPeriod, month_start, months_before, parse_month
from sessiongate.domain.usage_summary import summarize
from sessiongate.domain.validation import check_id, check_non_negative
from sessiongate.service.convert import summary_to_pb
from sessiongate.service.rpc import rpc
from sessiongate.service.runtime import Runtime
from sessiongate.store.usage import SEAT_LOG_MONTHS

MAX_UNIT_PRICE_MINOR = 10**12
_KIND = {pb.FEATURE_KIND_BOOLEAN: FeatureKind.BOOLEAN, pb.FEATURE_KIND_METERED: FeatureKind.METERED}
_PERIOD = {pb.RESET_PERIOD_DAY: ResetPeriod.DAY, pb.RESET_PERIOD_WEEK: ResetPeriod.WEEK,
           pb.RESET_PERIOD_MONTH: ResetPeriod.MONTH, pb.RESET_PERIOD_NEVER: ResetPeriod.NEVER}
_LIMIT = {pb.LIMIT_MODE_HARD: LimitMode.HARD, pb.LIMIT_MODE_SOFT: LimitMode.SOFT}


def _enum(field: str, value: int, table: dict[Any, Any], default: Any) -> Any:
    if value == 0:
        return default
    if value not in table:
        raise InvalidArgument(field, f"unknown value {value}")
    return table[value]


def plan_from_pb(msg: pb.Plan) -> Plan:
    """UNSPECIFIED kind is boolean; a metered feature defaults to a monthly hard limit."""
    features = []
    for i, f in enumerate(msg.features):
        name = f"features[{i}]."
        kind = _enum(name + "kind", f.kind, _KIND, FeatureKind.BOOLEAN)
        period = _enum(name + "period", f.period, _PERIOD, ResetPeriod.MONTH)
        limit = _enum(name + "limit", f.limit, _LIMIT, LimitMode.HARD)
        features.append(Feature(f.name, kind, f.quota, period, limit,
                                f.available_while_restricted))
    return check_plan(Plan(msg.plan_id, tuple(features)))


def plan_to_pb(plan: Plan) -> pb.Plan:
    kinds = {v: k for k, v in _KIND.items()}
    periods = {v: k for k, v in _PERIOD.items()}
    limits = {v: k for k, v in _LIMIT.items()}
    return pb.Plan(plan_id=plan.plan_id, features=[
        pb.Feature(name=f.name, kind=kinds[f.kind], quota=f.quota if f.metered else 0,
                   period=periods[f.period] if f.metered else pb.RESET_PERIOD_UNSPECIFIED,
                   limit=limits[f.limit] if f.metered else pb.LIMIT_MODE_UNSPECIFIED,
                   available_while_restricted=f.available_while_restricted)
        for f in plan.features])


class PlanMethods:
    """Mixed into AccountsServicer; `self.rt` is the shared runtime."""

    rt: Runtime

    @rpc("admin")
    async def UpsertPlan(self, request: pb.Plan, context: Any) -> pb.Plan:
        plan = plan_from_pb(request)
        await self.rt.plans.put(plan)
        return plan_to_pb(plan)

    @rpc("admin")
    async def GetPlan(self, request: pb.GetPlanRequest, context: Any) -> pb.Plan:
        plan_id = check_id("plan_id", request.plan_id)
        plan = await self.rt.plans.get(plan_id)
        if plan is None:
            raise NotFound(f"plan_id: no plan {plan_id!r}")
        return plan_to_pb(plan)

    @rpc("admin")
    async def GetUsageSummary(self, request: pb.GetUsageSummaryRequest,
                              context: Any) -> pb.UsageSummary:
        account_id = check_id("account_id", request.account_id)
        now = self.rt.clock.now()
        start, end = parse_month("period", request.period, now)
        price = check_non_negative("seat_unit_price_minor", request.seat_unit_price_minor)
        if price > MAX_UNIT_PRICE_MINOR:  # charges must fit the int64 fields
            raise InvalidArgument("seat_unit_price_minor", f"larger than {MAX_UNIT_PRICE_MINOR}")
        oldest = months_before(month_start(now.astimezone(UTC)), SEAT_LOG_MONTHS - 1)
        if start < oldest:
            raise OutOfRange("period", f"{request.period} is older than the {SEAT_LOG_MONTHS}"
                             " months whose seats are kept")
        if await self.rt.accounts.get(account_id) is None:
            raise NotFound(f"account_id: no account {account_id!r}")
        data = await self.rt.usage.month(
            account_id, request.period, start, end)
        # Decoding the seat log and the proration are pure and grow with the roster: in a
        # worker thread, so that the loop keeps answering logins meanwhile.
        return summary_to_pb(await asyncio.to_thread(
            summarize, account_id, request.period, start, end, now, data, price))
