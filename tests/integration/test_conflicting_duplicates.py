"""A reused event id with other content (issue 26, item 8): a redelivery (same id, same
content) is `duplicate: true`; another event under the same id is ALREADY_EXISTS naming
`event_id`, changes nothing, and is counted. Real server, real redis-server, real scrape."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
import redis

from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.store import keys
from tests.integration.dunning_support import T0, get, invoice, pay, push, upsert
from tests.integration.test_metrics import Samples, scrape
from tests.integration.test_payment_stream import consumer, drain
from tests.integration.test_usage import PLAN, event, usage_total
from tests.support import ServerThread, make_settings

CONFLICTS = "sessiongate_conflicting_duplicates_total"


@pytest.fixture
def srv(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    s = ServerThread(make_settings(redis_url, scheduler=False, metrics_addr="127.0.0.1:0"))
    s.clock.set(datetime(2026, 10, 10, tzinfo=UTC))
    s.start()
    try:
        s.accounts.UpsertPlan(PLAN)
        upsert(s, account_id="acme", users=["alice"], plan_id="pro")
        yield s
    finally:
        s.stop()


def already_exists(call: Callable[..., Any], request: Any) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call(request)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS, err.value.details()
    return err.value.details() or ""


def conflicts(srv: ServerThread, source: str, want: float) -> Samples:
    """A scrape once `want` conflicts of `source` are counted (calls are reported in
    batches, a few milliseconds after they end)."""
    assert srv.app.metrics is not None
    deadline = time.monotonic() + 10
    while True:
        m = scrape(srv.app.metrics.port)
        if m[(CONFLICTS, (("source", source),))] >= want or time.monotonic() > deadline:
            return m
        time.sleep(0.01)


def test_push_payment_event(srv: ServerThread) -> None:
    srv.clock.set(T0)
    invoice(srv, due=T0)
    first = pay(srv, "pay-1", 5000)
    assert (first.duplicate, first.balance_minor) == (False, 7000)
    again = pay(srv, "pay-1", 5000)  # a redelivery
    assert (again.duplicate, again.balance_minor) == (True, 7000)
    # the same content as stored: no currency is the account's, occurred_at to the ms
    same = push(srv, "pay-1", bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED, amount_minor=5000,
                currency="USD")
    assert same.duplicate
    other = bpb.PaymentEvent(event_id="pay-1", account_id="acme", amount_minor=6000,
                             type=bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED)
    assert already_exists(srv.billing.PushPaymentEvent, other).startswith("event_id")
    other.amount_minor, other.type = 5000, bpb.PAYMENT_EVENT_TYPE_CREDIT_APPLIED
    assert already_exists(srv.billing.PushPaymentEvent, other).startswith("event_id")
    assert get(srv).balance_minor == 7000  # nothing changed
    m = conflicts(srv, "payments_grpc", 2)
    assert m[(CONFLICTS, (("source", "payments_grpc"),))] == 2


def test_payment_stream(srv: ServerThread, redis_client: redis.Redis) -> None:
    srv.clock.set(T0)
    invoice(srv, due=T0)
    for amount in ("5000", "5000", "6000"):  # sent, redelivered, then reused
        redis_client.xadd(keys.PAYMENT_STREAM, {
            "event_id": "p1", "account_id": "acme", "type": "PAYMENT_SUCCEEDED",
            "amount_minor": amount})
    c = consumer(srv, "c1")
    assert drain(srv, c) == 3
    assert (c.applied, c.duplicates, c.dead, c.conflicting_duplicates) == (1, 1, 1, 1)
    (_, dead), = redis_client.xrange(keys.PAYMENT_DEAD_LETTER)
    assert dead[b"reason"].decode().startswith("conflicting duplicate: event_id"), dead
    assert get(srv).balance_minor == 7000


def test_record_usage(srv: ServerThread, redis_client: redis.Redis) -> None:
    assert srv.sessions.RecordUsage(event("u1", 5)).duplicate is False
    srv.clock.advance(timedelta(seconds=30))  # a retry later: no occurred_at, same content
    assert srv.sessions.RecordUsage(event("u1", 5)).duplicate is True
    assert already_exists(srv.sessions.RecordUsage, event("u1", 6)).startswith("event_id")
    assert already_exists(srv.sessions.RecordUsage,
                          event("u1", 5, user="bob")).startswith("event_id")
    stated = event("u2", 1, when=datetime(2026, 10, 9, tzinfo=UTC))
    assert srv.sessions.RecordUsage(stated).duplicate is False
    stated.occurred_at.seconds += 1  # another event, said to be the same one
    assert already_exists(srv.sessions.RecordUsage, stated).startswith("event_id")
    assert usage_total(srv, "2026-10") == (6, 2)  # nothing counted twice, nothing else
    assert redis_client.xlen(keys.USAGE_STREAM) == 2
    m = conflicts(srv, "usage", 3)
    assert m[(CONFLICTS, (("source", "usage"),))] == 3


def test_record_usage_stream_names_the_event(srv: ServerThread) -> None:
    assert srv.sessions.RecordUsage(event("u1", 5)).duplicate is False
    events = [event("s0", 1), event("u1", 5), event("u1", 4), event("s1", 2)]
    details = already_exists(srv.sessions.RecordUsageStream, iter(events))
    assert details.startswith("events[2].event_id"), details
    assert usage_total(srv, "2026-10") == (8, 3)  # the others were recorded, once
    retry = srv.sessions.RecordUsageStream(iter([events[0], events[1], events[3]]))
    assert (retry.accepted, retry.duplicates) == (0, 3)


def test_events_of_the_release_before_are_compared_by_id(
        srv: ServerThread, redis_client: redis.Redis) -> None:
    """A claim without a digest (recorded before digests were kept) stays a duplicate
    whatever the content, also once newer claims with digests share its set."""
    now_ms = int(srv.clock.now().timestamp() * 1000)
    redis_client.zadd(keys.usage_events("acme"), {"u:old": now_ms - 1000,
                                                  "c:old": now_ms - 1000})
    assert srv.sessions.RecordUsage(event("new", 1)).duplicate is False
    assert srv.sessions.RecordUsage(event("old", 9)).duplicate is True
    assert already_exists(srv.sessions.RecordUsage, event("new", 2)).startswith("event_id")
    used = srv.sessions.ConsumeEntitlement(spb.EntitlementRequest(
        account_id="acme", user_id="alice", feature="exports", quantity=1, event_id="old"))
    assert used.duplicate


def test_consume_entitlement(srv: ServerThread) -> None:
    def consume(quantity: int, user: str = "alice") -> spb.EntitlementResponse:
        return srv.sessions.ConsumeEntitlement(spb.EntitlementRequest(
            account_id="acme", user_id=user, feature="exports", quantity=quantity,
            event_id="c1"))

    first = consume(2)
    assert (first.duplicate, first.remaining) == (False, 1)
    assert consume(2).duplicate
    upsert(srv, account_id="acme", users=["alice", "bob"], plan_id="pro")
    for request in (spb.EntitlementRequest(account_id="acme", user_id="alice",
                                           feature="exports", quantity=1, event_id="c1"),
                    spb.EntitlementRequest(account_id="acme", user_id="bob",
                                           feature="exports", quantity=2, event_id="c1")):
        details = already_exists(srv.sessions.ConsumeEntitlement, request)
        assert details.startswith("event_id"), details
    left = srv.sessions.CheckEntitlement(spb.EntitlementRequest(
        account_id="acme", user_id="alice", feature="exports"))
    assert left.remaining == 1  # nothing consumed by the refused calls
    m = conflicts(srv, "usage", 2)
    assert m[(CONFLICTS, (("source", "usage"),))] == 2
    assert m[(CONFLICTS, (("source", "payments_grpc"),))] == 0
    assert get(srv).state == cpb.ACCOUNT_STATE_ACTIVE
