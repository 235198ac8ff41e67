"""Usage recording on a real 3-master Redis Cluster: sharded usage streams, one slot per event."""

from __future__ import annotations

from redis.cluster import RedisCluster

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.store import keys
from sessiongate.store.slots import BUCKETS, bucket_of
from tests.support import ServerThread

ACCOUNTS = [f"usage-{i}" for i in range(8)]


def test_usage_is_recorded_once_into_its_bucket_shard(cluster_server: ServerThread) -> None:
    srv = cluster_server
    for aid in ACCOUNTS:
        srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(account_id=aid)))
    for aid in ACCOUNTS:
        for n in range(3):
            event = spb.UsageEvent(event_id=f"{aid}-e{n}", account_id=aid, user_id="u",
                                   feature="exports", quantity=2)
            assert not srv.sessions.RecordUsage(event).duplicate
            assert srv.sessions.RecordUsage(event).duplicate  # a retry counts once
    batch = srv.sessions.RecordUsageStream(iter([
        spb.UsageEvent(event_id=f"s{i}", account_id=ACCOUNTS[i % 8], user_id="u",
                       feature="exports", quantity=1) for i in range(16)]))
    assert (batch.accepted, batch.duplicates) == (16, 0)

    client = RedisCluster.from_url(srv.app.settings.redis_url.replace("+cluster", ""))
    try:
        per_account: dict[str, int] = {}
        for b in range(BUCKETS):
            for _id, fields in client.xrange(keys.usage_shard(b)):
                aid = fields[b"account_id"].decode()
                assert bucket_of(aid) == b  # each event sits in its account's shard
                per_account[aid] = per_account.get(aid, 0) + int(fields[b"quantity"])
        assert per_account == {aid: 3 * 2 + 2 for aid in ACCOUNTS}
        assert not client.exists(keys.USAGE_STREAM)
    finally:
        client.close()
