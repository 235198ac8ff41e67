"""SessionControl: the login check (the hot path), sessions, entitlements and usage.

CheckSession's costs: an allowed login of an account with no seat limit and no feature asked
for answers from the near-cache and queues its records on the batch writer (no Redis round
trip); a seat-limited login adds exactly one Lua call (`take_seat.lua`); a metered feature
check adds one read of its counter.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import structlog
from redis.exceptions import RedisError

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as pb
from sessiongate.api.v1 import session_control_pb2_grpc as pb_grpc
from sessiongate.domain.decision import Decision, Reason, Verdict
from sessiongate.domain.entitlements import Entitlement, Feature, evaluate, resolve
from sessiongate.domain.errors import (
    AlreadyExists,
    BackendUnavailable,
    InvalidArgument,
    NotFound,
    SessionGateError,
)
from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.records import ConsumeStatus, StateSource
from sessiongate.domain.restricted import lift_for_feature
from sessiongate.domain.sessions import new_session, parse_session_id
from sessiongate.domain.validation import check_id, is_plain_id
from sessiongate.ports import Snapshot
from sessiongate.service.answer_memo import (
    AnswerMemo,
    Kept,
    Remembered,
    answer_cost,
    rememberable,
)
from sessiongate.service.bulk import CHUNK_BYTES, CHUNK_EVENTS, RECORDED_KEY, BulkSlots
from sessiongate.service.convert import (
    ACCESS_TO_PB,
    DECISION_TO_PB,
    REASON_TO_PB,
    STATE_TO_PB,
    from_ts,
    ts,
)
from sessiongate.service.rpc import Servicer, rpc
from sessiongate.service.runtime import Runtime
from sessiongate.service.wire import Answered, Prebuilt, parse_check
from sessiongate.store.accounts import IDEMPOTENCY_RETENTION_MS
from sessiongate.store.batch import BatchWriter
from sessiongate.store.scripts import Scripts
from sessiongate.store.sessions import SessionStore
from sessiongate.store.usage import (
    ConflictingDuplicates,
    Unrecorded,
    UsageRecord,
    UsageStore,
)
from sessiongate.usecases.account_state import Lookup
from sessiongate.usecases.login import LoginCheck, failure_verdict

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

# Usage events may be stamped this far ahead of our clock (clock skew between hosts).
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_ATTRIBUTES = 32
MAX_ATTRIBUTE_LENGTH = 256
MAX_STREAM_EVENTS = 10_000

log = structlog.get_logger(__name__)


# Larger quantities are surely a bug, and would risk overflowing Redis's 64-bit counters.
MAX_QUANTITY = 10**12


def _window(now: datetime) -> tuple[datetime, datetime, datetime]:
    """(now, earliest, latest) `occurred_at` a usage event may carry, for one call."""
    return (now, now - timedelta(milliseconds=IDEMPOTENCY_RETENTION_MS),
            now + MAX_FUTURE_SKEW)


def check_quantity(field: str, value: int) -> int:
    if value < 0:
        raise InvalidArgument(field, "must not be negative")
    if value > MAX_QUANTITY:
        raise InvalidArgument(field, f"larger than {MAX_QUANTITY}")
    return value


class SessionControlServicer(Servicer, pb_grpc.SessionControlServicer):
    def __init__(self, rt: Runtime, answers: AnswerMemo) -> None:
        super().__init__(rt.auth, rt.observer)
        self.rt = rt
        self.answers = answers  # CheckSession's remembered answers
        self.batch = BatchWriter(rt.transport)  # registered as an app component by app.py
        self.sessions = SessionStore(rt.transport, rt.scripts)
        self.plans = rt.plans
        self.logins = rt.logins
        self.usage = UsageStore(rt.transport, rt.scripts)
        # Bulk streams write on a transport of their own (`client.transport(bulk=True)`).
        bulk = rt.bulk_transport
        self.bulk_usage = (self.usage if bulk is None else UsageStore(bulk, Scripts(bulk)))
        self.bulk_slots = BulkSlots()
        self._ttl = timedelta(seconds=rt.settings.session_ttl)
        self._opener = self._open_unlimited  # bound once: the raw path passes it per call

    def _remembered_answer(self, raw: Any) -> tuple[bytes, Answered] | None:
        """CheckSession's hot path, tried by the wrapper before the method (no coroutine):
        for request bytes parsed before (`RAW_METHOD`), the remembered answer's bytes and
        what the metrics read of them; None when there is none (the method then parses and
        answers). A login opens its session here (`_open_unlimited`), appended to the
        remembered bytes."""
        return self.answers.sent(raw, self._opener) if raw.__class__ is bytes else None

    def _open_unlimited(self, account: Account, account_id: str, user_id: str
                        ) -> tuple[str, datetime] | None:
        """The session of a login answered from the memo, as the method opens it
        (`_queue_session`); None for a seat-limited account: its seat is one Lua call,
        awaited in the method."""
        if account.seat_limit > 0:
            return None
        return self._queue_session(account_id, user_id, self.rt.clock.now())

    @rpc("app", fast=_remembered_answer)
    async def CheckSession(
        self, request: pb.CheckSessionRequest | bytes, context: Any
    ) -> pb.CheckSessionResponse:
        raw = None
        if request.__class__ is bytes:  # served raw (app.py): parsed here
            raw = request
            request = parse_check(raw)
        assert isinstance(request, pb.CheckSessionRequest)
        if not request.feature and not request.no_session:  # an allowed login remembered
            got = self.answers.remembered(request.account_id, (request.user_id, Kept.BASE))
            if got is not None:
                return await self._open_remembered(request, *got)
        resp = await self._check_session(request)
        if raw is not None and not request.feature:  # the ids were valid: remember the bytes
            self.answers.remember_request(raw, request)
        return resp

    async def _open_remembered(self, request: pb.CheckSessionRequest, base: Remembered,
                               age_ms: int, snapshot: Snapshot) -> pb.CheckSessionResponse:
        """A login whose answer without its session is remembered (`base`): only the
        session to open, as `_check_session` opens it."""
        account = snapshot.account
        assert account is not None  # an allowed verdict is of a known account
        now = self.rt.clock.now()
        try:
            session_id, expires = await self._open_session(
                account, request.account_id, request.user_id, now)
        except (RedisError, OSError) as exc:
            return self._failure_mode(str(exc) or type(exc).__name__)
        if session_id is None:  # all seats taken
            return self._build_response(self._seat_refusal(account, base.verdict),
                                        Lookup(account, StateSource.NEAR_CACHE, age_ms))
        resp = pb.CheckSessionResponse()
        resp.CopyFrom(base.answer.message)
        resp.state_age_ms = age_ms
        resp.session_id = session_id
        resp.session_expires_at.CopyFrom(ts(expires))
        return resp

    async def _open_session(self, account: Account, account_id: str, user_id: str,
                            now: datetime) -> tuple[str | None, datetime]:
        """Open a session of an allowed login: (its id, None if every seat is taken; its
        expiry). A seat-limited account's seat and login records in one Lua call; otherwise
        the records go to the batch writer (no round trip)."""
        if account.seat_limit <= 0:
            return self._queue_session(account_id, user_id, now)
        ref = new_session(account_id, user_id)
        expires = now + self._ttl
        seat = await self.sessions.take(ref, now, expires, account.seat_limit,
                                        login=True)  # its records too, if admitted
        if not seat.admitted:
            return None, expires
        return ref.session_id, expires

    def _queue_session(self, account_id: str, user_id: str, now: datetime
                       ) -> tuple[str, datetime]:
        """Open a session of an allowed login of an account without seat limit: its records
        queued on the batch writer (no round trip). (Its id, its expiry.)"""
        ref = new_session(account_id, user_id)
        expires = now + self._ttl
        self.batch.login(ref, now, expires)
        return ref.session_id, expires

    @staticmethod
    def _seat_refusal(account: Account, verdict: Verdict) -> Verdict:
        return Verdict(Decision.DENY, Reason.SEAT_LIMIT_REACHED, verdict.state,
                       f"all {account.seat_limit} seats of account {account.account_id!r}"
                       " are in use")

    async def _check_session(self, request: pb.CheckSessionRequest
                             ) -> pb.CheckSessionResponse:
        account_id = check_id("account_id", request.account_id)
        user_id = check_id("user_id", request.user_id)
        if request.feature:
            check_id("feature", request.feature)
        checked = await self.logins.check(account_id, user_id)
        found, verdict = checked.lookup, checked.verdict
        if found.source is StateSource.UNAVAILABLE:
            return self._failure_mode(found.error)
        account = found.account
        ent: Entitlement | None = None
        session_id = expires = None
        if request.feature and account is not None and verdict.restricted_by_payment:
            try:
                verdict = await self._lift(account, request.feature, verdict)
            except (RedisError, OSError) as exc:
                return self._failure_mode(str(exc) or type(exc).__name__)
        if not verdict.allowed or account is None or (request.no_session
                                                      and not request.feature):
            return self._verdict_response(request, checked, verdict)  # nothing to open or count
        now = self.rt.clock.now()
        try:
            if request.feature:  # allowed, with an account: the early return above
                async with asyncio.timeout(self.rt.settings.login_redis_timeout):
                    ent = await self._entitlement(account, request.feature, now)
                if not ent.allowed:
                    verdict = Verdict(Decision.DENY, ent.reason, verdict.state, ent.message)
            if verdict.allowed and not request.no_session:
                session_id, expires = await self._open_session(account, account_id, user_id,
                                                               now)
                if session_id is None:
                    verdict = self._seat_refusal(account, verdict)
        except (RedisError, OSError) as exc:
            return self._failure_mode(str(exc) or type(exc).__name__)
        resp = self._verdict_response(request, checked, verdict)  # + the session's fields
        if session_id is not None and expires is not None:
            resp.session_id = session_id
            resp.session_expires_at.CopyFrom(ts(expires))
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

    def _failure_mode(self, error: str) -> pb.CheckSessionResponse:
        v = failure_verdict(self.logins.failure_mode, error)
        return pb.CheckSessionResponse(
            decision=DECISION_TO_PB[v.decision],
            state=cpb.ACCOUNT_STATE_UNSPECIFIED,
            reason=REASON_TO_PB[v.reason],
            message=v.message,
            source=cpb.STATE_SOURCE_FAILURE_MODE,
            access=ACCESS_TO_PB[v.access],
        )

    async def _checked(self, account_id: str, user_id: str) -> tuple[Lookup, Verdict]:
        """The login verdict for calls that cannot answer by failure mode: UNAVAILABLE instead."""
        checked = await self.logins.check(account_id, user_id)
        if checked.lookup.source is StateSource.UNAVAILABLE:
            log.warning("account state unavailable", error=checked.lookup.error)
            raise BackendUnavailable("account state unavailable")
        return checked.lookup, checked.verdict

    # Sessions

    @rpc("app")
    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Any) -> pb.HeartbeatResponse:
        """Renew the lease (retaking the seat if it lapsed) and answer the current decision
        (for the session's `feature`, if given, as CheckSession answers it)."""
        ref = parse_session_id("session_id", request.session_id)
        feature = check_id("feature", request.feature, required=False)
        found, verdict = await self._checked(ref.account_id, ref.user_id)
        now = self.rt.clock.now()
        account = found.account
        if feature and account is not None and verdict.restricted_by_payment:
            verdict = await self._lift(account, feature, verdict)  # as CheckSession does
        expires = None
        if verdict.allowed and account is not None:
            expires = now + self._ttl
            seat = await self.sessions.take(ref, now, expires, account.seat_limit)
            if not seat.admitted:
                expires = None
                verdict = Verdict(Decision.DENY, Reason.SEAT_LIMIT_REACHED, verdict.state,
                                  "the session expired and every seat is taken")
        elif account is not None:
            await self.sessions.end(ref, now)  # denied: the seat goes back to the pool
        resp = pb.HeartbeatResponse(
            decision=DECISION_TO_PB[verdict.decision], state=STATE_TO_PB[verdict.state],
            reason=REASON_TO_PB[verdict.reason], message=verdict.message,
            access=ACCESS_TO_PB[verdict.access])
        if expires is not None:
            resp.expires_at.CopyFrom(ts(expires))
        if account is not None and account.suspends_at is not None and verdict.state in _OVERDUE:
            resp.suspends_at.CopyFrom(ts(account.suspends_at))
        return resp

    @rpc("app")
    async def EndSession(self, request: pb.EndSessionRequest,
                         context: Any) -> pb.EndSessionResponse:
        ref = parse_session_id("session_id", request.session_id)
        if self.batch.pending:
            await self.batch.flush()  # the session may still be queued (opened < 100 ms ago)
        return pb.EndSessionResponse(ended=await self.sessions.end(ref, self.rt.clock.now()))

    # Entitlements

    async def _feature(self, account: Account, feature: str) -> Feature | Entitlement:
        plan = await self.plans.get(account.plan_id) if account.plan_id else None
        return resolve(plan, account.plan_id, feature)

    async def _lift(self, account: Account, feature: str, verdict: Verdict) -> Verdict:
        """`verdict` lifted to FULL for a feature that stays available while the account is
        restricted for non-payment (domain/restricted.py); unchanged otherwise."""
        found = await self._feature(account, feature)
        return lift_for_feature(verdict, found if isinstance(found, Feature) else None)

    async def _entitlement(self, account: Account, feature: str, now: datetime) -> Entitlement:
        found = await self._feature(account, feature)
        if isinstance(found, Entitlement):
            return found
        used = await self.plans.used(account.account_id, found, now) if found.metered else 0
        return evaluate(found, used, now)

    async def _entitlement_call(self, request: pb.EntitlementRequest,
                                consume: bool) -> pb.EntitlementResponse:
        account_id = check_id("account_id", request.account_id)
        user_id = check_id("user_id", request.user_id)
        feature = check_id("feature", request.feature)
        quantity = check_quantity("quantity", request.quantity) or 1
        event_id = check_id("event_id", request.event_id, required=False)
        found, verdict = await self._checked(account_id, user_id)
        now = self.rt.clock.now()
        if found.account is not None and verdict.restricted_by_payment:
            verdict = await self._lift(found.account, feature, verdict)
        if not verdict.allowed or found.account is None:
            return pb.EntitlementResponse(decision=DECISION_TO_PB[verdict.decision],
                                          reason=REASON_TO_PB[verdict.reason],
                                          message=verdict.message, remaining=-1)
        definition = await self._feature(found.account, feature)
        if isinstance(definition, Entitlement):
            ent = definition
        elif not definition.metered:
            ent = evaluate(definition, 0, now)
        elif consume:
            done = await self.plans.consume(account_id, definition, quantity, event_id, now,
                                            user_id)
            if done.status is ConsumeStatus.CONFLICT:
                raise AlreadyExists("event_id", f"{event_id!r} was consumed with other content"
                                    " (an event id names one consumption: use a new id)")
            ent = evaluate(definition, done.used, now, consumed=done.status is ConsumeStatus.OK,
                           refused=done.status is ConsumeStatus.EXHAUSTED,
                           duplicate=done.status is ConsumeStatus.DUPLICATE)
        else:
            ent = evaluate(definition, await self.plans.used(account_id, definition, now), now)
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

    def _usage_record(self, e: pb.UsageEvent, window: tuple[datetime, datetime, datetime],
                      f: str = "") -> UsageRecord:
        """Validate one event (no I/O): nothing is written until every event of a call is
        valid. `window`: (now, earliest, latest) accepted `occurred_at`, made once per call.
        Field names (prefix `f`, e.g. `events[3].`) are built only for an error message."""
        now, earliest, latest = window
        event_id, account_id, user_id, feature = e.event_id, e.account_id, e.user_id, e.feature
        if not (is_plain_id(event_id) and is_plain_id(account_id) and is_plain_id(feature)
                and (not user_id or is_plain_id(user_id))):
            check_id(f + "event_id", event_id)
            check_id(f + "account_id", account_id)
            check_id(f + "user_id", user_id, required=False)
            check_id(f + "feature", feature)
        quantity = e.quantity
        if quantity < 0 or quantity > MAX_QUANTITY:
            check_quantity(f + "quantity", quantity)
        stated = True
        if e.HasField("occurred_at"):
            try:
                occurred = from_ts(e.occurred_at)
            except ValueError as exc:
                raise InvalidArgument(f + "occurred_at", str(exc)) from None
            if occurred > latest:
                raise InvalidArgument(f + "occurred_at",
                                      f"{occurred.isoformat()} is in the future")
            if occurred < earliest:
                raise InvalidArgument(f + "occurred_at", "older than the deduplication window")
        else:
            occurred = now
            stated = False
        attributes = e.attributes
        if attributes:
            if len(attributes) > MAX_ATTRIBUTES:
                raise InvalidArgument(f + "attributes", f"more than {MAX_ATTRIBUTES} entries")
            for k, v in attributes.items():
                check_id(f + "attributes", k)
                if len(v) > MAX_ATTRIBUTE_LENGTH or not v.isprintable():
                    raise InvalidArgument(f"{f}attributes[{k}]", "too long or not printable")
            return UsageRecord(event_id, account_id, user_id, feature, quantity, occurred,
                               dict(attributes), stated)
        return UsageRecord(event_id, account_id, user_id, feature, quantity, occurred,
                           stated_at=stated)

    async def _check_recordable(self, account_id: str, feature: str, f: str) -> None:
        """The account exists, and its plan (if any) has `feature`."""
        found = await self.rt.lookup.find(account_id)
        if found.source is StateSource.UNAVAILABLE:
            log.warning("account state unavailable", error=found.error)
            raise BackendUnavailable("account state unavailable")
        account = found.account
        if account is None:
            raise NotFound(f"{f}account_id: no account {account_id!r}")
        if account.plan_id:
            definition = await self._feature(account, feature)
            if isinstance(definition, Entitlement):
                raise InvalidArgument(f + "feature", definition.message)

    @rpc("app")
    async def RecordUsage(self, request: pb.UsageEvent, context: Any) -> pb.RecordUsageResponse:
        now = self.rt.clock.now()
        record = self._usage_record(request, _window(now))
        await self._check_recordable(record.account_id, record.feature, "")
        (recorded,) = await self.usage.record([record], now)
        return pb.RecordUsageResponse(duplicate=not recorded)

    @rpc("app")
    async def RecordUsageStream(self, request: AsyncIterator[pb.UsageEvent],
                                context: Any) -> pb.RecordUsageBatchResponse:
        """Validated and written in chunks (`bulk.py`): all or nothing on validation for a
        stream of up to a chunk; a longer one is written chunk by chunk, and a call that
        fails says in its trailing metadata how many of its first events are recorded."""
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
        now = self.rt.clock.now()
        window = _window(now)
        pending: list[UsageRecord] = []
        pending_bytes = 0
        recorded: list[bool] = []
        # (account, feature) pairs found recordable in this call: a stream of one account's
        # events looks its account and plan up once, not per event.
        known: set[tuple[str, str]] = set()
        try:
            n = 0
            async for event in events:
                if n >= MAX_STREAM_EVENTS:
                    raise InvalidArgument("events",
                                          f"more than {MAX_STREAM_EVENTS} in one stream")
                try:
                    record = self._usage_record(event, window)
                except InvalidArgument:  # again, for the message naming the event's field
                    record = self._usage_record(event, window, f"events[{n}].")
                pair = (record.account_id, record.feature)
                if pair not in known:
                    await self._check_recordable(*pair, f"events[{n}].")
                    known.add(pair)
                pending.append(record)
                pending_bytes += event.ByteSize()
                n += 1
                if len(pending) >= CHUNK_EVENTS or pending_bytes >= CHUNK_BYTES:
                    recorded += await self.bulk_usage.record_in_order(pending, now)
                    pending, pending_bytes = [], 0
            if pending:
                recorded += await self.bulk_usage.record_in_order(pending, now)
        except ConflictingDuplicates as exc:  # the others of its chunk are recorded
            first = len(recorded) + exc.positions[0]
            context.set_trailing_metadata(((RECORDED_KEY, str(len(recorded))),))
            raise AlreadyExists(f"events[{first}].event_id", "recorded before with other"
                                " content (an event id names one event: use a new id);"
                                f" {len(exc.positions)} such event(s) refused, the others of"
                                " the stream before it recorded") from None
        except Unrecorded as exc:  # the events before it stay recorded: say how many
            done = len(recorded) + exc.done
            context.set_trailing_metadata(((RECORDED_KEY, str(done)),))
            if isinstance(exc.cause, SessionGateError):  # refused: nothing of it written
                raise exc.cause from None
            log.warning("usage write failed", recorded=done, error=str(exc.cause))
            raise BackendUnavailable(f"usage write failed after the first {done} events of"
                                     " the stream were recorded") from exc
        except BaseException:
            context.set_trailing_metadata(((RECORDED_KEY, str(len(recorded))),))
            raise
        accepted = sum(recorded)
        return pb.RecordUsageBatchResponse(accepted=accepted, duplicates=len(recorded) - accepted)
