"""Issue #5, Redis memory: an account in one hash. The former layout (ledger string, history
list, applied-events zset, seat-change list, session and seat zsets) is read, then moved into
the hash by the next commit; the former release cannot write over the new layout; the hash's
growing fields stay within their budgets, what they push out still read.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.model import Account
from sessiongate.domain.proration import Seats
from sessiongate.service.billing import engine_for
from sessiongate.service.convert import ts
from sessiongate.store import keys
from sessiongate.store.accounts import IDEMPOTENCY_RETENTION_MS, AccountStore
from sessiongate.store.client import connect as connect_redis_py
from sessiongate.store.client import transport as connect
from sessiongate.store.record import EVENTS_BYTES, HISTORY_BYTES, SEAT_CHANGES_BYTES
from sessiongate.store.scripts import Scripts
from sessiongate.store.usage import UsageStore
from tests.integration.test_compact_records import compact_hashes
from tests.support import ServerThread

T0 = datetime(2026, 10, 1, tzinfo=UTC)
DAY = 86_400

# The former release's commit_account.lua (commit ef24d5a), verbatim: what its replicas run
# during a rolling upgrade.
FORMER_COMMIT = """\
-- Commit a new version of one account, atomically, if nobody else wrote it meanwhile.
-- Optionally: replace the ledger, record an event id as applied (idempotency), append a
-- history entry, index the next evaluation time, append notifications to the outbox, and
-- publish the new version so that every replica's near-cache drops its copy.
--
-- KEYS[1] account hash (fields: data, v)     KEYS[2] ledger string
-- KEYS[3] history list                       KEYS[4] applied-events zset
-- KEYS[5] bucket's due index zset            KEYS[6] bucket's outbox stream
-- (all six keys carry the account's bucket hash tag: one slot)
-- ARGV[1] expected version (0: must not exist)
-- ARGV[2] account JSON        ARGV[3] ledger JSON, or "" to leave it
-- ARGV[4] event id, or ""     ARGV[5] now (ms)
-- ARGV[6] next evaluation (ms), "" to leave the index, "-" to remove the account from it
-- ARGV[7] history entry JSON, or ""
-- ARGV[8] invalidation channel   ARGV[9] account id   ARGV[10] idempotency retention (ms)
-- ARGV[11..] notification JSONs (each becomes one outbox entry)
-- Returns {status, version}: status is "ok", "conflict" (version moved on) or "duplicate".

local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if ARGV[4] ~= '' and redis.call('ZSCORE', KEYS[4], ARGV[4]) then
  return {'duplicate', current}
end
if current ~= tonumber(ARGV[1]) then
  return {'conflict', current}
end
local version = current + 1
redis.call('HSET', KEYS[1], 'data', ARGV[2], 'v', version)
if ARGV[3] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3])
end
local now = tonumber(ARGV[5])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[4], now, ARGV[4])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - tonumber(ARGV[10]))
end
if ARGV[7] ~= '' then
  redis.call('RPUSH', KEYS[3], ARGV[7])
end
if ARGV[6] == '-' then
  redis.call('ZREM', KEYS[5], ARGV[9])
elseif ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[5], tonumber(ARGV[6]), ARGV[9])
end
for i = 11, #ARGV do
  redis.call('XADD', KEYS[6], '*', 'account', ARGV[9], 'version', version, 'body', ARGV[i])
end
redis.call('PUBLISH', ARGV[8], ARGV[9] .. '\\t' .. version)
return {'ok', version}
"""


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def write_former_layout(r: redis.Redis, now: datetime) -> None:
    """Account "acme" as the former release leaves it: SUSPENDED over an unpaid invoice,
    two transitions, its applied events, one seat change, alice's live session and seat."""
    due = ms(now - timedelta(days=40))
    account = {"id": "acme", "users": ["alice", "bob"], "seats": 1, "state": "SUSPENDED",
               "since": due, "balance": 12000, "due": due, "suspends": due}
    r.hset(keys.account("acme"), mapping={"data": json.dumps(account), "v": 3})
    r.set(keys.ledger("acme"), json.dumps({"cur": "USD", "events": {"inv-1-issued": {
        "t": "INVOICE_ISSUED", "inv": "inv-1", "amt": 12000, "cur": "USD", "due": due}}}))
    r.rpush(keys.history("acme"),
            '{"at":"2026-08-01T00:00:00+00:00","from":null,"to":"ACTIVE",'
            '"cause":"account created","actor":"admin"}',
            '{"at":"2026-09-22T00:00:00+00:00","from":"GRACE","to":"SUSPENDED",'
            '"cause":"dunning","actor":"scheduler","event_id":""}')
    r.zadd(keys.applied_events("acme"), {"inv-1-issued": ms(now - timedelta(days=40)),
                                         "reminder:acme:1:1": ms(now - timedelta(days=39)),
                                         "too-old": ms(now - timedelta(days=90))})
    r.rpush(keys.seat_changes("acme"), f"1\x1f{ms(T0 - timedelta(days=60))}\x1falice\x1fbob")
    lease = ms(now + timedelta(minutes=5))
    r.zadd(keys.legacy_sessions("acme"), {"alice\x1fnonce-1": lease})
    r.zadd(keys.legacy_seats("acme"), {"alice": lease})


def push(srv: ServerThread, event_id: str, kind: int = bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED,
         amount: int = 12000) -> bool:
    invoice = {}
    if kind == bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED:
        invoice = {"invoice_id": "inv-1", "due_at": ts(T0 - timedelta(days=40))}
    return srv.billing.PushPaymentEvent(bpb.PaymentEvent(
        event_id=event_id, account_id="acme", type=kind, amount_minor=amount,
        **invoice)).duplicate


def history(srv: ServerThread, limit: int = 0) -> list[tuple[int, int, str]]:
    got = srv.accounts.GetAccountHistory(apb.GetAccountHistoryRequest(account_id="acme",
                                                                      limit=limit))
    return [(t.from_state, t.to_state, t.cause) for t in got.transitions]


def login(srv: ServerThread, user: str) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(spb.CheckSessionRequest(account_id="acme", user_id=user))


def seat_seconds(srv: ServerThread) -> int:
    return srv.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
        account_id="acme", period="2026-10", seat_unit_price_minor=100)).seat_seconds


FORMER_HISTORY = [(0, cpb.ACCOUNT_STATE_ACTIVE, "account created"),
                  (cpb.ACCOUNT_STATE_GRACE, cpb.ACCOUNT_STATE_SUSPENDED, "dunning")]


def test_the_former_layout_is_read_then_moved_into_the_hash_by_the_next_commit(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.clock.set(T0)
    write_former_layout(redis_client, T0)

    # Read as it is.
    got = server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert (got.state, got.balance_minor, got.version) == (cpb.ACCOUNT_STATE_SUSPENDED, 12000, 3)
    assert history(server) == FORMER_HISTORY
    preview = server.accounts.PreviewDunning(apb.PreviewDunningRequest(account_id="acme"))
    assert preview.balance_minor == 12000
    assert push(server, "inv-1-issued", bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED)  # a duplicate
    assert server.call(server.app.rt.accounts.was_applied(  # type: ignore[union-attr]
        "acme", "reminder:acme:1:1"))
    assert seat_seconds(server) == 2 * 31 * DAY

    # The payment: the first commit, which moves every former key into the hash.
    assert not push(server, "pay-1")
    after = server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert (after.state, after.balance_minor, after.version) == (cpb.ACCOUNT_STATE_ACTIVE, 0, 4)
    for key in (keys.ledger("acme"), keys.history("acme"), keys.applied_events("acme"),
                keys.seat_changes("acme")):
        assert not redis_client.exists(key), key
    fields = redis_client.hgetall(keys.account("acme"))
    assert fields[b"v"] == b"0_4"
    assert set(fields) == {b"data", b"v", b"l", b"h", b"e", b"s"}
    assert b"pay-1" in fields[b"l"] and b"pay-1" not in fields[b"e"]  # the ledger records it
    assert b"reminder:acme:1:1" in fields[b"e"] and b"too-old" not in fields[b"e"]

    # Read the same from the hash.
    assert history(server) == [*FORMER_HISTORY, (cpb.ACCOUNT_STATE_SUSPENDED,
                                                 cpb.ACCOUNT_STATE_ACTIVE,
                                                 "PAYMENT_SUCCEEDED pay-1: settled")]
    assert history(server, limit=1) == history(server)[-1:]
    for event_id in ("pay-1", "inv-1-issued"):
        kind = bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED if event_id.startswith("inv") else 2
        assert push(server, event_id, kind)  # duplicates, from the ledger
    assert server.call(server.app.rt.accounts.was_applied(  # type: ignore[union-attr]
        "acme", "reminder:acme:1:1"))
    assert seat_seconds(server) == 2 * 31 * DAY  # alice and bob, from the former seat log


def test_batch_reads_find_the_former_ledger_and_the_sweep_moves_it_in(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """`read_many` (the sweep's and the payment batches' read) asks for the former ledger key
    only of accounts whose `v` lacks the prefix: it reads what `read` reads, whatever the
    layout, and a sweep of a former account evaluates it from its former ledger."""
    server.clock.set(T0)
    write_former_layout(redis_client, T0)
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="beta", users=["alice"])))
    server.billing.PushPaymentEvent(bpb.PaymentEvent(
        event_id="beta-inv", account_id="beta", type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED,
        invoice_id="beta-inv", amount_minor=500, due_at=ts(T0 + timedelta(days=3))))
    redis_client.hset(keys.account("gamma"), mapping={"data": '{"id":"gamma"}', "v": 1})
    rt = server.app.rt
    assert rt is not None
    store = rt.accounts
    ids = ["acme", "beta", "nobody", "gamma", "acme"]
    many = server.call(store.read_many(ids))
    assert many == [server.call(store.read(aid)) for aid in ids]
    assert many[0][1] is not None and many[0][1].startswith("{")  # the former JSON
    assert many[2] == (None, None) and many[3][1] is None
    redis_client.set(keys.account("wrong"), "a string")
    with pytest.raises(redis.ResponseError):
        server.call(store.read_many(["beta", "wrong"]))

    # SUSPENDED over a 40-day-old invoice, no next evaluation: due. Read without its former
    # ledger, it would be settled (ACTIVE); read with it, it stays SUSPENDED.
    engine = engine_for(rt)
    (res,) = server.call(engine.evaluate_many(["acme"]))
    assert res.ok and res.version == 4
    got = server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert (got.state, got.balance_minor, got.version) == (cpb.ACCOUNT_STATE_SUSPENDED, 12000, 4)
    assert not redis_client.exists(keys.ledger("acme"))
    assert redis_client.hget(keys.account("acme"), "v") == b"0_4"
    assert server.call(store.read_many(["acme"])) == [server.call(store.read("acme"))]


def test_former_seats_still_count_and_are_moved_into_the_lease_set(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    server.clock.set(T0)
    write_former_layout(redis_client, T0)
    redis_client.hset(keys.account("acme"), "data", json.dumps(
        {"id": "acme", "users": ["alice", "bob"], "seats": 1}))  # in good standing
    # One seat, held by alice in the former zset: bob is refused, alice renews.
    assert login(server, "bob").reason == cpb.REASON_SEAT_LIMIT_REACHED
    assert not redis_client.exists(keys.legacy_seats("acme"))
    assert not redis_client.exists(keys.legacy_sessions("acme"))
    members = set(redis_client.zrange(keys.leases("acme"), 0, -1))
    assert members == {b"alice", b"alice\x1fnonce-1"}
    assert login(server, "alice").decision == cpb.DECISION_ALLOW


def test_the_former_release_cannot_commit_over_the_new_layout(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """Its script finds no version it can compare (`0_<n>`): it writes nothing, whatever it
    was given; its readers still read the account (Python's int() reads `0_<n>`)."""
    server.clock.set(T0)
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["alice"])))
    before = redis_client.hgetall(keys.account("acme"))
    data, version = redis_client.hmget(keys.account("acme"), ["data", "v"])
    assert int(version or 0) == 1 and data is not None
    aid = "acme"
    for expected, event_id in ((1, ""), (1, "evt-1"), (0, ""), (2, "")):
        res = redis_client.eval(
            FORMER_COMMIT, 6, keys.account(aid), keys.ledger(aid), keys.history(aid),
            keys.applied_events(aid), keys.due_index_of(aid), keys.outbox_of(aid),
            expected, '{"id":"acme"}', '{"cur":"USD","events":{}}', event_id, ms(T0), "",
            '{"to":"CLOSED"}', keys.INVALIDATION_CHANNEL, aid, IDEMPOTENCY_RETENTION_MS)
        assert res == [b"conflict"]  # no version: its caller fails, and retries elsewhere
    assert redis_client.hgetall(keys.account("acme")) == before
    for key in (keys.ledger(aid), keys.history(aid), keys.applied_events(aid)):
        assert not redis_client.exists(key)


def test_history_beyond_its_budget_goes_to_the_archive_and_reads_whole(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    compact_hashes(redis_client)
    server.clock.set(T0)
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["alice"])))
    for i in range(15):
        state = cpb.ACCOUNT_STATE_CLOSED if i % 2 == 0 else 0
        server.accounts.OverrideState(apb.OverrideStateRequest(
            account_id="acme", state=state, reason=f"review {i}"))
    got = history(server)
    assert len(got) == 16
    assert got[0][2] == "account created"
    assert [c for _, _, c in got[1:]] == [
        f"override: review {i}" if i % 2 == 0 else "override cleared" for i in range(15)]
    assert history(server, limit=3) == got[-3:]
    newest = redis_client.hget(keys.account("acme"), "h") or b""
    assert 0 < len(newest) <= HISTORY_BYTES
    assert redis_client.llen(keys.history_archive("acme")) + newest.count(b"\x1e") == 16
    assert redis_client.object("encoding", keys.account("acme")) in {b"ziplist", b"listpack"}


def test_applied_events_beyond_their_budget_go_to_the_zset_and_stay_duplicates(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Event ids the ledger does not hold (reminders): the newest in the hash, the rest in
    the zset, all detected as duplicates within the retention, all trimmed after it."""
    ids = [f"reminder:acme:{1790000000000 + i}:{i}" for i in range(30)]

    async def main() -> None:
        client = connect(redis_url)
        raw = connect_redis_py(redis_url)
        store = AccountStore(client, Scripts(client))
        try:
            version = 0
            for i, eid in enumerate(ids):
                res = await store.commit(Account("acme", version=version),
                                         expected_version=version, event_id=eid,
                                         now=T0 + timedelta(hours=i))
                assert res.ok
                version = res.version
            for eid in ids:
                again = await store.commit(Account("acme"), expected_version=version,
                                           event_id=eid, now=T0 + timedelta(days=2))
                assert again.status == "duplicate", eid
                assert await store.was_applied("acme", eid)
            fields = await raw.hgetall(keys.account("acme"))
            assert 0 < len(fields[b"e"]) <= EVENTS_BYTES
            assert await raw.zcard(keys.applied_events("acme")) + fields[b"e"].count(
                b"\x1e") == len(ids)
            later = T0 + timedelta(milliseconds=IDEMPOTENCY_RETENTION_MS, days=2)
            res = await store.commit(Account("acme"), expected_version=version,
                                     event_id="late", now=later)
            assert res.ok
            assert await raw.hget(keys.account("acme"), "e") == b"\x1elate\x1f" + str(
                ms(later)).encode()
            assert not await raw.exists(keys.applied_events("acme"))
            assert not await store.was_applied("acme", ids[-1])
        finally:
            await client.aclose()
            await raw.aclose()

    asyncio.run(main())


def test_seat_changes_beyond_their_budget_go_to_the_list_and_read_whole(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def main() -> None:
        client = connect(redis_url)
        raw = connect_redis_py(redis_url)
        usage = UsageStore(client, Scripts(client))
        try:
            for v in range(1, 11):
                roster = Seats(frozenset(f"user-{i}" for i in range(v)))
                await usage.log_seats("acme", v, roster, T0 + timedelta(days=v))
            got = await usage.month("acme", "2026-10", T0, T0 + timedelta(days=31))
            assert [len(seats.named) for _, seats in got.seat_log] == list(range(1, 11))
            assert [at for at, _ in got.seat_log] == [
                int((T0 + timedelta(days=v)).timestamp()) for v in range(1, 11)]
            newest = await raw.hget(keys.account("acme"), "s") or b""
            assert 0 < len(newest) <= SEAT_CHANGES_BYTES
            assert await raw.llen(keys.seat_changes("acme")) + newest.count(b"\x1e") == 10
        finally:
            await client.aclose()
            await raw.aclose()

    asyncio.run(main())
