"""Issue #5, Redis memory per account: the compact layout, and records of the former one.

Records written by the release before the compact layout (per-day login sets, the month's
active-user set and peak-seats hash, the JSON seat-log zset, the long account JSON) must keep
counting in summaries and reports; new records must stay in Redis's compact encodings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
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


def test_records_of_the_former_layout_add_up_with_new_ones(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    oct1 = datetime(2026, 10, 1, tzinfo=UTC)
    server.clock.set(oct1)
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["alice", "bob", "carol"], seat_limit=5)))
    # Rewrite what that upsert logged as the former release wrote it, plus its login records.
    redis_client.hdel(keys.account("acme"), "s")
    redis_client.zadd(keys.seat_log("acme"),
                      {'{"v":1,"seats":["alice","bob","carol"]}': ms(oct1)})
    redis_client.sadd(keys.logins("acme", "2026-10-03"), "nonce-1", "nonce-2")
    redis_client.sadd(keys.active_users("acme", "2026-10"), "2026-10-03\x1falice")
    redis_client.hset(keys.peak_seats("acme", "2026-10"), "2026-10-03", 2)

    # The current release: carol leaves on Oct 11, bob logs in that day.
    server.clock.set(datetime(2026, 10, 11, tzinfo=UTC))
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["alice", "bob"], seat_limit=5)))
    server.clock.set(datetime(2026, 10, 11, 9, tzinfo=UTC))
    login = server.sessions.CheckSession(spb.CheckSessionRequest(account_id="acme",
                                                                 user_id="bob"))
    assert login.session_id
    server.clock.set(datetime(2026, 10, 12, tzinfo=UTC))
    until(lambda: summary(server).logins == 3)  # the login record is written in a batch

    got = summary(server)
    assert got.seat_seconds == (31 + 31 + 10) * DAY  # alice, bob all month; carol 10 days
    assert got.active_users == 2
    days = {d.day: d for d in got.days}
    assert (days["2026-10-03"].logins, days["2026-10-03"].active_users,
            days["2026-10-03"].peak_seats_in_use) == (2, 1, 2)
    assert (days["2026-10-11"].logins, days["2026-10-11"].active_users,
            days["2026-10-11"].peak_seats_in_use) == (1, 1, 1)

    # New records went to the compact keys only.
    assert redis_client.object("encoding", keys.usage("acme", "2026-10")) in COMPACT
    assert len(seat_changes(redis_client, "acme")) == 1
    assert not redis_client.exists(keys.seat_changes("acme"))
    assert redis_client.zcard(keys.seat_log("acme")) == 1
    assert not redis_client.exists(keys.logins("acme", "2026-10-11"))


def test_an_account_stored_as_the_former_json_still_works(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    """An account hash written by the former release: read, enforced, and rewritten compact."""
    server.clock.set(datetime(2026, 10, 1, tzinfo=UTC))
    since = ms(datetime(2026, 9, 1, tzinfo=UTC))
    legacy = {
        "id": "acme", "kind": "ENTERPRISE", "users": ["alice", "bob"], "policy": "",
        "plan": "", "exempt": False, "seats": 2, "parent": "", "admins": ["b@acme.test"],
        "tz": "UTC", "cur": "EUR", "state": "SUSPENDED", "since": since,
        "override": None, "balance": 12000, "due": since, "suspends": since,
        "next_eval": None, "extra": {},
    }
    redis_client.hset(keys.account("acme"), mapping={
        "data": json.dumps(legacy, separators=(",", ":")), "v": 3})
    redis_client.set(keys.ledger("acme"), (
        '{"cur":"EUR","events":{"inv-1-issued":{"t":"INVOICE_ISSUED","inv":"inv-1",'
        f'"amt":12000,"cur":"EUR","due":{since}}}}},"reminded":null}}'))

    got = server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert (list(got.users), got.seat_limit, got.currency, got.balance_minor, got.version,
            list(got.admin_emails)) == (["alice", "bob"], 2, "EUR", 12000, 3, ["b@acme.test"])
    assert got.state == cpb.ACCOUNT_STATE_SUSPENDED
    denied = server.sessions.CheckSession(spb.CheckSessionRequest(
        account_id="acme", user_id="alice", no_session=True))
    assert denied.reason == cpb.REASON_ACCOUNT_SUSPENDED

    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["alice", "bob", "carol"], seat_limit=2, currency="EUR")))
    data = redis_client.hget(keys.account("acme"), "data")
    assert data is not None and b'"policy"' not in data  # rewritten, defaults left out
    again = server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert (list(again.users), again.balance_minor, again.version) == (
        ["alice", "bob", "carol"], 12000, 4)

    # The former ledger JSON: a payment settles its invoice and reinstates at once.
    paid = server.billing.PushPaymentEvent(bpb.PaymentEvent(
        event_id="pay-1", account_id="acme", type=bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED,
        amount_minor=12000))
    assert not paid.duplicate
    after = server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert (after.state, after.balance_minor) == (cpb.ACCOUNT_STATE_ACTIVE, 0)
    # Moved into the account hash by the first commit, and rewritten compact by the payment.
    assert not redis_client.exists(keys.ledger("acme"))
    ledger = redis_client.hget(keys.account("acme"), "l")
    assert ledger is not None and ledger.startswith(b"EUR\x1e")


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
            writer.login(old, t0, t0 + lease)
            writer.login(live, t0, t0 + 3 * lease)
            await writer.flush()
            writer.login(new, t0 + 2 * lease, t0 + 3 * lease)
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
