"""SessionControl: the gRPC face of the login check (the hot path), sessions, entitlements
and usage. Each method reads its request, asks a use-case (usecases/sessions.py,
entitlements.py, usage.py) and writes the answer; CheckSession's answers are remembered
(service/answer_memo.py) and a request seen before is answered from its bytes.

CheckSession's costs: an allowed login of an account with no seat limit and no feature asked
for answers from the near-cache and queues its records on the login-records writer (no
Redis round trip); a seat-limited login adds exactly one Lua call (`take_seat.lua`); a
metered feature check adds one read of its counter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.api.v1 import session_control_pb2_grpc as pb_grpc
from sessiongate.domain.clock import to_ms
from sessiongate.domain.decision import Verdict
from sessiongate.domain.entitlements import Entitlement
from sessiongate.domain.model import AccountState
from sessiongate.domain.records import StateSource
from sessiongate.ports import Snapshot
from sessiongate.service.answer_memo import (
    AnswerMemo,
    Kept,
    Remembered,
    answer_cost,
    rememberable,
)
from sessiongate.service.bulk import RECORDED_KEY, BulkSlots
from sessiongate.service.convert import (
    ACCESS_TO_PB,
    DECISION_TO_PB,
    REASON_TO_PB,
    STATE_TO_PB,
    from_ts,
    lease_ts,
    ts,
)
from sessiongate.service.rpc import Servicer, rpc
from sessiongate.service.runtime import Runtime
from sessiongate.service.wire import Answered, Prebuilt, Sent, parse_check
from sessiongate.usecases.account_state import Lookup
from sessiongate.usecases.entitlements import Entitlements
from sessiongate.usecases.login import LoginCheck
from sessiongate.usecases.sessions import Sessions
from sessiongate.usecases.usage import Event, UsageRecorder

SOURCE_TO_PB = {
    StateSource.NEAR_CACHE: cpb.STATE_SOURCE_NEAR_CACHE,
    StateSource.REDIS: cpb.STATE_SOURCE_REDIS,
    StateSource.STALE: cpb.STATE_SOURCE_STALE,
    StateSource.UNAVAILABLE: cpb.STATE_SOURCE_FAILURE_MODE,
}
_OVERDUE = (AccountState.REMINDER, AccountState.GRACE)
# The method served raw (app.py): request bytes seen before are answered from the answer
# memo's bytes (service/answer_memo.py, service/wire.py).
RAW_METHOD = f"/{pb.DESCRIPTOR.services_by_name['SessionControl'].full_name}/CheckSession"


def usage_event(e: pb.UsageEvent, size: int = 0) -> Event:
    """A usage event's message as the use-case reads it (a time it cannot read: the
    reason, raised in its turn by the validation)."""
    occurred = unreadable = None
    if e.HasField("occurred_at"):
        try:
            occurred = from_ts(e.occurred_at)
        except ValueError as exc:
            unreadable = str(exc)
    return Event(e.event_id, e.account_id, e.user_id, e.feature, e.quantity, occurred,
                 e.attributes, unreadable, size)


def sized_event(e: pb.UsageEvent) -> Event:
    """`usage_event` with its size as received (a bulk call's chunks are bounded by it)."""
    return usage_event(e, e.ByteSize())


class SessionControlServicer(Servicer, pb_grpc.SessionControlServicer):
    def __init__(self, rt: Runtime, answers: AnswerMemo, sessions: Sessions,
                 entitlements: Entitlements, usage: UsageRecorder) -> None:
        super().__init__(rt.auth, rt.observer)
        self.answers = answers  # CheckSession's remembered answers
        self.sessions = sessions
        self.entitlements = entitlements
        self.usage = usage
        self.bulk_slots = BulkSlots()
        self._opener = sessions.open_unlimited  # bound once: the raw path passes it per call

    def _remembered_answer(self, raw: Any) -> tuple[bytes, Answered] | None:
        """CheckSession's hot path, tried by the wrapper before the method (no coroutine):
        for request bytes parsed before (`RAW_METHOD`), the remembered answer's bytes and
        what the metrics read of them; None when there is none (the method then parses and
        answers). A login of an account without a seat limit opens its session here
        (`Sessions.open_unlimited`), appended to the remembered bytes."""
        return self.answers.sent(raw, self._opener) if raw.__class__ is bytes else None

    @rpc("app", fast=_remembered_answer)
    async def CheckSession(  # type: ignore[override]  # served raw: bytes in, `Sent` out
        self, request: pb.CheckSessionRequest | bytes, context: Any
    ) -> pb.CheckSessionResponse | Sent:
        raw = None
        if request.__class__ is bytes:  # served raw (app.py): parsed here, unless seen before
            raw = request
            known = self.answers.base_login(raw)
            if known is not None:  # a seat-limited login (the fast path opens the others')
                asked, base, age_ms, snapshot = known
                return await self._open_remembered(asked.account_id, asked.user_id, base,
                                                   age_ms, snapshot)
            request = parse_check(raw)
        assert isinstance(request, pb.CheckSessionRequest)
        if not request.feature and not request.no_session:  # an allowed login remembered
            got = self.answers.remembered(request.account_id, (request.user_id, Kept.BASE))
            if got is not None:
                return await self._open_remembered(request.account_id, request.user_id, *got)
        resp = await self._check_session(request)
        if raw is not None and not request.feature:  # the ids were valid: remember the bytes
            self.answers.remember_request(raw, request)
        return resp

    async def _open_remembered(self, account_id: str, user_id: str, base: Remembered,
                               age_ms: int, snapshot: Snapshot
                               ) -> pb.CheckSessionResponse | Sent:
        """A login whose answer without its session is remembered (`base`): only the
        session to open, its fields appended to the remembered bytes (`Sent`: no message
        built, none serialized: docs/performance.md, "Seat-limited login answered raw")."""
        account = snapshot.account
        assert account is not None  # an allowed verdict is of a known account
        opened = await self.sessions.reopen(account, account_id, user_id, base.verdict)
        if opened.session is None:
            if opened.failed:
                return self._failure_response(opened.verdict)
            return self._build_response(opened.verdict,  # all seats taken
                                        Lookup(account, StateSource.NEAR_CACHE, age_ms))
        return Sent(*base.answer.with_session(age_ms, *opened.session))

    async def _check_session(self, request: pb.CheckSessionRequest
                             ) -> pb.CheckSessionResponse:
        got = await self.sessions.login(request.account_id, request.user_id, request.feature,
                                        request.no_session)
        if got.failed:
            return self._failure_response(got.verdict)
        assert got.checked is not None
        resp = self._verdict_response(request, got.checked, got.verdict)  # + session, quota
        if got.session is not None:
            session_id, expires = got.session
            resp.session_id = session_id
            resp.session_expires_at.CopyFrom(lease_ts(expires))
        ent = got.entitlement
        if ent is not None and ent.remaining >= 0:
            resp.quota_remaining = ent.remaining
            if ent.resets_at is not None:
                resp.quota_resets_at.CopyFrom(ts(ent.resets_at))
        return resp

    def _verdict_response(self, request: pb.CheckSessionRequest, checked: LoginCheck,
                          verdict: Verdict) -> pb.CheckSessionResponse:
        """The response for `verdict`, the login check's `checked` as answered (without a
        session or quota). When `rememberable`, a copy of the one remembered for its
        snapshot (made and kept the first time): only the state's age differs."""
        found = checked.lookup
        kept = rememberable(checked, verdict, feature=bool(request.feature),
                            no_session=request.no_session)
        if kept is None or checked.snapshot is None:
            return self._build_response(verdict, found)
        key = (request.user_id, kept)
        known = self.answers.get(checked.snapshot, request.account_id, key)
        if known is not None:
            resp = pb.CheckSessionResponse()
            resp.CopyFrom(known.answer.message)
            resp.state_age_ms = found.age_ms
            return resp
        resp = self._build_response(verdict, found)
        value = Remembered(Prebuilt.of(resp), verdict)
        self.answers.keep(checked.snapshot, request.account_id, key, value,
                          answer_cost(request.user_id, value))
        return resp

    def _build_response(self, verdict: Verdict, found: Lookup) -> pb.CheckSessionResponse:
        resp = pb.CheckSessionResponse(
            decision=DECISION_TO_PB[verdict.decision],
            state=STATE_TO_PB[verdict.state],
            reason=REASON_TO_PB[verdict.reason],
            message=verdict.message,
            source=SOURCE_TO_PB[found.source],
            state_age_ms=found.age_ms,
            access=ACCESS_TO_PB[verdict.access],
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

    @staticmethod
    def _failure_response(v: Verdict) -> pb.CheckSessionResponse:
        """The failure mode's answer (`Login.failed`): no state, no account."""
        return pb.CheckSessionResponse(
            decision=DECISION_TO_PB[v.decision],
            state=cpb.ACCOUNT_STATE_UNSPECIFIED,
            reason=REASON_TO_PB[v.reason],
            message=v.message,
            source=cpb.STATE_SOURCE_FAILURE_MODE,
            access=ACCESS_TO_PB[v.access],
        )

    # Sessions

    @rpc("app")
    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatResponse:
        verdict, account, expires = await self.sessions.heartbeat(request.session_id,
                                                                  request.feature)
        resp = pb.HeartbeatResponse(
            decision=DECISION_TO_PB[verdict.decision], state=STATE_TO_PB[verdict.state],
            reason=REASON_TO_PB[verdict.reason], message=verdict.message,
            access=ACCESS_TO_PB[verdict.access])
        if expires is not None:
            resp.expires_at.CopyFrom(lease_ts(to_ms(expires)))
        if account is not None and account.suspends_at is not None and verdict.state in _OVERDUE:
            resp.suspends_at.CopyFrom(ts(account.suspends_at))
        return resp

    @rpc("app")
    async def EndSession(self, request: pb.EndSessionRequest,
                         context: Any) -> pb.EndSessionResponse:
        return pb.EndSessionResponse(ended=await self.sessions.end(request.session_id))

    # Entitlements

    async def _entitlement_call(self, request: pb.EntitlementRequest,
                                consume: bool) -> pb.EntitlementResponse:
        ent: Entitlement = await self.entitlements.check(
            request.account_id, request.user_id, request.feature, request.quantity,
            request.event_id, consume=consume)
        resp = pb.EntitlementResponse(
            decision=DECISION_TO_PB[ent.decision], reason=REASON_TO_PB[ent.reason],
            message=ent.message, remaining=ent.remaining, quota=ent.quota,
            over_soft_limit=ent.over_soft_limit, duplicate=ent.duplicate)
        if ent.resets_at is not None:
            resp.resets_at.CopyFrom(ts(ent.resets_at))
        return resp

    @rpc("app")
    async def CheckEntitlement(self, request: pb.EntitlementRequest,
                               context: Any) -> pb.EntitlementResponse:
        return await self._entitlement_call(request, consume=False)

    @rpc("app")
    async def ConsumeEntitlement(self, request: pb.EntitlementRequest,
                                 context: Any) -> pb.EntitlementResponse:
        return await self._entitlement_call(request, consume=True)

    # Usage

    @rpc("app")
    async def RecordUsage(self, request: pb.UsageEvent, context: Any) -> pb.RecordUsageResponse:
        return pb.RecordUsageResponse(
            duplicate=not await self.usage.record(usage_event(request)))

    @rpc("app")
    async def RecordUsageStream(self, request: AsyncIterator[pb.UsageEvent],
                                context: Any) -> pb.RecordUsageBatchResponse:
        """Validated and written in chunks (usecases/usage.py): all or nothing on validation
        for a stream of up to a chunk; a longer one is written chunk by chunk, and a call
        that fails says in its trailing metadata how many of its first events are recorded
        (`bulk.py`)."""
        async with self.bulk_slots.slot():
            return await self._record_all(request, context)

    @rpc("app")
    async def RecordUsageBatches(self, request: AsyncIterator[pb.UsageBatch],
                                 context: Any) -> pb.RecordUsageBatchResponse:
        """RecordUsageStream with many events per message (a message costs more than an
        event); events are numbered across messages in error messages, as there."""
        async def events() -> AsyncIterator[pb.UsageEvent]:
            async for batch in request:
                for event in batch.events:
                    yield event

        async with self.bulk_slots.slot():
            return await self._record_all(events(), context)

    async def _record_all(self, events: AsyncIterator[pb.UsageEvent], context: Any
                          ) -> pb.RecordUsageBatchResponse:
        def stopped(recorded: int) -> None:
            context.set_trailing_metadata(((RECORDED_KEY, str(recorded)),))

        accepted, duplicates = await self.usage.record_stream(events, sized_event, stopped)
        return pb.RecordUsageBatchResponse(accepted=accepted, duplicates=duplicates)
