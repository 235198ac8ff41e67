"""The core scenarios on a real 3-master Redis Cluster (keys spread over every master)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.billing.consumer import PaymentConsumer
from sessiongate.domain.sessions import parse_session_id
from sessiongate.service.billing import engine_for
from sessiongate.store import keys
from sessiongate.store.batch import BatchWriter
from sessiongate.store.client import cluster_url
from sessiongate.store.slots import key_slot
from tests.cluster.cluster import LocalCluster
from tests.integration.dunning_support import T0, get, invoice, pay, start, sweeper
from tests.integration.test_metrics import scrape, value
from tests.support import ServerThread, make_settings

ACCOUNTS = [f"acct-{i}" for i in range(12)]


def upsert(srv: ServerThread, **fields: object) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


def check(srv: ServerThread, account: str, user: str) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(spb.CheckSessionRequest(account_id=account, user_id=user))


def masters_holding(cluster: LocalCluster, account_ids: list[str]) -> set[int]:
    """The ports of the masters that store these accounts' hashes (a node counts only the
    keys of the slots it serves)."""
    found = set()
    for port in cluster.ports:
        client = redis.Redis(port=port)
        try:
            for aid in account_ids:
                slot = key_slot(keys.account(aid))
                if client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot):
                    found.add(port)
        finally:
            client.close()
    return found


def test_the_cluster_url_scheme_selects_cluster_mode() -> None:
    assert cluster_url("redis+cluster://h:7000") == ("redis://h:7000", True)
    assert cluster_url("rediss+cluster://h:7000/0") == ("rediss://h:7000/0", True)
    assert cluster_url("redis://h:6379/0") == ("redis://h:6379/0", False)


def test_the_server_talks_to_the_cluster(cluster_server: ServerThread) -> None:
    assert cluster_server.app.rt is not None
    assert cluster_server.app.rt.transport.sharded


def test_a_cluster_url_needs_no_flag(cluster: LocalCluster) -> None:
    cluster.flush()
    url = cluster.url.replace("redis://", "redis+cluster://", 1)
    srv = ServerThread(make_settings(url)).start()
    try:
        assert srv.app.rt is not None and srv.app.rt.transport.sharded
        upsert(srv, account_id=ACCOUNTS[0], users=["alice"])
        assert check(srv, ACCOUNTS[0], "alice").decision == cpb.DECISION_ALLOW
    finally:
        srv.stop()


def test_login_on_every_master(cluster_server: ServerThread, cluster: LocalCluster) -> None:
    for aid in ACCOUNTS:
        created = upsert(cluster_server, account_id=aid, users=["alice", "bob"])
        assert created.version == 1
    # Twelve accounts over 64 buckets spread over three masters: every master holds some.
    assert masters_holding(cluster, ACCOUNTS) == set(cluster.ports)
    for aid in ACCOUNTS:
        r = check(cluster_server, aid, "alice")
        assert (r.decision, r.state, r.reason) == (
            cpb.DECISION_ALLOW, cpb.ACCOUNT_STATE_ACTIVE, cpb.REASON_OK)
        assert check(cluster_server, aid, "mallory").reason == cpb.REASON_USER_NOT_AUTHORIZED
    assert check(cluster_server, "nobody", "alice").reason == cpb.REASON_UNKNOWN_ACCOUNT
    got = cluster_server.accounts.GetAccount(apb.GetAccountRequest(account_id=ACCOUNTS[0]))
    assert sorted(got.users) == ["alice", "bob"]


def test_login_records_reach_every_master(cluster_server: ServerThread,
                                         cluster: LocalCluster) -> None:
    """The batch writer's one script call per account and day (`record_logins.lua`) names
    both of the account's keys, on its slot, wherever that slot lives."""
    cluster.flush()
    for aid in ACCOUNTS:
        upsert(cluster_server, account_id=aid, users=["alice", "bob"])
    sessions = {aid: [check(cluster_server, aid, user).session_id
                      for user in ("alice", "bob", "alice")] for aid in ACCOUNTS}
    writer = next(c for c in cluster_server.app.components if isinstance(c, BatchWriter))
    cluster_server.call(writer.flush())
    assert (writer.written, writer.dead, writer.lost) == (3 * len(ACCOUNTS), 0, 0)
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    try:
        month = cluster_server.clock.now().strftime("%Y-%m")
        for aid in ACCOUNTS:
            leases = {m.decode() for m in client.zrange(keys.leases(aid), 0, -1)}
            assert leases == {"alice", "bob"} | {
                member_of(sid) for sid in sessions[aid]}, aid  # sessions and seats
            fields = client.hkeys(keys.usage(aid, month))
            assert sum(f.startswith(b"l:") for f in fields) == 3
            assert sum(f.startswith(b"a:") for f in fields) == 2
            assert client.pttl(keys.leases(aid)) > 0
    finally:
        client.close()
    assert masters_holding(cluster, ACCOUNTS) == set(cluster.ports)


def member_of(session_id: str) -> str:
    return parse_session_id("session_id", session_id).member


def test_invalidation_reaches_another_replica(cluster: LocalCluster) -> None:
    """Two servers on the cluster: a write on one drops the other's near-cache entry."""
    settings = make_settings(cluster.url, redis_cluster=True, near_cache_ttl=3600.0)
    cluster.flush()
    a = ServerThread(settings).start()
    b = ServerThread(settings).start()
    try:
        for aid in ACCOUNTS:
            upsert(a, account_id=aid, users=["alice"])
            assert check(b, aid, "alice").decision == cpb.DECISION_ALLOW
            assert check(b, aid, "alice").source == cpb.STATE_SOURCE_NEAR_CACHE
        for aid in ACCOUNTS:
            upsert(a, account_id=aid, state=cpb.ACCOUNT_STATE_SUSPENDED)
        for aid in ACCOUNTS:
            deadline = time.monotonic() + 20.0
            r = check(b, aid, "alice")
            while r.reason != cpb.REASON_ACCOUNT_SUSPENDED and time.monotonic() < deadline:
                time.sleep(0.01)
                r = check(b, aid, "alice")
            assert (r.decision, r.reason, r.account_version) == (
                cpb.DECISION_DENY, cpb.REASON_ACCOUNT_SUSPENDED, 2)
    finally:
        a.stop()
        b.stop()


def test_payment_suspension_and_reinstatement(cluster: LocalCluster) -> None:
    """Invoices, 31 days of sweeps over the 64 sharded due indexes, then payments."""
    cluster.flush()
    srv = start(cluster.url, redis_cluster=True)
    try:
        for aid in ACCOUNTS:
            upsert(srv, account_id=aid, users=["alice"])
            assert invoice(srv, account=aid, event_id=f"{aid}-inv").state == (
                cpb.ACCOUNT_STATE_ACTIVE)
        sw = sweeper(srv)
        for _ in range(32):
            srv.clock.advance(timedelta(days=1))
            srv.call(sw.sweep_once())
        for aid in ACCOUNTS:
            assert get(srv, aid).state == cpb.ACCOUNT_STATE_SUSPENDED
            r = check(srv, aid, "alice")
            assert (r.decision, r.reason) == (cpb.DECISION_DENY, cpb.REASON_ACCOUNT_SUSPENDED)
        for aid in ACCOUNTS:
            paid = pay(srv, f"{aid}-pay", 12000, account=aid)
            assert (paid.state, paid.balance_minor) == (cpb.ACCOUNT_STATE_ACTIVE, 0)
            assert pay(srv, f"{aid}-pay", 12000, account=aid).duplicate
            r = check(srv, aid, "alice")
            assert (r.decision, r.reason) == (cpb.DECISION_ALLOW, cpb.REASON_OK)
    finally:
        srv.stop()


def test_seat_race_across_two_servers_admits_exactly_the_limit(cluster: LocalCluster) -> None:
    """Seats are taken by one Lua call on the account's slot, wherever that slot lives."""
    cluster.flush()
    servers = [ServerThread(make_settings(cluster.url, redis_cluster=True)).start()
               for _ in range(2)]
    try:
        races = ACCOUNTS[:3]  # on three different buckets
        for aid in races:
            upsert(servers[0], account_id=aid, seat_limit=3)

        def attempt(i: int) -> tuple[str, spb.CheckSessionResponse]:
            aid = races[i % len(races)]
            return aid, servers[i % 2].sessions.CheckSession(
                spb.CheckSessionRequest(account_id=aid, user_id=f"user-{i}"))

        with ThreadPoolExecutor(24) as pool:
            results = list(pool.map(attempt, range(120)))
        for aid in races:
            mine = [r for a, r in results if a == aid]
            allowed = [r for r in mine if r.decision == cpb.DECISION_ALLOW]
            assert len(allowed) == 3
            assert all(r.reason == cpb.REASON_SEAT_LIMIT_REACHED for r in mine
                       if r.decision != cpb.DECISION_ALLOW)
            for r in allowed:  # any replica renews any replica's session
                hb = servers[1].sessions.Heartbeat(
                    spb.HeartbeatRequest(session_id=r.session_id))
                assert hb.decision == cpb.DECISION_ALLOW
        # A login without a seat limit opens its session off the hot path (batched writes).
        upsert(servers[0], account_id="open", users=["alice"])
        opened = check(servers[0], "open", "alice")
        assert opened.decision == cpb.DECISION_ALLOW and opened.session_id
    finally:
        for srv in servers:
            srv.stop()


def test_payment_stream_consumer_on_the_cluster(cluster: LocalCluster) -> None:
    """Entries XADDed by the billing system: consumer group, apply, acknowledge, dead letter."""
    cluster.flush()
    srv = start(cluster.url, redis_cluster=True)
    client = redis.RedisCluster.from_url(cluster.url)
    try:
        for aid in ACCOUNTS[:6]:
            upsert(srv, account_id=aid, users=["alice"])
        due = str(int((T0 - timedelta(days=40)).timestamp()))
        for aid in ACCOUNTS[:6]:
            client.xadd(keys.PAYMENT_STREAM, {
                "event_id": f"{aid}-i", "account_id": aid, "type": "INVOICE_ISSUED",
                "invoice_id": "inv-1", "amount_minor": "500", "due_at": due})
        client.xadd(keys.PAYMENT_STREAM, {"event_id": "x", "account_id": "nobody",
                                          "type": "PAYMENT_SUCCEEDED", "amount_minor": "1"})
        rt = srv.app.rt
        assert rt is not None
        consumer = PaymentConsumer(rt.stream_transport(0.5), engine_for(rt), consumer="c1")
        handled = 0
        while (n := srv.call(consumer.process_once(block_ms=0))) > 0:
            handled += n
        assert handled == 7
        for aid in ACCOUNTS[:6]:
            assert get(srv, aid).state == cpb.ACCOUNT_STATE_SUSPENDED
        assert client.xlen(keys.PAYMENT_DEAD_LETTER) == 1
        assert client.xpending(keys.PAYMENT_STREAM, "sessiongate")["pending"] == 0
    finally:
        client.close()
        srv.stop()


def test_the_metrics_scrape_reads_every_master(cluster: LocalCluster) -> None:
    """The scrape reads through the cluster transport: the payment stream on the master that
    holds it, and the accounts of every master."""
    cluster.flush()
    srv = start(cluster.url, redis_cluster=True, metrics_addr="127.0.0.1:0")
    client = redis.RedisCluster.from_url(cluster.url)
    try:
        for aid in ACCOUNTS:
            upsert(srv, account_id=aid, state=cpb.ACCOUNT_STATE_SUSPENDED)
        assert len(masters_holding(cluster, ACCOUNTS)) == 3
        client.xgroup_create(keys.PAYMENT_STREAM, "g", id="0", mkstream=True)
        for i in range(3):
            client.xadd(keys.PAYMENT_STREAM, {"event_id": f"e{i}"})
        client.xreadgroup("g", "c1", {keys.PAYMENT_STREAM: ">"}, count=1)
        assert srv.app.metrics is not None
        m = scrape(srv.app.metrics.port)
        assert value(m, "sessiongate_redis_up") == 1
        assert value(m, "sessiongate_payment_stream_length") == 3
        assert value(m, "sessiongate_payment_pending", group="g") == 1
        assert value(m, "sessiongate_accounts", state="SUSPENDED") == len(ACCOUNTS)
    finally:
        client.close()
        srv.stop()
