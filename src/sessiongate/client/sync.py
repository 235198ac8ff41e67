"""The blocking client."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import billing_pb2_grpc as bpb_grpc
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.client.config import (
    RETRYABLE,
    USAGE_EVENTS_PER_MESSAGE,
    ClientConfig,
    Memory,
    fallback_answer,
    usage_batches,
)

Metadata = Sequence[tuple[str, str]] | None


class Client:
    """`with Client(ClientConfig(addr=..., token=...)) as sg: sg.check_session("acme", "alice")`.

    Idempotent calls (a check that opens no session, heartbeats, ends, reads, and writes keyed
    by an event id) are retried on UNAVAILABLE / DEADLINE_EXCEEDED / CANCELLED (see
    `config.RETRYABLE`); the others are tried once.
    """

    def __init__(self, config: ClientConfig | None = None, **kw: Any) -> None:
        self.config = config or ClientConfig(**kw)
        creds, opts = self.config.credentials(), self.config.options()
        self._channel = (grpc.insecure_channel(self.config.addr, options=opts) if creds is None
                         else grpc.secure_channel(self.config.addr, creds, options=opts))
        self._sessions = spb_grpc.SessionControlStub(self._channel)
        self._billing = bpb_grpc.BillingStub(self._channel)
        self._accounts = apb_grpc.AccountsStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._memory = Memory()

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Callable[..., Any], request: Any, idempotent: bool,
              timeout: float | None, metadata: Metadata) -> Any:
        md = self.config.metadata(metadata)  # one request id for every attempt
        attempts = self.config.max_attempts if idempotent else 1
        for attempt in range(1, attempts + 1):
            try:
                return fn(request, timeout=timeout or self.config.timeout, metadata=md)
            except grpc.RpcError as exc:
                if attempt >= attempts or exc.code() not in RETRYABLE:
                    raise
                time.sleep(self.config.delay(attempt))
        raise AssertionError("unreachable")

    def check_session(self, account_id: str, user_id: str, *, feature: str = "",
                      open_session: bool = True, timeout: float | None = None,
                      metadata: Metadata = None) -> spb.CheckSessionResponse:
        """The login question. An unreachable sidecar raises nothing: the fallback answers."""
        req = spb.CheckSessionRequest(account_id=account_id, user_id=user_id, feature=feature,
                                      no_session=not open_session)
        try:
            resp: spb.CheckSessionResponse = self._call(
                self._sessions.CheckSession, req, req.no_session, timeout, metadata)
        except grpc.RpcError as exc:
            if exc.code() not in RETRYABLE:
                raise
            return fallback_answer(self.config, self._memory, account_id, user_id, exc)
        self._memory.remember(account_id, user_id, resp)
        return resp

    def heartbeat(self, session_id: str, *, feature: str = "", timeout: float | None = None,
                  metadata: Metadata = None) -> spb.HeartbeatResponse:
        resp: spb.HeartbeatResponse = self._call(
            self._sessions.Heartbeat,
            spb.HeartbeatRequest(session_id=session_id, feature=feature), True,
            timeout, metadata)
        return resp

    def end_session(self, session_id: str, *, timeout: float | None = None,
                    metadata: Metadata = None) -> spb.EndSessionResponse:
        resp: spb.EndSessionResponse = self._call(
            self._sessions.EndSession, spb.EndSessionRequest(session_id=session_id), True,
            timeout, metadata)
        return resp

    def check_entitlement(self, request: spb.EntitlementRequest, *,
                          timeout: float | None = None,
                          metadata: Metadata = None) -> spb.EntitlementResponse:
        resp: spb.EntitlementResponse = self._call(
            self._sessions.CheckEntitlement, request, True, timeout, metadata)
        return resp

    def consume_entitlement(self, request: spb.EntitlementRequest, *,
                            timeout: float | None = None,
                            metadata: Metadata = None) -> spb.EntitlementResponse:
        """Retried only with an `event_id` (the server applies it once)."""
        resp: spb.EntitlementResponse = self._call(
            self._sessions.ConsumeEntitlement, request, bool(request.event_id), timeout, metadata)
        return resp

    def record_usage(self, event: spb.UsageEvent, *, timeout: float | None = None,
                     metadata: Metadata = None) -> spb.RecordUsageResponse:
        resp: spb.RecordUsageResponse = self._call(
            self._sessions.RecordUsage, event, bool(event.event_id), timeout, metadata)
        return resp

    def record_usage_batch(self, events: Sequence[spb.UsageEvent], *,
                           per_message: int = USAGE_EVENTS_PER_MESSAGE,
                           timeout: float | None = None,
                           metadata: Metadata = None) -> spb.RecordUsageBatchResponse:
        """Many events in one `RecordUsageBatches` call (10,000 at most), `per_message` per
        stream message; all or nothing on validation up to 1,000 events (docs/billing.md:
        a longer stream is written in chunks). Retried only when every event has
        an `event_id` (the server counts each once)."""
        batches = usage_batches(events, per_message)
        resp: spb.RecordUsageBatchResponse = self._call(
            lambda _, **kw: self._sessions.RecordUsageBatches(iter(batches), **kw), None,
            all(e.event_id for e in events), timeout, metadata)
        return resp

    def push_payment_event(self, event: bpb.PaymentEvent, *, timeout: float | None = None,
                           metadata: Metadata = None) -> bpb.PushPaymentEventResponse:
        resp: bpb.PushPaymentEventResponse = self._call(
            self._billing.PushPaymentEvent, event, bool(event.event_id), timeout, metadata)
        return resp

    def get_account(self, account_id: str, *, timeout: float | None = None,
                    metadata: Metadata = None) -> apb.Account:
        resp: apb.Account = self._call(
            self._accounts.GetAccount, apb.GetAccountRequest(account_id=account_id), True,
            timeout, metadata)
        return resp

    def upsert_account(self, account: apb.Account, *, timeout: float | None = None,
                       metadata: Metadata = None) -> apb.Account:
        resp: apb.Account = self._call(
            self._accounts.UpsertAccount, apb.UpsertAccountRequest(account=account), False,
            timeout, metadata)
        return resp

    def healthy(self, service: str = "", *, timeout: float | None = None) -> bool:
        """True when the sidecar reports SERVING; False when not, or unreachable."""
        try:
            resp = self._health.Check(health_pb2.HealthCheckRequest(service=service),
                                      timeout=timeout or self.config.timeout)
        except grpc.RpcError:
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)
