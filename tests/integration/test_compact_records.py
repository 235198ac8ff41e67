"""Issue #5, Redis memory per account: records stay in Redis's compact encodings."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.clock import to_ms
from sessiongate.service.convert import ts
from sessiongate.store import keys
from tests.support import ServerThread

DAY = 86_400
COMPACT = {b"ziplist", b"listpack"}  # Redis 6 / Redis 7 names of the compact encodings


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def compact_hashes(client: redis.Redis) -> None:
    """The setting deploy/README.md asks for (EmbeddedRedis sets it; a server given by
    SESSIONGATE_TEST_REDIS_URL may not have)."""
    from sessiongate.store.embedded import HASH_MAX_VALUE, HASH_VALUE_SETTINGS

    for name in HASH_VALUE_SETTINGS:
        try:
            client.config_set(name, HASH_MAX_VALUE)
            return
        except redis.ResponseError:
            continue


def seat_changes(client: redis.Redis, aid: str) -> list[bytes]:
    """The seat changes kept in the account hash (`s`)."""
    return (client.hget(keys.account(aid), "s") or b"").split(b"\x1e")[1:]


def summary(srv: ServerThread) -> apb.UsageSummary:
    return srv.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
        account_id="acme", period="2026-10", seat_unit_price_minor=3100))


def test_batch_writes_drop_the_ended_leases_of_an_account_without_seat_limit(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """Its logins never run take_seat.lua: the batch writer must trim, or the set only grows."""
    import asyncio
    from datetime import timedelta

    from sessiongate.domain.sessions import new_session
    from sessiongate.store.batch import BatchWriter
    from sessiongate.store.client import transport

    t0 = datetime(2026, 10, 5, 9, tzinfo=UTC)
    lease = timedelta(minutes=5)
    old, live, new = (new_session("acme", u) for u in ("alice", "bob", "carol"))

    async def run() -> None:
        client = transport(redis_url)
        try:
            writer = BatchWriter(client)
            writer.login(old, to_ms(t0), to_ms(t0 + lease))
            writer.login(live, to_ms(t0), to_ms(t0 + 3 * lease))
            await writer.flush()
            writer.login(new, to_ms(t0 + 2 * lease), to_ms(t0 + 3 * lease))
            await writer.flush()
        finally:
            await client.aclose()

    asyncio.run(run())
    assert set(redis_client.zrange(keys.leases("acme"), 0, -1)) == {
        live.member.encode(), new.member.encode(), b"bob", b"carol"}
    fields = redis_client.hkeys(keys.usage("acme", "2026-10"))
    assert sum(f.startswith(b"l:05:") for f in fields) == 3  # logins are kept: report data


def test_an_account_of_ten_users_with_an_invoice_and_a_session_stays_small(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """The bench's memory scenario, as a size budget: MEMORY USAGE of the account's own keys
    (3,235 bytes in the first layout, 1,824 with compact records, ~830 in one hash)."""
    from sessiongate.store.activity import SEP

    compact_hashes(redis_client)
    server.clock.set(datetime(2026, 10, 5, 9, tzinfo=UTC))
    users = [f"user-{i}" for i in range(10)]
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="mem-00000", users=users, seat_limit=10)))
    server.billing.PushPaymentEvent(bpb.PaymentEvent(
        event_id="mem-00000-inv", account_id="mem-00000",
        type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED, invoice_id="mem-00000-inv",
        amount_minor=12000, due_at=ts(datetime(2026, 10, 15, tzinfo=UTC))))
    assert server.sessions.CheckSession(spb.CheckSessionRequest(
        account_id="mem-00000", user_id="user-0")).session_id
    month = keys.usage("mem-00000", "2026-10")
    until(lambda: any(f.startswith(b"a:05:") for f in redis_client.hkeys(month)))

    prefix = keys.account("mem-00000").removesuffix("account")
    sizes = {k.decode().removeprefix(prefix): int(redis_client.memory_usage(k, samples=0) or 0)
             for k in redis_client.scan_iter(match=prefix + "*")}
    assert set(sizes) == {"account", "usage:2026-10", "leases"}
    assert sum(sizes.values()) < 900, sizes
    for key in sizes:
        assert redis_client.object("encoding", prefix + key) in COMPACT, key
    fields = redis_client.hgetall(keys.account("mem-00000"))
    assert set(fields) == {b"data", b"v", b"l", b"h", b"s"}  # the invoice id: in the ledger
    assert SEP.encode() in fields[b"s"]


def test_the_lease_set_expires_a_day_after_its_latest_lease(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """Housekeeping TTLs (leases are decided by scores): set by both writers, never shortened."""
    from sessiongate.store.sessions import LEASE_KEYS_MARGIN_MS

    server.clock.set(datetime(2026, 10, 5, 9, tzinfo=UTC))
    bound = LEASE_KEYS_MARGIN_MS + 3_600_000  # the margin plus the lease (300 s here)
    for aid, limit in (("limited", 5), ("open", 0)):
        server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
            account_id=aid, users=["alice"], seat_limit=limit)))
        assert server.sessions.CheckSession(spb.CheckSessionRequest(
            account_id=aid, user_id="alice")).session_id
    until(lambda: redis_client.exists(keys.leases("open")) == 1)
    for aid in ("limited", "open"):
        ttl = redis_client.pttl(keys.leases(aid))
        assert LEASE_KEYS_MARGIN_MS < ttl <= bound, (aid, ttl)
    # A login extends a shorter TTL and never shortens a longer one (take_seat.lua).
    redis_client.pexpire(keys.leases("limited"), 1_000)
    server.sessions.CheckSession(spb.CheckSessionRequest(account_id="limited", user_id="alice"))
    assert LEASE_KEYS_MARGIN_MS < redis_client.pttl(keys.leases("limited")) <= bound
    redis_client.pexpire(keys.leases("limited"), 2 * bound)
    server.sessions.CheckSession(spb.CheckSessionRequest(account_id="limited", user_id="alice"))
    assert redis_client.pttl(keys.leases("limited")) > bound


def test_an_upsert_that_keeps_the_seats_logs_nothing(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """The seat log grows with seat changes, not with upserts: a new policy or exemption
    adds no entry, a roster or a seat-limit change adds one, and proration still sees it."""
    server.clock.set(datetime(2026, 10, 1, tzinfo=UTC))

    def upsert(**fields: object) -> None:
        server.accounts.UpsertAccount(apb.UpsertAccountRequest(
            account=apb.Account(account_id="acme", **fields)))  # type: ignore[arg-type]

    upsert(users=["alice", "bob"])
    assert len(seat_changes(redis_client, "acme")) == 1
    upsert(users=["bob", "alice"], exempt=True)
    upsert(users=["alice", "bob"], policy_id="strict")
    assert len(seat_changes(redis_client, "acme")) == 1
    server.clock.set(datetime(2026, 10, 16, tzinfo=UTC))
    upsert(users=["alice", "bob", "carol"])
    assert len(seat_changes(redis_client, "acme")) == 2
    upsert(users=["alice", "bob", "carol"], seat_limit=9)  # named users stay the seats
    assert len(seat_changes(redis_client, "acme")) == 2
    server.clock.set(datetime(2026, 11, 1, tzinfo=UTC))
    got = summary(server)
    assert got.peak_concurrent_seats == 3
    assert got.seat_seconds == 2 * 31 * DAY + 16 * DAY
