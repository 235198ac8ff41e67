"""Issue #5, Redis memory: an account in one hash. The hash's growing fields stay within
their budgets, and what they push out is still read.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import redis
from redis.asyncio import Redis as AsyncRedis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.model import Account
from sessiongate.domain.proration import Seats
from sessiongate.service.convert import ts
from sessiongate.store import keys
from sessiongate.store.accounts import IDEMPOTENCY_RETENTION_MS, AccountStore
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
def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


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
        raw = AsyncRedis.from_url(redis_url)
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
        raw = AsyncRedis.from_url(redis_url)
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
