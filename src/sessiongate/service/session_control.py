"""SessionControl: the login check (the hot path), sessions, entitlements and usage."""

from __future__ import annotations

from typing import Any

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.api.v1 import session_control_pb2_grpc as pb_grpc
from sessiongate.domain.decision import Reason, decide
from sessiongate.domain.model import AccountState
from sessiongate.domain.validation import check_id
from sessiongate.service.convert import DECISION_TO_PB, REASON_TO_PB, STATE_TO_PB, ts
from sessiongate.service.lookup import lookup_account
from sessiongate.service.rpc import Servicer, rpc
from sessiongate.service.runtime import Runtime

SOURCE_TO_PB = {
    "near_cache": cpb.STATE_SOURCE_NEAR_CACHE,
    "redis": cpb.STATE_SOURCE_REDIS,
    "stale": cpb.STATE_SOURCE_STALE,
    "unavailable": cpb.STATE_SOURCE_FAILURE_MODE,
}
_OVERDUE = (AccountState.REMINDER, AccountState.GRACE)


class SessionControlServicer(Servicer, pb_grpc.SessionControlServicer):
    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt.auth, rt.observer)
        self.rt = rt

    @rpc("app")
    async def CheckSession(
        self, request: pb.CheckSessionRequest, context: Any
    ) -> pb.CheckSessionResponse:
        account_id = check_id("account_id", request.account_id)
        user_id = check_id("user_id", request.user_id)
        if request.feature:
            check_id("feature", request.feature)
        found = await lookup_account(self.rt, account_id)
        if found.source == "unavailable":
            return self._failure_mode(found.error)
        now = self.rt.clock.now()
        verdict = decide(found.account, user_id, now)
        resp = pb.CheckSessionResponse(
            decision=DECISION_TO_PB[verdict.decision],
            state=STATE_TO_PB[verdict.state],
            reason=REASON_TO_PB[verdict.reason],
            message=verdict.message,
            source=SOURCE_TO_PB[found.source],
            state_age_ms=found.age_ms,
        )
        account = found.account
        if account is not None:
            resp.account_version = account.version
            if verdict.state in _OVERDUE or verdict.state is AccountState.SUSPENDED:
                resp.amount_due_minor = account.balance_minor
                resp.currency = account.currency
                if account.suspends_at is not None and verdict.state in _OVERDUE:
                    resp.suspends_at.CopyFrom(ts(account.suspends_at))
        return resp

    def _failure_mode(self, error: str) -> pb.CheckSessionResponse:
        allow = self.rt.settings.failure_mode == "open"
        return pb.CheckSessionResponse(
            decision=cpb.DECISION_ALLOW if allow else cpb.DECISION_DENY,
            state=cpb.ACCOUNT_STATE_UNSPECIFIED,
            reason=REASON_TO_PB[Reason.BACKEND_UNAVAILABLE],
            message=f"account state unavailable ({error}); failure mode "
            f"{self.rt.settings.failure_mode}: {'allowed' if allow else 'denied'}",
            source=cpb.STATE_SOURCE_FAILURE_MODE,
        )
