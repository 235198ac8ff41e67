"""The login batch writer under a record Redis refuses, and ids that spell other keys (issue 26,
item 4): a real server, real gRPC, a real redis-server, its Prometheus endpoint.

Account `tenant19:quota:all`'s lease set used to be account `tenant19`'s counter of feature
`leases`; the batch writer then retried its first 2,000 records forever, so most logins of
every other account never reached Redis, with no metric, and a stop dropped them silently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import redis
from structlog.testing import capture_logs

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.clock import to_ms
from sessiongate.domain.sessions import new_session
from sessiongate.store import keys
from sessiongate.store.batch import BatchWriter
from sessiongate.store.client import transport
from sessiongate.store.embedded import free_port
from tests.integration.test_metrics import scrape, value
from tests.integration.test_sessions import login, upsert, wait_for
from tests.support import ServerThread, make_settings

NOW = datetime(2026, 10, 5, 9, tzinfo=UTC)


@pytest.fixture
def metered(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(redis_url, scheduler=False, metrics_addr="127.0.0.1:0",
                                     near_cache_ttl=600.0)).start()
    srv.clock.set(NOW)
    try:
        yield srv
    finally:
        srv.stop()


def writer_of(srv: ServerThread) -> BatchWriter:
    (writer,) = [c for c in srv.app.components if isinstance(c, BatchWriter)]
    return writer


def test_a_refused_record_is_dead_lettered_and_holds_back_no_other_login(
    metered: ServerThread, redis_client: redis.Redis
) -> None:
    server = metered
    upsert(server, account_id="victim")
    upsert(server, account_id="other")
    redis_client.set(keys.leases("victim"), "in the way")  # the victim's records: WRONGTYPE
    logins = 6_400
    victims = [i for i in range(logins) if i % 640 == 0]  # 10, spread over the batches

    def one(i: int) -> int:
        if i in victims:
            assert login(server, "victim", f"v{i}").decision == cpb.DECISION_ALLOW
        return login(server, "other", f"u{i % 64}").decision

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(logins))) == {cpb.DECISION_ALLOW}
    month = keys.usage("other", "2026-10")
    wait_for(lambda: sum(f.startswith(b"l:") for f in redis_client.hkeys(month)) == logins,
             timeout=30)
    assert redis_client.zcard(keys.leases("other")) == logins + 64  # sessions and seats
    writer = writer_of(server)
    wait_for(lambda: writer.dead == len(victims) and writer.pending == 0)
    dead = redis_client.xrange(keys.BATCH_DEAD_LETTER)
    assert len(dead) == len(victims)
    assert {f[b"account_id"] for _, f in dead} == {b"victim"}
    assert sorted(f[b"user_id"].decode() for _, f in dead) == sorted(f"v{i}" for i in victims)
    assert all(b"WRONGTYPE" in f[b"reason"] and keys.leases("victim").encode() in f[b"reason"]
               for _, f in dead)
    assert redis_client.get(keys.leases("victim")) == b"in the way"  # left for an operator

    assert server.app.metrics is not None
    m = scrape(server.app.metrics.port)
    assert value(m, "sessiongate_batch_records_total", outcome="dead_lettered") == len(victims)
    assert value(m, "sessiongate_batch_records_total", outcome="written") == logins
    assert value(m, "sessiongate_batch_records_total", outcome="lost") == 0
    assert ("sessiongate_batch_queue_length", ()) in m
    assert value(m, "sessiongate_batch_queue_length") == 0
    assert value(m, "sessiongate_batch_queue_oldest_seconds") == 0


def test_ids_that_spell_another_accounts_keys_both_work(
    metered: ServerThread, redis_client: redis.Redis
) -> None:
    """The issue's pair: a lease set and a quota counter at what used to be one key."""
    server = metered
    server.accounts.UpsertPlan(apb.Plan(plan_id="metered", features=[
        apb.Feature(name="leases", kind=apb.FEATURE_KIND_METERED, quota=100,
                    period=apb.RESET_PERIOD_NEVER, limit=apb.LIMIT_MODE_HARD)]))
    upsert(server, account_id="tenant19", plan_id="metered")
    upsert(server, account_id="tenant19:quota:all")

    def consume(n: int) -> spb.EntitlementResponse:
        return server.sessions.ConsumeEntitlement(spb.EntitlementRequest(
            account_id="tenant19", user_id="alice", feature="leases", quantity=n))

    writer = writer_of(server)
    first = login(server, "tenant19:quota:all", "alice")
    server.call(writer.flush())
    assert consume(5).remaining == 95
    second = login(server, "tenant19:quota:all", "bob")
    server.call(writer.flush())
    assert consume(1).remaining == 94
    assert redis_client.zcard(keys.leases("tenant19:quota:all")) == 4  # 2 sessions, 2 seats
    assert (writer.dead, writer.lost, writer.pending) == (0, 0, 0)
    for r in (first, second):
        assert server.sessions.EndSession(spb.EndSessionRequest(session_id=r.session_id)).ended


def test_a_stop_with_redis_unreachable_reports_exactly_what_it_could_not_write() -> None:
    """Nothing listens on the port: the final flush fails, and the records are counted and
    logged as lost, not dropped silently."""

    async def run() -> tuple[BatchWriter, list[dict[str, object]]]:
        client = transport(f"redis://127.0.0.1:{free_port()}/0?socket_connect_timeout=0.5"
                           "&socket_timeout=0.5")
        writer = BatchWriter(client)
        await writer.start()
        for i in range(37):
            writer.login(new_session(f"acct{i % 3}", f"u{i}"), to_ms(NOW),
                         to_ms(NOW + timedelta(minutes=5)))
        with capture_logs() as logs:
            await writer.stop()
        await client.aclose()
        return writer, logs

    writer, logs = asyncio.run(run())
    assert (writer.written, writer.dead, writer.lost, writer.pending) == (0, 0, 37, 0)
    lost = [e for e in logs if e["event"] == "login records lost"]
    assert len(lost) == 1 and lost[0]["records"] == 37, logs
    assert lost[0]["accounts"] == ["acct0", "acct1", "acct2"]
