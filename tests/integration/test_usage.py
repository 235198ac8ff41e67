"""Plans, entitlements, usage events and usage summaries end to end, on a real redis-server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.proration import MAX_SEAT_LIMIT
from sessiongate.service.convert import ts
from sessiongate.service.plans import MAX_UNIT_PRICE_MINOR
from sessiongate.store import keys
from tests.support import ServerThread

PLAN = apb.Plan(plan_id="pro", features=[
    apb.Feature(name="reports", kind=apb.FEATURE_KIND_BOOLEAN),
    apb.Feature(name="exports", kind=apb.FEATURE_KIND_METERED, quota=3,
                period=apb.RESET_PERIOD_MONTH, limit=apb.LIMIT_MODE_HARD),
    apb.Feature(name="pool", kind=apb.FEATURE_KIND_METERED, quota=1,
                period=apb.RESET_PERIOD_WEEK, limit=apb.LIMIT_MODE_SOFT),
    apb.Feature(name="api", kind=apb.FEATURE_KIND_METERED, quota=1000,
                period=apb.RESET_PERIOD_DAY),
])


def upsert(srv: ServerThread, **fields: object) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


def setup(srv: ServerThread, **fields: object) -> None:
    srv.accounts.UpsertPlan(PLAN)
    upsert(srv, account_id="acme", plan_id="pro", **fields)


def consume(srv: ServerThread, feature: str, quantity: int = 0,
            event_id: str = "") -> spb.EntitlementResponse:
    return srv.sessions.ConsumeEntitlement(spb.EntitlementRequest(
        account_id="acme", user_id="alice", feature=feature, quantity=quantity,
        event_id=event_id))


def check(srv: ServerThread, feature: str, account: str = "acme") -> spb.EntitlementResponse:
    return srv.sessions.CheckEntitlement(spb.EntitlementRequest(
        account_id=account, user_id="alice", feature=feature))


def invalid(call: object, *args: object) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call(*args)  # type: ignore[operator]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    return err.value.details() or ""


def test_plan_round_trip_and_bad_plans(server: ServerThread) -> None:
    got = server.accounts.UpsertPlan(PLAN)
    expected = apb.Plan()
    expected.CopyFrom(PLAN)
    expected.features[3].limit = apb.LIMIT_MODE_HARD  # the default, made explicit
    assert got == expected
    assert server.accounts.GetPlan(apb.GetPlanRequest(plan_id="pro")) == got
    api = got.features[3]
    assert (api.limit, api.period) == (apb.LIMIT_MODE_HARD, apb.RESET_PERIOD_DAY)
    with pytest.raises(grpc.RpcError) as err:
        server.accounts.GetPlan(apb.GetPlanRequest(plan_id="nope"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    dup = apb.Plan(plan_id="x", features=[apb.Feature(name="a"), apb.Feature(name="a")])
    assert invalid(server.accounts.UpsertPlan, dup).startswith("features[1].name")
    neg = apb.Plan(plan_id="x", features=[apb.Feature(name="a", kind=2, quota=-1)])
    assert invalid(server.accounts.UpsertPlan, neg).startswith("features[0].quota")
    assert invalid(server.accounts.UpsertPlan, apb.Plan(
        plan_id="x", features=[apb.Feature(name="a", kind=9)])).startswith("features[0].kind")


def test_entitlements_and_hard_quota_resetting_monthly(server: ServerThread) -> None:
    server.clock.set(datetime(2026, 10, 30, 12, tzinfo=UTC))
    setup(server)
    assert check(server, "reports").decision == cpb.DECISION_ALLOW
    assert check(server, "reports").remaining == -1
    r = check(server, "teleport")
    assert (r.decision, r.reason) == (cpb.DECISION_DENY, cpb.REASON_FEATURE_NOT_ENTITLED)
    r = check(server, "exports")
    assert (r.decision, r.remaining, r.quota) == (cpb.DECISION_ALLOW, 3, 3)
    assert r.resets_at.ToDatetime() == datetime(2026, 11, 1)
    assert consume(server, "exports", 2).remaining == 1
    assert consume(server, "exports").remaining == 0
    r = consume(server, "exports")
    assert (r.decision, r.reason, r.remaining) == (
        cpb.DECISION_DENY, cpb.REASON_QUOTA_EXHAUSTED, 0)
    assert check(server, "exports").reason == cpb.REASON_QUOTA_EXHAUSTED
    s = server.sessions.CheckSession(spb.CheckSessionRequest(
        account_id="acme", user_id="alice", feature="exports"))
    assert (s.decision, s.reason, s.session_id) == (
        cpb.DECISION_DENY, cpb.REASON_QUOTA_EXHAUSTED, "")
    server.clock.set(datetime(2026, 11, 1, tzinfo=UTC))  # a new month: a new window
    r = consume(server, "exports")
    assert (r.decision, r.remaining) == (cpb.DECISION_ALLOW, 2)
    assert r.resets_at.ToDatetime() == datetime(2026, 12, 1)


def test_soft_limit_weekly_and_daily_reset(server: ServerThread) -> None:
    server.clock.set(datetime(2026, 10, 15, tzinfo=UTC))  # Thursday
    setup(server)
    assert consume(server, "pool").over_soft_limit is False
    r = consume(server, "pool")
    assert (r.decision, r.over_soft_limit, r.remaining) == (cpb.DECISION_ALLOW, True, 0)
    assert r.resets_at.ToDatetime() == datetime(2026, 10, 19)
    server.clock.set(datetime(2026, 10, 19, tzinfo=UTC))
    assert consume(server, "pool").over_soft_limit is False
    assert consume(server, "api", 1000).remaining == 0
    assert consume(server, "api").reason == cpb.REASON_QUOTA_EXHAUSTED
    server.clock.advance(timedelta(days=1))
    assert consume(server, "api").remaining == 999


def test_consumption_is_idempotent_by_event_id(server: ServerThread) -> None:
    setup(server)
    first = consume(server, "exports", 2, "evt-1")
    again = consume(server, "exports", 2, "evt-1")
    assert (first.remaining, first.duplicate) == (1, False)
    assert (again.decision, again.remaining, again.duplicate) == (cpb.DECISION_ALLOW, 1, True)
    # a refused consumption claims nothing: the same id goes through once quota allows
    assert consume(server, "exports", 2, "evt-2").reason == cpb.REASON_QUOTA_EXHAUSTED
    assert consume(server, "exports", 1, "evt-2").remaining == 0


def test_entitlement_checks_answer_the_account_decision_first(server: ServerThread) -> None:
    setup(server, state=cpb.ACCOUNT_STATE_SUSPENDED)
    assert check(server, "reports").reason == cpb.REASON_ACCOUNT_SUSPENDED
    assert check(server, "reports", account="ghost").reason == cpb.REASON_UNKNOWN_ACCOUNT
    upsert(server, account_id="free")
    assert check(server, "reports", account="free").reason == cpb.REASON_FEATURE_NOT_ENTITLED


def test_bad_entitlement_requests(server: ServerThread, redis_client: redis.Redis) -> None:
    setup(server)
    before = sorted(redis_client.keys("*"))
    assert invalid(consume, server, "exports", -1).startswith("quantity")
    assert invalid(consume, server, "").startswith("feature")
    assert invalid(consume, server, "exports", 1, "e\n").startswith("event_id")
    assert sorted(redis_client.keys("*")) == before


def event(event_id: str, quantity: int = 1, feature: str = "exports", user: str = "alice",
          when: datetime | None = None) -> spb.UsageEvent:
    e = spb.UsageEvent(event_id=event_id, account_id="acme", user_id=user, feature=feature,
                       quantity=quantity, attributes={"source": "test"})
    if when is not None:
        e.occurred_at.CopyFrom(ts(when))
    return e


def usage_total(srv: ServerThread, month: str, feature: str = "exports") -> tuple[int, int]:
    s = srv.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(account_id="acme", period=month))
    for f in s.features:
        if f.feature == feature:
            return f.total, f.events
    return 0, 0


def test_usage_events_count_once_and_reach_the_stream(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.clock.set(datetime(2026, 10, 10, tzinfo=UTC))
    setup(server)
    assert server.sessions.RecordUsage(event("u1", 5)).duplicate is False
    assert server.sessions.RecordUsage(event("u1", 5)).duplicate is True
    assert server.sessions.RecordUsage(event("u2", 2)).duplicate is False
    assert usage_total(server, "2026-10") == (7, 2)
    entries = redis_client.xrange(keys.USAGE_STREAM)
    assert [e[1][b"event_id"] for e in entries] == [b"u1", b"u2"]
    first = entries[0][1]
    assert (first[b"account_id"], first[b"feature"], first[b"quantity"]) == (
        b"acme", b"exports", b"5")
    assert first[b"attributes"] == b'{"source":"test"}'
    # billing reads with its own consumer group
    redis_client.xgroup_create(keys.USAGE_STREAM, "billing", id="0")
    got = redis_client.xreadgroup("billing", "b1", {keys.USAGE_STREAM: ">"})
    assert len(got[0][1]) == 2


def test_a_stream_reaches_the_billing_stream_intact(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """Events of two months and several features in one stream, more than one script call
    holds, non-ASCII text: each arrives once, every field as sent, totals per month."""
    from sessiongate.store.usage import EVENTS_PER_CALL

    now = datetime(2026, 10, 10, 12, 30, tzinfo=UTC)
    server.clock.set(now)
    setup(server)
    n = 2 * EVENTS_PER_CALL + 7
    events = []
    for i in range(n):
        e = event(f"s{i}", quantity=i % 4 + 1, feature="exports" if i % 3 else "api",
                  user="zoë 😀" if i % 2 else "alice",
                  when=now - timedelta(days=15) if i % 5 == 0 else now - timedelta(minutes=i))
        e.attributes["note"] = f"naïve ✓ {i}"
        events.append(e)
    resp = server.sessions.RecordUsageStream(iter(events + events[:3]))
    assert (resp.accepted, resp.duplicates) == (n, 3)
    got = {f[b"event_id"].decode(): f for _, f in redis_client.xrange(keys.USAGE_STREAM)}
    assert len(got) == n
    for e in events:
        f = got[e.event_id]
        assert f[b"user_id"].decode() == e.user_id
        assert (f[b"feature"].decode(), int(f[b"quantity"])) == (e.feature, e.quantity)
        assert json.loads(f[b"attributes"]) == dict(e.attributes)
        assert datetime.fromisoformat(f[b"occurred_at"].decode()) == e.occurred_at.ToDatetime(
            tzinfo=UTC)
    for month in ("2026-09", "2026-10"):
        for feature in ("exports", "api"):
            want = [e.quantity for e in events if e.feature == feature
                    and f"{e.occurred_at.ToDatetime():%Y-%m}" == month]
            assert usage_total(server, month, feature) == (sum(want), len(want))


def test_usage_stream_batch_counts_duplicates(server: ServerThread) -> None:
    server.clock.set(datetime(2026, 10, 10, tzinfo=UTC))
    setup(server)
    server.sessions.RecordUsage(event("a"))
    resp = server.sessions.RecordUsageStream(iter([event("a"), event("b"), event("c", 3),
                                                   event("b")]))
    assert (resp.accepted, resp.duplicates) == (2, 2)
    assert usage_total(server, "2026-10") == (5, 3)


def test_retry_after_a_failed_write_counts_once(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """The stream key is made unwritable: the script refuses, and nothing is remembered."""
    server.clock.set(datetime(2026, 10, 10, tzinfo=UTC))
    setup(server)
    redis_client.set(keys.USAGE_STREAM, "not a stream")
    with pytest.raises(grpc.RpcError) as err:
        server.sessions.RecordUsage(event("r1", 4))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert redis_client.zcard(keys.usage_events("acme")) == 0
    assert usage_total(server, "2026-10") == (0, 0)
    redis_client.delete(keys.USAGE_STREAM)
    assert server.sessions.RecordUsage(event("r1", 4)).duplicate is False  # the retry counts
    assert server.sessions.RecordUsage(event("r1", 4)).duplicate is True  # ... once
    assert usage_total(server, "2026-10") == (4, 1)
    assert redis_client.xlen(keys.USAGE_STREAM) == 1


def test_bad_usage_events_write_nothing(server: ServerThread, redis_client: redis.Redis) -> None:
    now = datetime(2026, 10, 10, tzinfo=UTC)
    server.clock.set(now)
    setup(server)
    before = sorted(redis_client.keys("*"))
    record = server.sessions.RecordUsage
    assert invalid(record, event("x", -1)).startswith("quantity")
    assert invalid(record, event("x", feature="teleport")).startswith("feature")
    assert invalid(record, event("x", when=now + timedelta(hours=1))).startswith("occurred_at")
    assert invalid(record, event("")).startswith("event_id")
    assert invalid(record, event("x", user="a\x00")).startswith("user_id")
    assert invalid(record, event("x", 10**13)).startswith("quantity")
    bad_time = event("x")
    bad_time.occurred_at.seconds = 2**62
    assert invalid(record, bad_time).startswith("occurred_at")
    stream = [event("ok1"), event("bad", -5), event("ok2")]
    assert invalid(server.sessions.RecordUsageStream, iter(stream)).startswith(
        "events[1].quantity")
    assert sorted(redis_client.keys("*")) == before
    with pytest.raises(grpc.RpcError) as err:
        server.sessions.RecordUsage(spb.UsageEvent(event_id="e", account_id="ghost",
                                                   feature="f", quantity=1))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_accounts_without_a_plan_record_any_feature(server: ServerThread) -> None:
    server.clock.set(datetime(2026, 10, 10, tzinfo=UTC))
    upsert(server, account_id="acme")
    assert server.sessions.RecordUsage(event("free-1", feature="anything")).duplicate is False
    assert usage_total(server, "2026-10", "anything") == (1, 1)


def summary(srv: ServerThread, month: str, price: int = 0) -> apb.UsageSummary:
    return srv.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
        account_id="acme", period=month, seat_unit_price_minor=price))


def test_seat_charges_follow_roster_changes(server: ServerThread) -> None:
    """April 2026 (30 days): a, b from the 1st; c added on the 10th; b removed on the 20th."""
    server.clock.set(datetime(2026, 3, 20, tzinfo=UTC))
    upsert(server, account_id="acme", users=["a", "b"])
    server.clock.set(datetime(2026, 4, 10, tzinfo=UTC))
    upsert(server, account_id="acme", users=["a", "b", "c"])
    server.clock.set(datetime(2026, 4, 20, tzinfo=UTC))
    upsert(server, account_id="acme", users=["a", "c"])
    server.clock.set(datetime(2026, 5, 3, tzinfo=UTC))
    upsert(server, account_id="acme", users=["a", "c", "d"])  # next month: not in April
    s = summary(server, "2026-04", 3000)
    assert s.peak_concurrent_seats == 3
    assert s.seat_seconds == 70 * 86_400
    charges = {c.mode: c.amount_minor for c in s.seat_charges}
    assert charges == {apb.PRORATION_MODE_PRORATA: 7000, apb.PRORATION_MODE_WHOLE_PERIOD: 9000,
                       apb.PRORATION_MODE_NEXT_PERIOD: 6000}
    may = summary(server, "2026-05", 3100)  # 31 days; d from the 3rd, 00:00
    charges = {c.mode: c.amount_minor for c in may.seat_charges}
    assert may.seat_seconds == (31 + 31 + 29) * 86_400
    assert charges[apb.PRORATION_MODE_PRORATA] == 9100  # 3100 * 91 / 31
    assert charges[apb.PRORATION_MODE_NEXT_PERIOD] == 6200


def test_seat_limit_without_roster_is_billed_per_seat(server: ServerThread) -> None:
    server.clock.set(datetime(2026, 4, 1, tzinfo=UTC))
    upsert(server, account_id="acme", seat_limit=2)
    server.clock.set(datetime(2026, 4, 16, tzinfo=UTC))
    upsert(server, account_id="acme", seat_limit=4)
    s = summary(server, "2026-04", 1000)
    charges = {c.mode: c.amount_minor for c in s.seat_charges}
    # 2 seats * 30 days + 2 seats * 15 days = 90 seat-days; 1000 * 90 / 30 = 3000
    assert (s.peak_concurrent_seats, charges[apb.PRORATION_MODE_PRORATA]) == (4, 3000)
    assert charges[apb.PRORATION_MODE_WHOLE_PERIOD] == 4000
    assert charges[apb.PRORATION_MODE_NEXT_PERIOD] == 2000


def test_the_largest_seat_limit_is_billed_without_spelling_out_its_seats(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """A million anonymous seats at the top unit price: one seat-log token, charges that fit
    int64 (a seat set of a million names once took seconds and ~100 MB per upsert)."""
    server.clock.set(datetime(2026, 4, 1, tzinfo=UTC))
    upsert(server, account_id="acme", seat_limit=MAX_SEAT_LIMIT)
    server.clock.set(datetime(2026, 4, 16, tzinfo=UTC))
    upsert(server, account_id="acme", seat_limit=MAX_SEAT_LIMIT // 2)
    assert len(redis_client.hget(keys.account("acme"), "s") or b"") < 64
    s = summary(server, "2026-04", MAX_UNIT_PRICE_MINOR)
    charges = {c.mode: c.amount_minor for c in s.seat_charges}
    assert s.peak_concurrent_seats == MAX_SEAT_LIMIT
    assert charges[apb.PRORATION_MODE_WHOLE_PERIOD] == MAX_UNIT_PRICE_MINOR * MAX_SEAT_LIMIT
    # a million seats for 15 days, half a million for 15: three quarters of the top charge
    assert charges[apb.PRORATION_MODE_PRORATA] == MAX_UNIT_PRICE_MINOR * MAX_SEAT_LIMIT * 3 // 4


def test_bad_summary_requests(server: ServerThread) -> None:
    server.clock.set(datetime(2026, 10, 10, tzinfo=UTC))
    upsert(server, account_id="acme")
    assert invalid(summary, server, "2026-11").startswith("period")
    assert invalid(summary, server, "october").startswith("period")
    assert invalid(summary, server, "2026-10", -1).startswith("seat_unit_price_minor")
    assert invalid(summary, server, "2026-10", 2**62).startswith("seat_unit_price_minor")
    with pytest.raises(grpc.RpcError) as err:
        server.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
            account_id="ghost", period="2026-10"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_usage_in_batches_of_events_per_message(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """RecordUsageBatches: several events per stream message, counted like RecordUsageStream
    (duplicates across messages too); a bad event anywhere rejects the call, naming it by its
    number across messages, and writes nothing."""
    server.clock.set(datetime(2026, 10, 10, tzinfo=UTC))
    setup(server)
    batches = [spb.UsageBatch(events=[event("b1", 2), event("b2", 3)]),
               spb.UsageBatch(events=[]),
               spb.UsageBatch(events=[event("b3"), event("b1", 2)])]
    resp = server.sessions.RecordUsageBatches(iter(batches))
    assert (resp.accepted, resp.duplicates) == (3, 1)
    assert usage_total(server, "2026-10") == (6, 3)
    before = sorted(redis_client.keys("*"))
    bad = [spb.UsageBatch(events=[event("c1"), event("c2")]),
           spb.UsageBatch(events=[event("c3"), event("c4", -1)])]
    assert invalid(server.sessions.RecordUsageBatches, iter(bad)).startswith(
        "events[3].quantity")
    assert sorted(redis_client.keys("*")) == before
    assert usage_total(server, "2026-10") == (6, 3)
