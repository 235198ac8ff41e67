"""The payment stream: consumer group, dead letters, reclaiming a crashed consumer's entries."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
import redis

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.billing.consumer import GROUP, PaymentConsumer
from sessiongate.domain.payment_event import event_from_fields
from sessiongate.service.billing import engine_for
from sessiongate.store import keys
from tests.integration.dunning_support import DAY, T0, check, eventually, get, start, upsert
from tests.support import ServerThread

STREAM = keys.PAYMENT_STREAM


@pytest.fixture
def srv(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    s = start(redis_url)
    try:
        upsert(s, account_id="acme", users=["alice"])
        yield s
    finally:
        s.stop()


def consumer(srv: ServerThread, name: str, claim_idle_ms: int = 60_000) -> PaymentConsumer:
    rt = srv.app.rt
    assert rt is not None
    return PaymentConsumer(rt.stream_transport(0.5), engine_for(rt), consumer=name,
                           claim_idle_ms=claim_idle_ms)


def drain(srv: ServerThread, c: PaymentConsumer) -> int:
    total = 0
    while (n := srv.call(c.process_once(block_ms=0))) > 0:
        total += n
    return total


def pending(client: redis.Redis) -> int:
    return int(client.xpending(STREAM, GROUP)["pending"])


def test_entries_in_every_accepted_spelling_apply_once(srv: ServerThread,
                                                       redis_client: redis.Redis) -> None:
    due = int((T0 - 40 * DAY).timestamp())
    redis_client.xadd(STREAM, {"event_id": "i1", "account_id": "acme", "type": "INVOICE_ISSUED",
                               "invoice_id": "inv-1", "amount_minor": "10000", "currency": "USD",
                               "due_at": str(due)})
    c = consumer(srv, "c1")
    assert drain(srv, c) == 1
    assert get(srv).state == cpb.ACCOUNT_STATE_SUSPENDED
    r = eventually(lambda: check(srv), lambda r: r.decision == cpb.DECISION_DENY)
    assert r.reason == cpb.REASON_ACCOUNT_SUSPENDED
    for eid in ("p1", "p1", "p2"):  # p1 redelivered by the billing system
        redis_client.xadd(STREAM, {"event_id": eid, "account_id": "acme",
                                   "type": "PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED",
                                   "amount_minor": "5000",
                                   "occurred_at": "2026-01-01T08:00:00+01:00"})
    assert drain(srv, c) == 3
    assert (c.applied, c.duplicates, c.dead) == (3, 1, 0)  # i1, p1, p2; p1 again
    got = get(srv)
    assert (got.state, got.balance_minor) == (cpb.ACCOUNT_STATE_ACTIVE, 0)
    assert pending(redis_client) == 0


MALFORMED = [
    ({"account_id": "acme", "type": "INVOICE_ISSUED"}, "event_id"),
    ({"event_id": "m2", "account_id": "acme", "type": "REFUND", "amount_minor": "1"}, "type"),
    ({"event_id": "m3", "account_id": "acme", "type": "PAYMENT_SUCCEEDED",
      "amount_minor": "12.50"}, "amount_minor"),
    ({"event_id": "m4", "account_id": "acme", "type": "INVOICE_ISSUED", "invoice_id": "i",
      "amount_minor": "1", "due_at": "next tuesday"}, "due_at"),
    ({"event_id": "m5", "account_id": "ghost", "type": "PAYMENT_SUCCEEDED",
      "amount_minor": "1"}, "account_id"),
    ({"event_id": "m6", "account_id": "acme", "type": "PAYMENT_SUCCEEDED", "amount_minor": "1",
      "currency": "EUR"}, "currency"),
]


def test_malformed_entries_are_dead_lettered_and_never_block(
    srv: ServerThread, redis_client: redis.Redis
) -> None:
    for fields, _ in MALFORMED:
        redis_client.xadd(STREAM, fields)  # type: ignore[arg-type]
    redis_client.xadd(STREAM, {"event_id": "ok", "account_id": "acme", "type": "2",
                               "amount_minor": "300"})
    c = consumer(srv, "c1")
    assert drain(srv, c) == len(MALFORMED) + 1
    dead = redis_client.xrange(keys.PAYMENT_DEAD_LETTER)
    assert len(dead) == len(MALFORMED)
    for (_, entry), (fields, field) in zip(dead, MALFORMED, strict=True):
        assert entry[b"reason"].decode().startswith(field), entry
        assert json.loads(entry[b"fields"]) == fields
    assert pending(redis_client) == 0
    assert srv.call(srv.app.rt.accounts.was_applied("acme", "ok"))  # type: ignore[union-attr]


def test_a_crashed_consumer_loses_and_doubles_nothing(srv: ServerThread,
                                                      redis_client: redis.Redis) -> None:
    upsert(srv, account_id="acme", users=["alice"])
    redis_client.xadd(STREAM, {"event_id": "inv", "account_id": "acme", "type": "INVOICE_ISSUED",
                               "invoice_id": "inv-1", "amount_minor": "10000",
                               "due_at": "2025-11-01T00:00:00Z"})
    for i in range(10):
        redis_client.xadd(STREAM, {"event_id": f"p{i}", "account_id": "acme",
                                   "type": "PAYMENT_SUCCEEDED", "amount_minor": "1000"})
    # consumer A reads the whole batch, applies the first half, then dies before any XACK
    crashed = consumer(srv, "A")
    assert srv.call(crashed.ensure_group())
    batch = redis_client.xreadgroup(GROUP, "A", {STREAM: ">"}, count=100)[0][1]
    assert len(batch) == 11
    engine = crashed.engine
    for _, fields in batch[:6]:
        event = event_from_fields({k.decode(): v.decode() for k, v in fields.items()})
        srv.call(engine.apply_event(event))
    assert get(srv).balance_minor == 5000
    assert pending(redis_client) == 11
    # B does not steal entries still young; once idle long enough it reclaims them all
    patient = consumer(srv, "B")
    assert drain(srv, patient) == 0
    rescuer = consumer(srv, "B", claim_idle_ms=0)
    assert drain(srv, rescuer) == 11
    assert (rescuer.applied, rescuer.duplicates, rescuer.dead) == (5, 6, 0)
    got = get(srv)
    assert (got.balance_minor, got.state) == (0, cpb.ACCOUNT_STATE_ACTIVE)
    assert pending(redis_client) == 0


def test_the_running_consumer_component(redis_client: redis.Redis, redis_url: str) -> None:
    srv = start(redis_url, scheduler=True, sweep_interval=0.05)
    try:
        upsert(srv, account_id="acme")
        redis_client.xadd(STREAM, {"event_id": "i1", "account_id": "acme",
                                   "type": "invoice_issued", "invoice_id": "inv-1",
                                   "amount_minor": "700", "due_at": "2025-12-20T00:00:00Z"})
        got = eventually(lambda: get(srv), lambda a: a.balance_minor == 700)
        assert (got.balance_minor, got.state) == (700, cpb.ACCOUNT_STATE_REMINDER)
        eventually(lambda: pending(redis_client), lambda n: n == 0)
        assert pending(redis_client) == 0
    finally:
        srv.stop()


def test_members_of_past_processes_are_forgotten(srv: ServerThread,
                                                 redis_client: redis.Redis) -> None:
    redis_client.xadd(STREAM, {"event_id": "p1", "account_id": "acme",
                               "type": "PAYMENT_SUCCEEDED", "amount_minor": "1"})
    live = consumer(srv, "live")
    assert srv.call(live.ensure_group())
    redis_client.xreadgroup(GROUP, "crashed", {STREAM: ">"}, count=1)  # holds p1 pending
    redis_client.xgroup_createconsumer(STREAM, GROUP, "restarted")  # nothing pending
    assert srv.call(live.forget_idle_consumers(idle_ms=0)) == ["restarted"]
    names = {c["name"] for c in redis_client.xinfo_consumers(STREAM, GROUP)}
    assert names == {b"crashed"}


def _history_shape(srv: ServerThread, account: str) -> list[tuple[str, str, str]]:
    rt = srv.app.rt
    assert rt is not None
    return [(h["from"], h["to"], h["cause"])
            for h in srv.call(rt.accounts.history(account))]


def test_a_batch_applies_like_one_event_at_a_time(srv: ServerThread,
                                                  redis_client: redis.Redis) -> None:
    """Many accounts in one batch, their entries interleaved, events of random kinds,
    redelivered, one dead: the batched consumer ends where applying the entries one by one
    (`apply_event`, stream order) ends, account for account."""
    rng = random.Random(7)
    kinds = ["INVOICE_ISSUED", "PAYMENT_SUCCEEDED", "PAYMENT_FAILED", "PAYMENT_REVERSED",
             "INVOICE_VOIDED", "CREDIT_APPLIED"]
    per_account: dict[str, list[dict[str, str]]] = {}
    for n in range(6):
        events = []
        for k in range(12):
            kind = rng.choice(kinds)
            fields = {"event_id": f"e{k}", "type": kind, "invoice_id": f"inv-{k % 3}",
                      "amount_minor": str(rng.choice([500, 1000, 2500]))}
            if kind == "INVOICE_ISSUED":
                fields["due_at"] = f"2025-{rng.choice(['10', '11', '12'])}-15T00:00:00Z"
            events.append(fields)
        events += rng.sample(events, 4)  # redelivered
        per_account[f"acct-{n}"] = events
    # the same entries for twin accounts: "b-" through the batch, "s-" one at a time
    for twin in ("b-", "s-"):
        for aid in per_account:
            upsert(srv, account_id=twin + aid, users=["alice"])
    order = [aid for aid, evs in per_account.items() for _ in evs]
    rng.shuffle(order)  # accounts interleaved; each account's entries keep their order
    seen: dict[str, int] = {}
    stream_order = []
    for aid in order:
        i = seen[aid] = seen.get(aid, -1) + 1
        stream_order.append((aid, per_account[aid][i]))
    redis_client.xadd(STREAM, {"event_id": "x", "account_id": "b-ghost",
                               "type": "PAYMENT_SUCCEEDED", "amount_minor": "1"})
    for aid, fields in stream_order:
        redis_client.xadd(STREAM, {**fields, "account_id": "b-" + aid})
    c = consumer(srv, "batcher")
    assert drain(srv, c) == len(stream_order) + 1
    assert c.dead == 1 and pending(redis_client) == 0
    engine = c.engine
    for aid, fields in stream_order:
        srv.call(engine.apply_event(event_from_fields({**fields, "account_id": "s-" + aid})))
    assert c.applied + c.duplicates == len(stream_order)
    assert c.duplicates >= 4 * len(per_account)
    states = set()
    for aid in per_account:
        b, s = get(srv, "b-" + aid), get(srv, "s-" + aid)
        assert (b.state, b.balance_minor, b.oldest_due_at) == (
            s.state, s.balance_minor, s.oldest_due_at), aid
        assert _history_shape(srv, "b-" + aid) == _history_shape(srv, "s-" + aid), aid
        states.add(b.state)
    assert len(states) >= 2  # the mix leaves accounts in different states
