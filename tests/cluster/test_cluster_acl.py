"""The least-privilege Redis user of deploy/README.md, with the cluster's discovery commands
the README adds for a Redis Cluster, is enough on a real 3-master cluster: a sidecar as that
user through logins, seat-limited logins, a suspension and its reinstatement and a metrics
scrape, with nothing refused by any node (`ACL LOG`).
"""

from __future__ import annotations

import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import billing_pb2_grpc as bpb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.store.embedded import free_port
from tests.cluster.cluster import LocalCluster
from tests.e2e.sidecar import login, poll, sidecar, stamp
from tests.e2e.test_redis_acl import CLUSTER_RULE, DEPLOY, documented_rule, refusals

ACCOUNTS = [f"acl-{i}" for i in range(6)]  # spread over the masters by their buckets

def test_the_documented_redis_user_is_enough_on_a_cluster(
        tmp_path: Path, cluster: LocalCluster) -> None:
    assert all(f"`{rule}`" in DEPLOY.read_text() for rule in CLUSTER_RULE)  # as documented
    cluster.flush()
    user = f"sg-{time.monotonic_ns()}"
    nodes = [redis.Redis(port=port) for port in cluster.ports]
    for node in nodes:
        node.execute_command("ACL", "SETUSER", user, "on", ">pw", *documented_rule(),
                             *CLUSTER_RULE)
    metrics = f"127.0.0.1:{free_port()}"
    url = f"redis+cluster://{user}:pw@127.0.0.1:{cluster.ports[0]}/0"
    try:
        with sidecar(url, tmp_path, SESSIONGATE_SCHEDULER="1",
                     SESSIONGATE_METRICS_ADDR=metrics) as (_, addr), \
                grpc.insecure_channel(addr) as ch:
            accounts = apb_grpc.AccountsStub(ch)
            for i, aid in enumerate(ACCOUNTS):
                accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
                    account_id=aid, users=["alice"], seat_limit=i % 2)), timeout=10)
            for aid in ACCOUNTS:
                assert login(ch, aid).decision == cpb.DECISION_ALLOW
            due = stamp(datetime.now(UTC) - timedelta(days=40))
            billing = bpb_grpc.BillingStub(ch)
            billing.PushPaymentEvent(bpb.PaymentEvent(
                event_id="inv-1-issued", account_id=ACCOUNTS[0], invoice_id="inv-1",
                type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED, amount_minor=100, due_at=due),
                timeout=10)
            poll("the suspension", lambda: login(ch, ACCOUNTS[0]).reason
                 == cpb.REASON_ACCOUNT_SUSPENDED)
            billing.PushPaymentEvent(bpb.PaymentEvent(
                event_id="pay-1", account_id=ACCOUNTS[0], amount_minor=100,
                type=bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED), timeout=10)
            poll("the reinstatement", lambda: login(ch, ACCOUNTS[0]).decision
                 == cpb.DECISION_ALLOW)
            with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as got:
                assert b"sessiongate_rpc_duration_seconds" in got.read()
            time.sleep(0.3)  # the login records' batch is written
        assert [refusals(node, user) for node in nodes] == [[]] * len(nodes)
        assert "NOPERM" not in (tmp_path / "sidecar.log").read_text()
    finally:
        for node in nodes:
            node.execute_command("ACL", "DELUSER", user)
            node.close()
