"""Accounts methods of the dunning engine: policies, overrides, history, preview (issue #3)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.domain.errors import InvalidArgument, NotFound
from sessiongate.domain.model import AccountState
from sessiongate.domain.policy import DunningPolicy, DunningStage, new_policy
from sessiongate.domain.validation import check_id
from sessiongate.service.billing import timestamp_field
from sessiongate.service.convert import (
    ACCESS_TO_PB,
    STATE_TO_PB,
    access_from_pb,
    account_to_pb,
    duration,
    state_from_pb,
    ts,
)
from sessiongate.service.rpc import rpc
from sessiongate.service.runtime import Runtime
from sessiongate.usecases.accounts import AccountAdmin
from sessiongate.usecases.policies import PolicyAdmin

MAX_REASON = 500
MAX_DURATION_SECONDS = 315_576_000_000  # the proto Duration range


def _duration(field: str, d: Duration) -> timedelta:
    if abs(d.seconds) > MAX_DURATION_SECONDS or abs(d.nanos) >= 10**9:
        raise InvalidArgument(field, "out of the Duration range")
    if d.seconds < 0 or d.nanos < 0:
        raise InvalidArgument(field, "must not be negative")
    return timedelta(seconds=d.seconds, microseconds=d.nanos // 1000)


def policy_from_pb(msg: pb.DunningPolicy) -> DunningPolicy:
    stages = []
    for i, s in enumerate(msg.stages):
        state = state_from_pb(f"stages[{i}].state", s.state)
        if state is None:
            raise InvalidArgument(f"stages[{i}].state", "must be set")
        after = _duration(f"stages[{i}].after", s.after)
        access = access_from_pb(f"stages[{i}].access", s.access)
        stages.append(DunningStage(state, after, s.min_balance_minor, access))
    interval = None
    if msg.HasField("reminder_interval"):
        interval = _duration("reminder_interval", msg.reminder_interval)
        if interval == timedelta(0):
            raise InvalidArgument("reminder_interval", "must be at least one second")
    return new_policy(msg.policy_id, stages, interval, msg.tolerance_minor)


def policy_to_pb(p: DunningPolicy) -> pb.DunningPolicy:
    return pb.DunningPolicy(
        policy_id=p.policy_id,
        stages=[pb.DunningStage(state=STATE_TO_PB[s.state], after=duration(s.after),
                                min_balance_minor=s.min_balance_minor,
                                access=ACCESS_TO_PB[s.access]) for s in p.stages],
        reminder_interval=duration(p.reminder_interval),
        tolerance_minor=p.tolerance_minor,
    )


def _history_to_pb(e: dict[str, Any]) -> pb.Transition:
    t = pb.Transition(cause=e.get("cause", ""), actor=e.get("actor", ""),
                      event_id=e.get("event_id") or "")
    for name, key in (("from_state", "from"), ("to_state", "to")):
        if e.get(key):
            setattr(t, name, STATE_TO_PB[AccountState(e[key])])
    if e.get("at"):
        t.at.CopyFrom(ts(datetime.fromisoformat(e["at"]).astimezone(UTC)))
    return t


class PolicyMethods:
    """Mixed into AccountsServicer; `self.rt` is the shared runtime, `self.admin` and
    `self.policy_admin` the use-cases of the writes."""

    rt: Runtime
    admin: AccountAdmin
    policy_admin: PolicyAdmin

    @rpc("admin")
    async def UpsertPolicy(self, request: pb.DunningPolicy, context: Any) -> pb.DunningPolicy:
        return policy_to_pb(await self.policy_admin.upsert(policy_from_pb(request)))

    @rpc("admin")
    async def GetPolicy(self, request: pb.GetPolicyRequest, context: Any) -> pb.DunningPolicy:
        pid = check_id("policy_id", request.policy_id)
        policy = await self.rt.policies.get(pid)
        if policy is None:
            raise NotFound(f"policy_id: no policy {pid!r}")
        return policy_to_pb(policy)

    @rpc("admin")
    async def OverrideState(self, request: pb.OverrideStateRequest, context: Any) -> pb.Account:
        aid = check_id("account_id", request.account_id)
        state = state_from_pb("state", request.state)
        reason = request.reason.strip()
        if state is not None and not reason:
            raise InvalidArgument("reason", "must not be empty when setting an override")
        if len(reason) > MAX_REASON or not reason.isprintable():
            raise InvalidArgument("reason", f"at most {MAX_REASON} printable characters")
        actor = check_id("actor", request.actor, required=False) or "admin"
        expires_at = timestamp_field(request, "expires_at")
        now = self.rt.clock.now()
        if expires_at is not None and expires_at <= now:
            raise InvalidArgument("expires_at", "must be in the future")
        saved = await self.admin.override(aid, state, reason, expires_at, actor)
        return account_to_pb(saved, now)

    @rpc("admin")
    async def GetAccountHistory(
        self, request: pb.GetAccountHistoryRequest, context: Any
    ) -> pb.GetAccountHistoryResponse:
        aid = check_id("account_id", request.account_id)
        if request.limit < 0:
            raise InvalidArgument("limit", "must not be negative")
        if await self.rt.accounts.get(aid) is None:
            raise NotFound(f"account_id: no account {aid!r}")
        entries = await self.rt.accounts.history(aid, request.limit)
        return pb.GetAccountHistoryResponse(transitions=[_history_to_pb(e) for e in entries])

    @rpc("admin")
    async def PreviewDunning(
        self, request: pb.PreviewDunningRequest, context: Any
    ) -> pb.PreviewDunningResponse:
        aid = check_id("account_id", request.account_id)
        timeline, balance_minor = await self.rt.engine.preview(aid)
        return pb.PreviewDunningResponse(
            timeline=[pb.TimelineEntry(state=STATE_TO_PB[s], at=ts(at)) for s, at in timeline],
            balance_minor=balance_minor,
        )
