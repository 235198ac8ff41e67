"""Helpers of the dunning tests: a server on a manual clock, pushes, sweeps, outbox counts."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import redis
from google.protobuf.timestamp_pb2 import Timestamp

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.billing.scheduler import Sweeper
from sessiongate.domain.clock import ManualClock
from sessiongate.service.billing import engine_for
from sessiongate.store import keys
from tests.support import ServerThread, make_settings

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
R = TypeVar("R")


def start(redis_url: str, **settings: Any) -> ServerThread:
    settings.setdefault("scheduler", False)
    return ServerThread(make_settings(redis_url, **settings), clock=ManualClock(T0)).start()


def stamp(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t


def push(srv: ServerThread, event_id: str, type: int, account: str = "acme", **kw: Any
         ) -> bpb.PushPaymentEventResponse:
    for name in ("due_at", "occurred_at"):
        if isinstance(kw.get(name), datetime):
            kw[name] = stamp(kw[name])
    return srv.billing.PushPaymentEvent(
        bpb.PaymentEvent(event_id=event_id, account_id=account, type=type, **kw))  # type: ignore[arg-type]


def invoice(srv: ServerThread, event_id: str = "inv-1-issued", amount: int = 12000,
            due: datetime = T0, account: str = "acme", invoice_id: str = "inv-1"
            ) -> bpb.PushPaymentEventResponse:
    return push(srv, event_id, bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED, account,
                invoice_id=invoice_id, amount_minor=amount, due_at=due)


def pay(srv: ServerThread, event_id: str, amount: int, account: str = "acme"
        ) -> bpb.PushPaymentEventResponse:
    return push(srv, event_id, bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED, account,
                amount_minor=amount)


def upsert(srv: ServerThread, **fields: Any) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


def get(srv: ServerThread, account: str = "acme") -> apb.Account:
    return srv.accounts.GetAccount(apb.GetAccountRequest(account_id=account))


def check(srv: ServerThread, account: str = "acme", user: str = "alice"
          ) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(spb.CheckSessionRequest(account_id=account, user_id=user))


def sweeper(srv: ServerThread) -> Sweeper:
    rt = srv.app.rt
    assert rt is not None
    return Sweeper(rt.transport, engine_for(rt), rt.clock)


def eventually(fn: Callable[[], R], ok: Callable[[R], bool], timeout: float = 10.0) -> R:
    """Poll (the near-cache learns of a commit through pub/sub, asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.01)


def outbox(client: redis.Redis, account: str = "acme") -> list[dict[str, Any]]:
    import json

    return [json.loads(f[b"body"]) for _, f in client.xrange(keys.outbox_of(account))
            if f[b"account"] == account.encode()]
