"""Billing: the billing system pushes payment events (the stream consumer shares the path)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from sessiongate.api.v1 import billing_pb2 as pb
from sessiongate.api.v1 import billing_pb2_grpc as pb_grpc
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.payment_event import PaymentEvent, new_payment_event
from sessiongate.service.convert import STATE_TO_PB
from sessiongate.service.rpc import Servicer, rpc
from sessiongate.service.runtime import Runtime
from sessiongate.usecases.dunning import DunningEngine
from sessiongate.usecases.payments import PaymentPushes

MAX_TIMESTAMP_SECONDS = 253402300799  # 9999-12-31T23:59:59Z, the proto Timestamp range


def engine_for(rt: Runtime) -> DunningEngine:
    """The process's dunning engine (built once by app.py)."""
    return rt.engine


def timestamp_field(msg: Message, name: str) -> datetime | None:
    """A Timestamp field as an aware datetime; unset -> None; out of range -> INVALID_ARGUMENT."""
    if not msg.HasField(name):
        return None
    t = getattr(msg, name)
    if not 0 <= t.seconds <= MAX_TIMESTAMP_SECONDS or not 0 <= t.nanos < 10**9:
        raise InvalidArgument(name, "out of the Timestamp range")
    when: datetime = t.ToDatetime(tzinfo=UTC)
    return when


def event_from_pb(msg: pb.PaymentEvent) -> PaymentEvent:
    return new_payment_event(
        event_id=msg.event_id,
        account_id=msg.account_id,
        type=int(msg.type),
        invoice_id=msg.invoice_id,
        amount_minor=msg.amount_minor,
        currency=msg.currency,
        occurred_at=timestamp_field(msg, "occurred_at"),
        due_at=timestamp_field(msg, "due_at"),
        payment_id=msg.payment_id,
    )


class BillingServicer(Servicer, pb_grpc.BillingServicer):
    def __init__(self, rt: Runtime, payments: PaymentPushes) -> None:
        super().__init__(rt.auth, rt.observer)
        self.rt = rt
        self.payments = payments

    @rpc("billing")
    async def PushPaymentEvent(
        self, request: pb.PaymentEvent, context: Any
    ) -> pb.PushPaymentEventResponse:
        pushed = await self.payments.push(event_from_pb(request))
        account = pushed.account
        resp = pb.PushPaymentEventResponse(duplicate=pushed.duplicate)
        if account is not None:
            resp.state = STATE_TO_PB[account.state_at(self.rt.clock.now())]
            resp.balance_minor = account.balance_minor
        return resp
