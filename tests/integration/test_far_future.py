"""Far-future dates (issue 26, item 3): an invoice due 9999-12-31 (a common "never") and
policy delays of up to 10,000 years never overflow into INTERNAL, and never stop the
account's later payments. Real server, real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.domain.clock import END_OF_TIME
from sessiongate.domain.model import AccountState
from sessiongate.domain.policy import DunningPolicy, DunningStage
from sessiongate.store import keys
from sessiongate.store.policies import PolicyStore
from tests.integration.dunning_support import (
    DAY,
    T0,
    check,
    get,
    invoice,
    pay,
    start,
    sweeper,
    upsert,
)
from tests.integration.test_payment_stream import consumer, drain
from tests.support import ServerThread

NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # the last second a Timestamp holds
TEN_THOUSAND_YEARS = Duration(seconds=315_576_000_000)  # the Duration range's end


@pytest.fixture
def srv(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    s = start(redis_url)
    try:
        upsert(s, account_id="acme", users=["alice"])
        yield s
    finally:
        s.stop()


def test_an_invoice_due_9999_12_31_is_accepted_and_payments_still_reinstate(
        srv: ServerThread) -> None:
    assert invoice(srv, due=T0 - 40 * DAY).state == cpb.ACCOUNT_STATE_SUSPENDED
    far = invoice(srv, "inv-far-issued", 5000, NEVER, invoice_id="inv-far")
    assert (far.state, far.balance_minor) == (cpb.ACCOUNT_STATE_SUSPENDED, 17000)
    paid = pay(srv, "pay-1", 12000)  # the old invoice settled: only the "never" one is open
    assert (paid.state, paid.balance_minor) == (cpb.ACCOUNT_STATE_ACTIVE, 5000)
    got = get(srv)
    assert got.oldest_due_at.ToDatetime(tzinfo=UTC) == NEVER
    assert got.state == cpb.ACCOUNT_STATE_ACTIVE
    assert check(srv).decision == cpb.DECISION_ALLOW
    srv.clock.advance(60 * DAY)  # the sweep meets it too
    srv.call(sweeper(srv).sweep_once())
    assert get(srv).state == cpb.ACCOUNT_STATE_ACTIVE
    assert pay(srv, "pay-2", 5000).balance_minor == 0


def test_on_the_stream_too(srv: ServerThread, redis_client: redis.Redis) -> None:
    """The same invoice through the payment stream, with an older one open: accepted, and
    the account's next payment applies (no dead letter, nothing pending)."""
    stream = keys.PAYMENT_STREAM
    redis_client.xadd(stream, {"event_id": "i1", "account_id": "acme", "type": "INVOICE_ISSUED",
                               "invoice_id": "inv-1", "amount_minor": "10000",
                               "due_at": (T0 - 40 * DAY).isoformat()})
    redis_client.xadd(stream, {"event_id": "i2", "account_id": "acme", "type": "INVOICE_ISSUED",
                               "invoice_id": "inv-2", "amount_minor": "500",
                               "due_at": "9999-12-31T23:59:59Z"})
    c = consumer(srv, "c1")
    assert drain(srv, c) == 2
    redis_client.xadd(stream, {"event_id": "p1", "account_id": "acme",
                               "type": "PAYMENT_SUCCEEDED", "amount_minor": "10000"})
    assert drain(srv, c) == 1
    assert (c.applied, c.dead) == (3, 0)
    assert redis_client.xlen(keys.PAYMENT_DEAD_LETTER) == 0
    got = get(srv)
    assert (got.state, got.balance_minor) == (cpb.ACCOUNT_STATE_ACTIVE, 500)


def test_delays_beyond_ten_years_are_refused_naming_the_field(srv: ServerThread) -> None:
    for policy, field in [
        (apb.DunningPolicy(policy_id="p", reminder_interval=TEN_THOUSAND_YEARS),
         "reminder_interval"),
        (apb.DunningPolicy(policy_id="p", stages=[apb.DunningStage(
            state=cpb.ACCOUNT_STATE_GRACE, after=TEN_THOUSAND_YEARS)]), "stages[0].after"),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            srv.accounts.UpsertPolicy(policy)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith(field), err.value.details()


def test_a_stored_10000_year_reminder_interval_saturates(srv: ServerThread) -> None:
    """A policy stored by a release that accepted it: its next reminder is beyond the
    calendar, so it saturates at the end of time instead of failing every invoice."""
    rt = srv.app.rt
    assert rt is not None
    policy = DunningPolicy("slow", (DunningStage(AccountState.REMINDER, DAY),
                                    DunningStage(AccountState.SUSPENDED, 30 * DAY)),
                           reminder_interval=timedelta(seconds=315_576_000_000))
    srv.call(PolicyStore(rt.transport).put(policy))
    upsert(srv, account_id="acme", users=["alice"], policy_id="slow")
    assert invoice(srv, due=T0 - 2 * DAY).state == cpb.ACCOUNT_STATE_REMINDER
    account = srv.call(rt.accounts.get("acme"))
    assert account.next_evaluation_at == T0 + 28 * DAY  # the suspension, not the reminder
    srv.clock.advance(40 * DAY)
    srv.call(sweeper(srv).sweep_once())
    assert get(srv).state == cpb.ACCOUNT_STATE_SUSPENDED
    assert pay(srv, "pay-1", 12000).state == cpb.ACCOUNT_STATE_ACTIVE


def test_the_last_reminder_before_the_end_of_time(redis_client: redis.Redis,
                                                  redis_url: str) -> None:
    """Overdue at the calendar's end with a ten-year interval: the next reminder would be
    past 9999, so the account's next evaluation is the end of time itself."""
    srv = start(redis_url)
    try:
        srv.clock.set(datetime(9999, 12, 31, 12, tzinfo=UTC))
        srv.accounts.UpsertPolicy(apb.DunningPolicy(
            policy_id="late", reminder_interval=Duration(seconds=3650 * 86400),
            stages=[apb.DunningStage(state=cpb.ACCOUNT_STATE_REMINDER)]))
        upsert(srv, account_id="acme", policy_id="late")
        due = datetime(9999, 12, 31, tzinfo=UTC)
        assert invoice(srv, due=due).state == cpb.ACCOUNT_STATE_REMINDER
        rt = srv.app.rt
        assert rt is not None
        assert srv.call(rt.accounts.get("acme")).next_evaluation_at.year == END_OF_TIME.year
    finally:
        srv.stop()
