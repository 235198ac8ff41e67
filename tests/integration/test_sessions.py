"""Sessions and seats end to end: real servers, a real redis-server, real gRPC."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.clock import to_ms
from sessiongate.domain.sessions import parse_session_id
from sessiongate.store import keys
from sessiongate.store.batch import BatchWriter
from tests.support import ServerThread, make_settings

TTL = 300.0  # the default session_ttl


def upsert(srv: ServerThread, **fields: object) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


def login(srv: ServerThread, account: str, user: str, **kw: object) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(
        spb.CheckSessionRequest(account_id=account, user_id=user, **kw))  # type: ignore[arg-type]


def heartbeat(srv: ServerThread, sid: str) -> spb.HeartbeatResponse:
    return srv.sessions.Heartbeat(spb.HeartbeatRequest(session_id=sid))


def end(srv: ServerThread, sid: str) -> bool:
    return srv.sessions.EndSession(spb.EndSessionRequest(session_id=sid)).ended


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def commands(r: redis.Redis, name: str) -> int:
    stats = r.info("commandstats")
    return int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))


def test_login_opens_a_session_that_heartbeats_and_ends(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    upsert(server, account_id="acme", users=["alice"])
    r = login(server, "acme", "alice")
    assert r.decision == cpb.DECISION_ALLOW and r.session_id
    now = server.clock.now()
    assert r.session_expires_at.ToDatetime() == (now + timedelta(seconds=TTL)).replace(tzinfo=None)
    ref = parse_session_id("session_id", r.session_id)
    assert (ref.account_id, ref.user_id) == ("acme", "alice")
    # Written off the hot path, by the batch writer, within its flush interval.
    wait_for(lambda: redis_client.zscore(keys.sessions("acme"), ref.member) is not None)
    server.clock.advance(timedelta(seconds=100))
    hb = heartbeat(server, r.session_id)
    assert (hb.decision, hb.reason) == (cpb.DECISION_ALLOW, cpb.REASON_OK)
    assert hb.expires_at.ToDatetime() == (
        server.clock.now() + timedelta(seconds=TTL)).replace(tzinfo=None)
    assert end(server, r.session_id) is True
    assert end(server, r.session_id) is False
    assert redis_client.zcard(keys.seats("acme")) == 0


def test_no_session_and_denied_logins_open_nothing(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    upsert(server, account_id="acme", users=["alice"])
    assert login(server, "acme", "alice", no_session=True).session_id == ""
    assert login(server, "acme", "mallory").session_id == ""
    assert login(server, "ghost", "alice").session_id == ""
    server.call(next(c for c in server.app.components if isinstance(c, BatchWriter)).flush())
    assert redis_client.zcard(keys.sessions("acme")) == 0


@pytest.fixture
def long_cache_server(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    """Nothing but the calls under test: no scheduler sweeping in the background, and a
    near-cache TTL long enough that a slow machine cannot turn a hit into a miss."""
    srv = ServerThread(make_settings(redis_url, near_cache_ttl=600.0, scheduler=False)).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_hot_path_login_makes_no_redis_round_trip(
    long_cache_server: ServerThread, redis_client: redis.Redis
) -> None:
    """Once the account is in the near-cache, an unlimited login reads and evaluates nothing."""
    server = long_cache_server
    upsert(server, account_id="acme")
    login(server, "acme", "warmup")
    before = {c: commands(redis_client, c) for c in ("hmget", "get", "evalsha", "eval")}
    for i in range(20):
        assert login(server, "acme", f"u{i}").decision == cpb.DECISION_ALLOW
    after = {c: commands(redis_client, c) for c in before}
    assert after == before
    # ... and the records still arrive, in batches.
    wait_for(lambda: redis_client.zcard(keys.leases("acme")) == 2 * 21)  # sessions and seats


def test_seat_limited_login_costs_one_lua_call(
    long_cache_server: ServerThread, redis_client: redis.Redis
) -> None:
    server = long_cache_server
    upsert(server, account_id="acme", seat_limit=3)
    login(server, "acme", "warmup")
    (writer,) = [c for c in server.app.components if isinstance(c, BatchWriter)]
    before = commands(redis_client, "evalsha")
    queued = writer.written + writer.pending
    for user in ("a", "b", "c", "d"):
        login(server, "acme", user)
    assert commands(redis_client, "evalsha") - before == 4
    # The admitted logins' records came with their seats (the refused "d" has none): there
    # is nothing left for the batch writer to write.
    now = server.clock.now()
    fields = redis_client.hkeys(keys.usage("acme", now.strftime("%Y-%m")))
    day = f"{now.day:02d}"
    assert {f.decode() for f in fields if f.startswith(f"a:{day}:".encode())} == {
        f"a:{day}:{u}" for u in ("warmup", "a", "b")}
    assert sum(f.startswith(f"l:{day}:".encode()) for f in fields) == 3
    assert writer.written + writer.pending == queued


def test_same_user_takes_one_seat(server: ServerThread) -> None:
    upsert(server, account_id="acme", seat_limit=1)
    first = login(server, "acme", "alice")
    second = login(server, "acme", "alice")
    assert first.decision == second.decision == cpb.DECISION_ALLOW
    bob = login(server, "acme", "bob")
    assert (bob.decision, bob.reason) == (cpb.DECISION_DENY, cpb.REASON_SEAT_LIMIT_REACHED)
    assert bob.session_id == ""
    assert end(server, first.session_id)
    assert login(server, "acme", "bob").reason == cpb.REASON_SEAT_LIMIT_REACHED  # alice's 2nd
    assert end(server, second.session_id)
    assert login(server, "acme", "bob").decision == cpb.DECISION_ALLOW


def test_expired_session_frees_its_seat_and_heartbeats_keep_it(server: ServerThread) -> None:
    upsert(server, account_id="acme", seat_limit=1)
    alice = login(server, "acme", "alice")
    server.clock.advance(timedelta(seconds=200))
    assert heartbeat(server, alice.session_id).decision == cpb.DECISION_ALLOW
    server.clock.advance(timedelta(seconds=200))  # 400 s after login, 200 after the heartbeat
    assert login(server, "acme", "bob").reason == cpb.REASON_SEAT_LIMIT_REACHED
    server.clock.advance(timedelta(seconds=101))  # heartbeats stopped: the lease lapsed
    bob = login(server, "acme", "bob")
    assert bob.decision == cpb.DECISION_ALLOW
    # alice comes back: her session expired and the only seat is bob's now.
    hb = heartbeat(server, alice.session_id)
    assert (hb.decision, hb.reason) == (cpb.DECISION_DENY, cpb.REASON_SEAT_LIMIT_REACHED)
    assert end(server, alice.session_id) is False


def test_heartbeat_learns_of_a_suspension_and_frees_the_seat(
    server: ServerThread, redis_client: redis.Redis
) -> None:
    upsert(server, account_id="acme", seat_limit=2)
    s = login(server, "acme", "alice")
    upsert(server, account_id="acme", seat_limit=2, state=cpb.ACCOUNT_STATE_SUSPENDED)
    hb = heartbeat(server, s.session_id)
    assert (hb.decision, hb.reason) == (cpb.DECISION_DENY, cpb.REASON_ACCOUNT_SUSPENDED)
    assert not hb.HasField("expires_at")
    assert redis_client.zcard(keys.seats("acme")) == 0


@pytest.mark.parametrize("sid", ["", "not a session", "YWJj", "x" * 1000])
def test_bad_session_ids_are_invalid_argument(server: ServerThread, sid: str) -> None:
    for call in (heartbeat, end):
        with pytest.raises(grpc.RpcError) as err:
            call(server, sid)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (err.value.details() or "").startswith("session_id")


@pytest.fixture
def second_server(server: ServerThread, redis_url: str) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(redis_url), clock=server.clock).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_seat_race_across_two_servers_admits_exactly_the_limit(
    server: ServerThread, second_server: ServerThread, redis_client: redis.Redis
) -> None:
    upsert(server, account_id="race", seat_limit=5)
    servers = [server, second_server]

    def attempt(i: int) -> spb.CheckSessionResponse:
        return login(servers[i % 2], "race", f"user-{i}")

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(attempt, range(200)))
    allowed = [r for r in results if r.decision == cpb.DECISION_ALLOW]
    assert len(allowed) == 5
    assert all(r.reason == cpb.REASON_SEAT_LIMIT_REACHED for r in results
               if r.decision != cpb.DECISION_ALLOW)
    assert redis_client.zcount(keys.leases("race"), keys.SEAT_OFFSET_MS, "+inf") == 5
    # Any replica renews any replica's session.
    for r in allowed:
        assert heartbeat(second_server, r.session_id).decision == cpb.DECISION_ALLOW


def test_a_suspended_parent_suspends_its_children(server: ServerThread) -> None:
    upsert(server, account_id="partner")
    upsert(server, account_id="child", parent_id="partner", seat_limit=2)
    upsert(server, account_id="gov", parent_id="partner", exempt=True)
    s = login(server, "child", "alice")
    assert s.decision == cpb.DECISION_ALLOW
    upsert(server, account_id="partner", state=cpb.ACCOUNT_STATE_SUSPENDED)
    r = login(server, "child", "bob")
    assert (r.decision, r.reason, r.state) == (
        cpb.DECISION_DENY, cpb.REASON_ACCOUNT_SUSPENDED, cpb.ACCOUNT_STATE_ACTIVE)
    assert "partner" in r.message and r.session_id == ""
    assert heartbeat(server, s.session_id).reason == cpb.REASON_ACCOUNT_SUSPENDED
    assert login(server, "gov", "clerk").decision == cpb.DECISION_ALLOW  # exempt child
    upsert(server, account_id="partner", state=cpb.ACCOUNT_STATE_ACTIVE)
    assert login(server, "child", "bob").decision == cpb.DECISION_ALLOW


def test_batch_writer_retries_while_redis_cannot_write_without_counting_twice(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """Redis refuses writes for now (out of memory): the records stay queued, not
    dead-lettered, and are written once when it can write again."""
    import asyncio
    from datetime import UTC, datetime

    from sessiongate.domain.sessions import new_session
    from sessiongate.store.client import transport

    at = datetime(2026, 10, 5, 9, tzinfo=UTC)
    ref = new_session("acme", "alice")
    redis_client.set("ballast", "x" * 4096)

    async def run() -> tuple[int, int, int, int]:
        client = transport(redis_url)
        try:
            writer = BatchWriter(client)
            writer.login(ref, to_ms(at), to_ms(at + timedelta(seconds=TTL)))
            redis_client.config_set("maxmemory", 1)
            try:
                first = await writer.flush()
                failures, pending = writer.failures, writer.pending
            finally:
                redis_client.config_set("maxmemory", 0)
            second = await writer.flush()
            assert writer.failures == 0 and writer.pending == 0
            assert (writer.dead, writer.lost, writer.written) == (0, 0, 1)
            return first, failures, pending, second
        finally:
            await client.aclose()

    assert asyncio.run(run()) == (0, 1, 1, 1)
    assert set(redis_client.hkeys(keys.usage("acme", "2026-10"))) == {
        f"l:05:{ref.nonce}".encode(), b"a:05:alice"}
    assert redis_client.zcard(keys.leases("acme")) == 2  # the session and its seat
    assert redis_client.exists(keys.BATCH_DEAD_LETTER) == 0


def test_batch_writer_writes_a_backlog_in_bounded_pipelines(
    redis_client: redis.Redis, redis_url: str
) -> None:
    import asyncio
    from datetime import UTC, datetime

    from sessiongate.domain.sessions import new_session
    from sessiongate.store.batch import MAX_BATCH
    from sessiongate.store.client import transport

    at = datetime(2026, 10, 5, 9, tzinfo=UTC)
    count = 2 * MAX_BATCH + 7

    async def run() -> int:
        client = transport(redis_url)
        try:
            writer = BatchWriter(client)
            for i in range(count):
                writer.login(new_session("acme", f"u{i}"), to_ms(at),
                             to_ms(at + timedelta(seconds=TTL)))
            return await writer.flush()
        finally:
            await client.aclose()

    assert asyncio.run(run()) == count
    fields = redis_client.hkeys(keys.usage("acme", "2026-10"))
    assert sum(f.startswith(b"l:05:") for f in fields) == count
    assert redis_client.zcard(keys.leases("acme")) == 2 * count  # sessions and seats


def test_batch_writer_names_each_record_by_its_own_day_month_and_account(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """One batch over midnight at a month's end and two accounts: the names it makes once a
    batch (day, month, usage key) are each record's own."""
    import asyncio
    from datetime import UTC, datetime

    from sessiongate.domain.sessions import new_session
    from sessiongate.store.client import transport

    before = datetime(2026, 10, 31, 23, 59, 59, 900_000, tzinfo=UTC)
    after = datetime(2026, 11, 1, 0, 0, 0, 100_000, tzinfo=UTC)
    logins = [(new_session("acme", "alice"), before), (new_session("beta", "bob"), before),
              (new_session("acme", "carol"), after), (new_session("beta", "bob"), after)]

    async def run() -> int:
        client = transport(redis_url)
        try:
            writer = BatchWriter(client)
            for ref, at in logins:
                writer.login(ref, to_ms(at), to_ms(at + timedelta(seconds=TTL)))
            return await writer.flush()
        finally:
            await client.aclose()

    assert asyncio.run(run()) == 4
    (a_oct, b_oct, a_nov, b_nov) = (ref.nonce for ref, _ in logins)
    assert set(redis_client.hkeys(keys.usage("acme", "2026-10"))) == {
        f"l:31:{a_oct}".encode(), b"a:31:alice"}
    assert set(redis_client.hkeys(keys.usage("acme", "2026-11"))) == {
        f"l:01:{a_nov}".encode(), b"a:01:carol"}
    assert set(redis_client.hkeys(keys.usage("beta", "2026-10"))) == {
        f"l:31:{b_oct}".encode(), b"a:31:bob"}
    assert set(redis_client.hkeys(keys.usage("beta", "2026-11"))) == {
        f"l:01:{b_nov}".encode(), b"a:01:bob"}
    assert redis_client.zcard(keys.leases("acme")) == 4  # two sessions, two seats
    assert redis_client.zcard(keys.leases("beta")) == 3  # two sessions, bob's seat


def test_batch_writer_drops_ended_leases_and_never_shortens_the_lease_sets_life(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """`record_logins.lua`'s housekeeping, as take_seat.lua's: leases that ended before the
    batch's first login go; the set lives a day past its longest lease, a longer TTL stays;
    a user's seat keeps its latest expiry (GT) whatever the order of the logins."""
    import asyncio
    from datetime import UTC, datetime

    from sessiongate.domain.sessions import new_session
    from sessiongate.store.client import transport
    from sessiongate.store.sessions import LEASE_KEYS_MARGIN_MS

    at = datetime(2026, 10, 5, 9, tzinfo=UTC)
    leases = keys.leases("acme")
    redis_client.zadd(leases, {"ghost\x1fold": 1_000})  # ended long ago
    late, early = new_session("acme", "alice"), new_session("acme", "alice")

    async def run(ttl: timedelta) -> int:
        client = transport(redis_url)
        try:
            writer = BatchWriter(client)
            writer.login(late, to_ms(at), to_ms(at + 2 * ttl))
            writer.login(early, to_ms(at), to_ms(at + ttl))
            return await writer.flush()
        finally:
            await client.aclose()

    ttl = timedelta(seconds=TTL)
    assert asyncio.run(run(ttl)) == 2
    members = dict(redis_client.zrange(leases, 0, -1, withscores=True))
    end = int((at + 2 * ttl).timestamp() * 1000)
    assert members == {late.member.encode(): end, early.member.encode(): end - int(TTL * 1000),
                       b"alice": end}
    keep = int(2 * TTL * 1000) + LEASE_KEYS_MARGIN_MS
    assert keep - 5_000 < redis_client.pttl(leases) <= keep
    redis_client.pexpire(leases, 10 * keep)
    assert asyncio.run(run(ttl)) == 2
    assert redis_client.pttl(leases) > 9 * keep


def test_batch_writer_loads_its_script_again_after_a_script_flush(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """A restarted Redis (or SCRIPT FLUSH) knows no `record_logins.lua`: the batch is written
    all the same (NOSCRIPT: loaded, called again), nothing dead-lettered or lost."""
    import asyncio
    from datetime import UTC, datetime

    from sessiongate.domain.sessions import new_session
    from sessiongate.store.client import transport

    at = datetime(2026, 10, 5, 9, tzinfo=UTC)
    refs = [new_session("acme", "alice"), new_session("beta", "bob")]

    async def run() -> tuple[int, int, int, int]:
        client = transport(redis_url)
        try:
            writer = BatchWriter(client)
            writer.login(refs[0], to_ms(at), to_ms(at + timedelta(seconds=TTL)))
            first = await writer.flush()
            redis_client.script_flush()
            writer.login(refs[1], to_ms(at), to_ms(at + timedelta(seconds=TTL)))
            second = await writer.flush()
            return first, second, writer.dead, writer.lost
        finally:
            await client.aclose()

    assert asyncio.run(run()) == (1, 1, 0, 0)
    assert redis_client.zcard(keys.leases("beta")) == 2  # the session and its seat
    assert f"l:05:{refs[1].nonce}".encode() in redis_client.hkeys(keys.usage("beta", "2026-10"))
