"""`sessiongate serve` on a 3-master Redis Cluster speaking TLS only (`rediss+cluster://`),
clients and cluster bus alike (tests/tls_redis.py: Debian's redis-server, certificates made
at test time): accounts spread over the masters, logins with their sessions and records, an
overdue invoice suspending an account and its payment reinstating it, each seen by the next
login.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from redis.cluster import RedisCluster

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import billing_pb2_grpc as bpb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.store import keys
from tests import system_packages, tls_redis
from tests.cluster.cluster import cluster_port
from tests.e2e.sidecar import login, poll, sidecar, stamp

ACCOUNTS = [f"tls-{i}" for i in range(6)]  # spread over the masters by their buckets


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[list[int], tls_redis.Certs]]:
    """The nodes' TLS ports and the certificates, all slots assigned, cluster_state:ok."""
    tmp = tmp_path_factory.mktemp("tls-cluster")
    certs = tls_redis.make_certs(tmp)
    ports = [cluster_port() for _ in range(3)]
    procs = []
    try:
        for i, port in enumerate(ports):
            procs.append(tls_redis.start(certs, port, tmp / f"node{i}", extra=(
                "--cluster-enabled", "yes", "--tls-cluster", "yes",
                "--cluster-config-file", str(tmp / f"node{i}" / "nodes.conf"),
                "--cluster-node-timeout", "5000")))
        cli = system_packages.ensure("redis-cli", "redis-tools")
        subprocess.run([cli, "--tls", "--cacert", str(certs.ca), "--cluster", "create",
                        *(f"127.0.0.1:{p}" for p in ports), "--cluster-replicas", "0",
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        for port in ports:
            with tls_redis.client(port, certs) as node:
                while b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
                    assert time.monotonic() < deadline, f"node {port} never reached ok"
                    time.sleep(0.05)
        yield ports, certs
    finally:
        for proc in procs:
            tls_redis.stop(proc)
def test_the_sidecar_runs_on_a_cluster_over_tls(
        tmp_path: Path, tls_cluster: tuple[list[int], tls_redis.Certs]) -> None:
    ports, certs = tls_cluster
    url = f"rediss+cluster://localhost:{ports[0]}/0?{certs.query()}"
    db = RedisCluster.from_url(f"rediss://localhost:{ports[0]}/0?{certs.query()}")
    with sidecar(url, tmp_path) as (_, addr), grpc.insecure_channel(addr) as ch:
        accounts = apb_grpc.AccountsStub(ch)
        for aid in ACCOUNTS:
            accounts.UpsertAccount(apb.UpsertAccountRequest(
                account=apb.Account(account_id=aid, users=["alice"])), timeout=10)
        masters = {db.get_node_from_key(keys.account(aid)).name for aid in ACCOUNTS}
        assert len(masters) > 1  # the accounts are not all on one master
        for aid in ACCOUNTS:
            first, second = login(ch, aid), login(ch, aid)
            assert first.decision == second.decision == cpb.DECISION_ALLOW
            assert "" != first.session_id != second.session_id != ""
        poll("the login records", lambda: all(
            db.zcard(keys.leases(aid)) >= 3 for aid in ACCOUNTS))  # the user, two sessions

        billing = bpb_grpc.BillingStub(ch)
        billing.PushPaymentEvent(bpb.PaymentEvent(
            event_id="inv-1-issued", account_id=ACCOUNTS[0],
            type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED, invoice_id="inv-1", amount_minor=12000,
            due_at=stamp(datetime.now(UTC) - timedelta(days=40))), timeout=10)
        poll("the suspension", lambda: login(ch, ACCOUNTS[0]).reason
             == cpb.REASON_ACCOUNT_SUSPENDED)
        assert login(ch, ACCOUNTS[1]).decision == cpb.DECISION_ALLOW  # another account
        billing.PushPaymentEvent(bpb.PaymentEvent(
            event_id="pay-1", account_id=ACCOUNTS[0],
            type=bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED, amount_minor=12000), timeout=10)
        poll("the reinstatement", lambda: login(ch, ACCOUNTS[0]).decision
             == cpb.DECISION_ALLOW)
    db.close()
