"""Issue #5 on a real 3-master Redis Cluster: accounts of the former layout, spread over the
masters, are read, then moved into their hash by one commit script touching one slot."""

from __future__ import annotations

from datetime import UTC, datetime

from redis.cluster import RedisCluster

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.store import keys
from tests.cluster.cluster import LocalCluster
from tests.support import ServerThread

ACCOUNTS = [f"former-{i}" for i in range(6)]
NOW = datetime(2026, 10, 1, tzinfo=UTC)


def test_former_layout_moves_into_the_hash_on_a_cluster(
    cluster: LocalCluster, cluster_server: ServerThread
) -> None:
    srv = cluster_server
    srv.clock.set(NOW)
    lease = int(NOW.timestamp() * 1000) + 300_000
    r = RedisCluster.from_url(cluster.url)
    try:
        for aid in ACCOUNTS:
            r.hset(keys.account(aid), mapping={
                "data": f'{{"id":"{aid}","users":["alice","bob"],"seats":1}}', "v": 2})
            r.set(keys.ledger(aid), '{"cur":"USD","events":{}}')
            r.rpush(keys.history(aid), '{"at":"2026-09-01T00:00:00+00:00","from":null,'
                    '"to":"ACTIVE","cause":"account created","actor":"admin"}')
            r.rpush(keys.seat_changes(aid), "1\x1f1790000000000\x1falice\x1fbob")
            r.zadd(keys.legacy_seats(aid), {"alice": lease})
            r.zadd(keys.legacy_sessions(aid), {"alice\x1fn1": lease})
        for aid in ACCOUNTS:
            bob = srv.sessions.CheckSession(spb.CheckSessionRequest(account_id=aid,
                                                                    user_id="bob"))
            assert bob.reason == cpb.REASON_SEAT_LIMIT_REACHED  # alice's former seat counts
            assert not srv.billing.PushPaymentEvent(bpb.PaymentEvent(
                event_id=f"{aid}-pay", account_id=aid,
                type=bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED, amount_minor=5)).duplicate
            history = srv.accounts.GetAccountHistory(apb.GetAccountHistoryRequest(
                account_id=aid)).transitions
            assert [t.cause for t in history] == ["account created"]
            for key in (keys.ledger(aid), keys.history(aid), keys.seat_changes(aid),
                        keys.legacy_seats(aid), keys.legacy_sessions(aid)):
                assert not r.exists(key), key
            assert r.hget(keys.account(aid), "v") == b"0_3"
    finally:
        r.close()
