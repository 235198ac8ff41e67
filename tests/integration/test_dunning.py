"""The dunning engine end to end: real server, real redis-server, a manual clock."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import common_pb2 as cpb
from tests.integration.dunning_support import (
    DAY,
    T0,
    check,
    eventually,
    get,
    invoice,
    outbox,
    pay,
    push,
    stamp,
    start,
    sweeper,
    upsert,
)
from tests.support import ServerThread

S = cpb


@pytest.fixture
def srv(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    s = start(redis_url)
    try:
        yield s
    finally:
        s.stop()


def state_is(srv: ServerThread, state: int, account: str = "acme") -> apb.Account:
    got = eventually(lambda: get(srv, account), lambda a: a.state == state)
    assert got.state == state
    return got


def check_is(srv: ServerThread, decision: int, reason: int) -> None:
    r = eventually(lambda: check(srv), lambda r: (r.decision, r.reason) == (decision, reason))
    assert (r.decision, r.reason) == (decision, reason), r


def test_45_days_reminders_grace_suspension_and_instant_reinstatement(
    srv: ServerThread, redis_client: redis.Redis
) -> None:
    upsert(srv, account_id="acme", users=["alice"], admin_emails=["billing@acme.test"])
    resp = invoice(srv)  # due now (day 0)
    assert (resp.duplicate, resp.state, resp.balance_minor) == (False, S.ACCOUNT_STATE_ACTIVE,
                                                                12000)
    sw = sweeper(srv)
    seen = {}
    for quarter in range(1, 45 * 4 + 1):  # every 6 hours for 45 days
        srv.clock.advance(timedelta(hours=6))
        srv.call(sw.sweep_once())
        if quarter % 4 == 0:
            seen[quarter // 4] = get(srv).state
    assert {d: seen[d] for d in (1, 14, 15, 30, 31, 45)} == {
        1: S.ACCOUNT_STATE_REMINDER, 14: S.ACCOUNT_STATE_REMINDER, 15: S.ACCOUNT_STATE_GRACE,
        30: S.ACCOUNT_STATE_GRACE, 31: S.ACCOUNT_STATE_SUSPENDED, 45: S.ACCOUNT_STATE_SUSPENDED}
    notes = outbox(redis_client)
    transitions = [(n["state"], n["at"]) for n in notes if n["kind"] == "transition"]
    assert transitions == [("REMINDER", (T0 + DAY).isoformat()),
                           ("GRACE", (T0 + 15 * DAY).isoformat()),
                           ("SUSPENDED", (T0 + 31 * DAY).isoformat())]
    reminder_days = [n["at"][:10] for n in notes if n["kind"] == "reminder"]
    assert len(reminder_days) == 13 + 15 == len(set(reminder_days))  # daily, once each
    assert notes[-1]["suspends_at"] == (T0 + 31 * DAY).isoformat()
    assert notes[-1]["admin_emails"] == ["billing@acme.test"]
    check_is(srv, S.DECISION_DENY, S.REASON_ACCOUNT_SUSPENDED)

    resp = pay(srv, "pay-1", 12000)
    assert (resp.state, resp.balance_minor) == (S.ACCOUNT_STATE_ACTIVE, 0)
    r = check(srv)  # no sweep, no wait: the commit reinstated it
    assert (r.decision, r.reason, r.state) == (S.DECISION_ALLOW, S.REASON_OK,
                                               S.ACCOUNT_STATE_ACTIVE)
    assert outbox(redis_client)[-1]["state"] == "ACTIVE"
    history = srv.accounts.GetAccountHistory(apb.GetAccountHistoryRequest(account_id="acme"))
    steps = [(t.from_state, t.to_state, t.actor) for t in history.transitions]
    assert steps == [
        (S.ACCOUNT_STATE_UNSPECIFIED, S.ACCOUNT_STATE_ACTIVE, "admin"),
        (S.ACCOUNT_STATE_ACTIVE, S.ACCOUNT_STATE_REMINDER, "scheduler"),
        (S.ACCOUNT_STATE_REMINDER, S.ACCOUNT_STATE_GRACE, "scheduler"),
        (S.ACCOUNT_STATE_GRACE, S.ACCOUNT_STATE_SUSPENDED, "scheduler"),
        (S.ACCOUNT_STATE_SUSPENDED, S.ACCOUNT_STATE_ACTIVE, "billing"),
    ]
    assert history.transitions[-1].event_id == "pay-1"
    assert "PAYMENT_SUCCEEDED pay-1" in history.transitions[-1].cause
    assert history.transitions[2].at.ToDatetime().date() == (T0 + 15 * DAY).date()


def test_backdated_invoice_changes_state_and_decision_at_once(srv: ServerThread) -> None:
    upsert(srv, account_id="acme")
    assert check(srv).decision == S.DECISION_ALLOW
    resp = invoice(srv, due=T0 - 40 * DAY)
    assert resp.state == S.ACCOUNT_STATE_SUSPENDED
    check_is(srv, S.DECISION_DENY, S.REASON_ACCOUNT_SUSPENDED)
    resp = invoice(srv, "inv-2-issued", 500, T0 - 20 * DAY, invoice_id="inv-2")
    got = get(srv)
    assert (got.balance_minor, got.oldest_due_at.ToDatetime().date()) == (
        12500, (T0 - 40 * DAY).date())
    pay(srv, "pay-1", 12000)  # the oldest is settled: the next one is 20 days overdue
    got = state_is(srv, S.ACCOUNT_STATE_GRACE)
    assert got.oldest_due_at.ToDatetime().date() == (T0 - 20 * DAY).date()
    r = check(srv)
    assert (r.decision, r.reason, r.amount_due_minor) == (S.DECISION_ALLOW,
                                                          S.REASON_PAYMENT_OVERDUE, 500)
    assert r.suspends_at.ToDatetime().date() == (T0 + 11 * DAY).date()


def test_duplicates_and_reordered_events(srv: ServerThread, redis_client: redis.Redis) -> None:
    upsert(srv, account_id="acme")
    # the payment and a reversal of it arrive before the invoice
    assert pay(srv, "pay-1", 7000).balance_minor == 0
    push(srv, "rev-1", bpb.PAYMENT_EVENT_TYPE_PAYMENT_REVERSED, payment_id="pay-1",
         amount_minor=2000)
    resp = invoice(srv, amount=10000, due=T0 - 20 * DAY)
    assert (resp.balance_minor, resp.state) == (5000, S.ACCOUNT_STATE_GRACE)
    version = get(srv).version
    for _ in range(3):
        again = pay(srv, "pay-1", 7000)
        assert (again.duplicate, again.balance_minor) == (True, 5000)
    assert get(srv).version == version
    push(srv, "void-1", bpb.PAYMENT_EVENT_TYPE_INVOICE_VOIDED, invoice_id="inv-1")
    got = state_is(srv, S.ACCOUNT_STATE_ACTIVE)
    assert got.balance_minor == 0


BAD_EVENTS = [
    (dict(event_id=""), "event_id"),
    (dict(account_id=""), "account_id"),
    (dict(type=0), "type"),
    (dict(type=99), "type"),
    (dict(invoice_id=""), "invoice_id"),
    (dict(amount_minor=-5), "amount_minor"),
    (dict(amount_minor=0), "amount_minor"),
    (dict(currency="EURO"), "currency"),
    (dict(currency="EUR"), "currency"),  # the account's currency is USD
    (dict(due_at=None), "due_at"),
    (dict(payment_id="p\x01"), "payment_id"),
]


@pytest.mark.parametrize(("change", "field"), BAD_EVENTS)
def test_bad_events_are_invalid_argument_and_change_nothing(
    srv: ServerThread, redis_client: redis.Redis, change: dict[str, object], field: str
) -> None:
    upsert(srv, account_id="acme")
    fields: dict[str, object] = dict(event_id="e1", account_id="acme",
                                     type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED,
                                     invoice_id="inv-1", amount_minor=100, due_at=stamp(T0))
    fields.update(change)
    if fields["due_at"] is None:
        del fields["due_at"]
    before = {k: redis_client.dump(k) for k in redis_client.keys("*")}
    with pytest.raises(grpc.RpcError) as err:
        srv.billing.PushPaymentEvent(bpb.PaymentEvent(**fields))  # type: ignore[arg-type]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)
    assert {k: redis_client.dump(k) for k in redis_client.keys("*")} == before


def test_unknown_account_is_not_found(srv: ServerThread, redis_client: redis.Redis) -> None:
    with pytest.raises(grpc.RpcError) as err:
        invoice(srv, account="ghost")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert redis_client.keys("*") == []


def test_two_sweepers_racing_do_everything_exactly_once(
    srv: ServerThread, redis_client: redis.Redis
) -> None:
    accounts = [f"acct-{i}" for i in range(6)]
    for aid in accounts:
        upsert(srv, account_id=aid)
        invoice(srv, f"{aid}-inv", account=aid)
    a, b = sweeper(srv), sweeper(srv)

    async def race() -> None:
        await asyncio.gather(a.sweep_once(), b.sweep_once(), a.sweep_once())

    for _ in range(35 * 2):  # every 12 hours for 35 days
        srv.clock.advance(timedelta(hours=12))
        srv.call(race())
    for aid in accounts:
        notes = outbox(redis_client, aid)
        kinds = [(n["kind"], n["state"]) for n in notes]
        assert kinds.count(("transition", "REMINDER")) == 1
        assert kinds.count(("transition", "GRACE")) == 1
        assert kinds.count(("transition", "SUSPENDED")) == 1
        assert kinds.count(("reminder", "REMINDER")) == 13
        assert kinds.count(("reminder", "GRACE")) == 15
        assert len({n["id"] for n in notes}) == len(notes) == 31
        history = srv.accounts.GetAccountHistory(apb.GetAccountHistoryRequest(account_id=aid))
        assert len(history.transitions) == 4  # created, REMINDER, GRACE, SUSPENDED


def test_exempt_account_never_leaves_active(srv: ServerThread,
                                             redis_client: redis.Redis) -> None:
    upsert(srv, account_id="gov", exempt=True)
    resp = invoice(srv, account="gov", due=T0 - 50 * DAY)
    assert resp.state == S.ACCOUNT_STATE_ACTIVE
    sw = sweeper(srv)
    for _ in range(40):
        srv.clock.advance(DAY)
        srv.call(sw.sweep_once())
    got = get(srv, "gov")
    assert (got.state, got.balance_minor) == (S.ACCOUNT_STATE_ACTIVE, 12000)
    assert outbox(redis_client, "gov") == []
    r = check(srv, "gov")
    assert (r.decision, r.reason) == (S.DECISION_ALLOW, S.REASON_OK)
    # no longer exempt: dunned at once by the default policy
    upsert(srv, account_id="gov", exempt=False)
    assert state_is(srv, S.ACCOUNT_STATE_SUSPENDED, "gov").account_id == "gov"
    assert [n["state"] for n in outbox(redis_client, "gov")] == ["SUSPENDED"]


def test_override_with_expiry_and_clearing(srv: ServerThread) -> None:
    upsert(srv, account_id="acme")
    got = srv.accounts.OverrideState(apb.OverrideStateRequest(
        account_id="acme", state=S.ACCOUNT_STATE_SUSPENDED, reason="chargeback review",
        expires_at=stamp(T0 + timedelta(hours=1)), actor="ops@vendor"))
    assert (got.state, got.override.reason, got.override.actor) == (
        S.ACCOUNT_STATE_SUSPENDED, "chargeback review", "ops@vendor")
    check_is(srv, S.DECISION_DENY, S.REASON_ACCOUNT_SUSPENDED)
    srv.clock.advance(timedelta(hours=2))
    assert get(srv).state == S.ACCOUNT_STATE_ACTIVE  # expired: enforced state at read time
    srv.call(sweeper(srv).sweep_once())  # and the scheduler records the expiry
    history = srv.accounts.GetAccountHistory(
        apb.GetAccountHistoryRequest(account_id="acme", limit=2)).transitions
    assert [(t.to_state, t.cause) for t in history] == [
        (S.ACCOUNT_STATE_SUSPENDED, "override: chargeback review"),
        (S.ACCOUNT_STATE_ACTIVE, "override expired")]
    assert history[0].actor == "ops@vendor"
    srv.accounts.OverrideState(apb.OverrideStateRequest(
        account_id="acme", state=S.ACCOUNT_STATE_CLOSED, reason="contract ended"))
    check_is(srv, S.DECISION_DENY, S.REASON_ACCOUNT_CLOSED)
    cleared = srv.accounts.OverrideState(apb.OverrideStateRequest(account_id="acme"))
    assert (cleared.state, cleared.HasField("override")) == (S.ACCOUNT_STATE_ACTIVE, False)


@pytest.mark.parametrize(("fields", "field", "code"), [
    (dict(account_id="acme", state=S.ACCOUNT_STATE_GRACE), "reason",
     grpc.StatusCode.INVALID_ARGUMENT),
    (dict(account_id="acme", state=42, reason="x"), "state", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(account_id="acme", state=S.ACCOUNT_STATE_GRACE, reason="x",
          expires_at=stamp(T0 - DAY)), "expires_at", grpc.StatusCode.INVALID_ARGUMENT),
    (dict(account_id="ghost", state=S.ACCOUNT_STATE_GRACE, reason="x"), "account_id",
     grpc.StatusCode.NOT_FOUND),
])
def test_bad_overrides(srv: ServerThread, fields: dict[str, object], field: str,
                       code: grpc.StatusCode) -> None:
    upsert(srv, account_id="acme")
    with pytest.raises(grpc.RpcError) as err:
        srv.accounts.OverrideState(apb.OverrideStateRequest(**fields))  # type: ignore[arg-type]
    assert err.value.code() == code
    assert (err.value.details() or "").startswith(field)
    assert get(srv).state == S.ACCOUNT_STATE_ACTIVE


def test_preview_timeline(srv: ServerThread) -> None:
    upsert(srv, account_id="acme")
    invoice(srv, due=T0 + 10 * DAY)
    resp = srv.accounts.PreviewDunning(apb.PreviewDunningRequest(account_id="acme"))
    assert resp.balance_minor == 12000
    assert [(e.state, e.at.ToDatetime().date()) for e in resp.timeline] == [
        (S.ACCOUNT_STATE_ACTIVE, T0.date()),
        (S.ACCOUNT_STATE_REMINDER, (T0 + 11 * DAY).date()),
        (S.ACCOUNT_STATE_GRACE, (T0 + 25 * DAY).date()),
        (S.ACCOUNT_STATE_SUSPENDED, (T0 + 41 * DAY).date()),
    ]



def test_preview_of_an_unknown_account_is_not_found(srv: ServerThread) -> None:
    with pytest.raises(grpc.RpcError) as err:
        srv.accounts.PreviewDunning(apb.PreviewDunningRequest(account_id="nobody"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert (err.value.details() or "").startswith("account_id")

def secs(n: int) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=n))
    return d


def test_policies_in_seconds_with_the_real_scheduler(redis_client: redis.Redis,
                                                     redis_url: str) -> None:
    srv = start(redis_url, scheduler=True, sweep_interval=0.05)
    try:
        policy = apb.DunningPolicy(policy_id="demo", reminder_interval=secs(2), stages=[
            apb.DunningStage(state=S.ACCOUNT_STATE_SUSPENDED, after=secs(10)),
            apb.DunningStage(state=S.ACCOUNT_STATE_REMINDER, after=secs(1)),
        ])
        saved = srv.accounts.UpsertPolicy(policy)
        assert [s.state for s in saved.stages] == [S.ACCOUNT_STATE_REMINDER,
                                                   S.ACCOUNT_STATE_SUSPENDED]
        assert srv.accounts.GetPolicy(apb.GetPolicyRequest(policy_id="demo")) == saved
        default = srv.accounts.GetPolicy(apb.GetPolicyRequest(policy_id="default"))
        assert [s.after.seconds // 86400 for s in default.stages] == [1, 15, 31]
        upsert(srv, account_id="acme", policy_id="demo")
        invoice(srv)  # due now
        srv.clock.advance(timedelta(seconds=1))
        state_is(srv, S.ACCOUNT_STATE_REMINDER)  # time alone, through the running scheduler
        srv.clock.advance(timedelta(seconds=9))
        state_is(srv, S.ACCOUNT_STATE_SUSPENDED)
        check_is(srv, S.DECISION_DENY, S.REASON_ACCOUNT_SUSPENDED)
        # back to the default policy: 10 seconds overdue is ACTIVE there
        upsert(srv, account_id="acme", policy_id="")
        state_is(srv, S.ACCOUNT_STATE_ACTIVE)
    finally:
        srv.stop()


@pytest.mark.parametrize(("policy", "field"), [
    (apb.DunningPolicy(policy_id=""), "policy_id"),
    (apb.DunningPolicy(policy_id="p", stages=[apb.DunningStage(state=S.ACCOUNT_STATE_ACTIVE)]),
     "stages[0].state"),
    (apb.DunningPolicy(policy_id="p", stages=[apb.DunningStage(
        state=S.ACCOUNT_STATE_GRACE, after=Duration(seconds=-1))]), "stages[0].after"),
    (apb.DunningPolicy(policy_id="p", reminder_interval=Duration(seconds=0, nanos=5)),
     "reminder_interval"),
    (apb.DunningPolicy(policy_id="p", tolerance_minor=-1), "tolerance_minor"),
])
def test_bad_policies(srv: ServerThread, redis_client: redis.Redis, policy: apb.DunningPolicy,
                      field: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        srv.accounts.UpsertPolicy(policy)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)
    assert redis_client.keys("sg:policy:*") == []


def test_cli_dunning_commands(srv: ServerThread, capsys: pytest.CaptureFixture[str]) -> None:
    from sessiongate.cli import main

    def run(*argv: str) -> str:
        assert main([*argv, "--addr", srv.addr]) == 0
        return capsys.readouterr().out

    upsert(srv, account_id="acme")
    assert "grace" in run("policy", "set", "fast", "--stage", "reminder=1s", "--stage",
                          "grace=30s", "--interval", "10s").lower()
    assert "0:00:30 past due" in run("policy", "get", "fast")
    upsert(srv, account_id="acme", policy_id="fast")
    out = run("invoice", "acme", "inv-9", "2500", "--due", "2025-12-31T23:59:00Z",
              "--event-id", "cli-inv")
    assert out.strip() == "cli-inv: GRACE, balance 2500"
    assert "(duplicate" in run("invoice", "acme", "inv-9", "2500", "--due",
                               "2025-12-31T23:59:00Z", "--event-id", "cli-inv")
    # the same event id for another due date is another event: refused (ALREADY_EXISTS)
    assert main(["invoice", "acme", "inv-9", "2500", "--due", "2025-12-31", "--event-id",
                 "cli-inv", "--addr", srv.addr]) == 1
    assert "SUSPENDED" not in run("account", "preview", "acme")
    assert "ACTIVE" in run("pay", "acme", "2500")
    history = run("account", "history", "acme")
    assert "-> GRACE" in history and "[cli-inv]" in history
    assert '"transitions"' in run("account", "history", "acme", "--json")
    assert "override: audit" in run("account", "override", "acme", "closed", "--reason", "audit")


def test_a_reminder_already_recorded_as_sent_is_not_sent_again(
    srv: ServerThread, redis_client: redis.Redis
) -> None:
    from sessiongate.store import keys

    upsert(srv, account_id="acme")
    invoice(srv)
    sw = sweeper(srv)
    srv.clock.advance(DAY)
    srv.call(sw.sweep_once())  # day 1: REMINDER (the transition notice)
    due_ms = int(T0.timestamp() * 1000)
    redis_client.zadd(keys.applied_events("acme"), {f"reminder:acme:{due_ms}:2": 1})
    srv.clock.advance(DAY)
    srv.call(sw.sweep_once())  # day 2: its reminder counts as sent already
    assert get(srv).next_evaluation_at.ToDatetime().date() == (T0 + 3 * DAY).date()
    srv.clock.advance(DAY)
    srv.call(sw.sweep_once())
    assert [(n["kind"], n["at"][:10]) for n in outbox(redis_client)] == [
        ("transition", (T0 + DAY).date().isoformat()),
        ("reminder", (T0 + 3 * DAY).date().isoformat())]


def test_two_replicas_with_running_schedulers_notify_exactly_once(
    redis_client: redis.Redis, redis_url: str
) -> None:
    from sessiongate.domain.clock import ManualClock
    from sessiongate.store import keys
    from tests.support import make_settings

    clock = ManualClock(T0)
    settings = make_settings(redis_url, scheduler=True, sweep_interval=0.02)
    one = ServerThread(settings, clock=clock).start()
    two = ServerThread(settings, clock=clock).start()
    try:
        accounts = [f"r-{i}" for i in range(4)]
        for aid in accounts:
            upsert(one, account_id=aid)
            invoice(two, f"{aid}-inv", account=aid)

        def due_now() -> int:
            now_ms = int(clock.now().timestamp() * 1000)
            return sum(redis_client.zcount(keys.due_index(b), "-inf", now_ms)
                       for b in keys.ALL_BUCKETS)

        for _ in range(33 * 2):  # every 12 hours for 33 days; both replicas sweep each step
            clock.advance(timedelta(hours=12))
            assert eventually(due_now, lambda n: n == 0) == 0
        for aid in accounts:
            kinds = [(n["kind"], n["state"]) for n in outbox(redis_client, aid)]
            assert kinds == [("transition", "REMINDER"), *[("reminder", "REMINDER")] * 13,
                             ("transition", "GRACE"), *[("reminder", "GRACE")] * 15,
                             ("transition", "SUSPENDED")]
    finally:
        one.stop()
        two.stop()
