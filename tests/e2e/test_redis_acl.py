"""The least-privilege Redis user that deploy/README.md gives ops is enough: a sidecar
running as that user (the `ACL SETUSER` line read from that file) through logins,
seat-limited logins, usage, a payment from the stream, a metrics scrape and a clean stop,
with nothing refused by Redis (`ACL LOG`). The same rule without scripting is refused its
first account write, so the check can fail.
"""

from __future__ import annotations

import shlex
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.store import keys
from sessiongate.store.embedded import free_port
from tests.e2e.sidecar import login, poll, sidecar

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "README.md"
# What deploy/README.md adds to the rule on a Redis Cluster (tests/cluster/test_cluster_acl.py).
CLUSTER_RULE = ("+cluster|slots",)


def documented_rule() -> list[str]:
    """The rules of deploy/README.md's `ACL SETUSER sessiongate on >PASSWORD ...` line."""
    for line in DEPLOY.read_text().splitlines():
        if line.startswith("ACL SETUSER sessiongate on >PASSWORD "):
            return shlex.split(line)[4:]
    raise AssertionError(f"no ACL SETUSER line in {DEPLOY}")


def refusals(r: redis.Redis, user: str) -> list[dict[str, object]]:
    """What Redis refused `user` (its ACL LOG entries)."""
    entries: list[dict[str, object]] = r.acl_log()
    return [e for e in entries if e.get("username") == user]

@pytest.mark.parametrize("scripting", [True, False], ids=["documented", "without-scripting"])
def test_the_documented_redis_user_is_enough(tmp_path: Path, redis_url: str,
                                             redis_client: redis.Redis,
                                             scripting: bool) -> None:
    user = f"sg-{time.monotonic_ns()}"
    rule = [r for r in documented_rule() if scripting or r != "+@scripting"]
    redis_client.execute_command("ACL", "SETUSER", user, "on", ">pw", *rule)
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0]
    metrics = f"127.0.0.1:{free_port()}"
    seat, free = f"acl-seat-{user}", f"acl-free-{user}"
    try:
        with sidecar(f"redis://{user}:pw@{host_port}/0", tmp_path, SESSIONGATE_SCHEDULER="1",
                     SESSIONGATE_METRICS_ADDR=metrics) as (_, addr), \
                grpc.insecure_channel(addr) as ch:
            accounts = apb_grpc.AccountsStub(ch)
            upsert = apb.UpsertAccountRequest(account=apb.Account(
                account_id=seat, users=["alice"], seat_limit=1))
            if not scripting:  # an account is written by a script: refused
                with pytest.raises(grpc.RpcError) as err:
                    accounts.UpsertAccount(upsert, timeout=10)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
                assert refusals(redis_client, user)
                return
            accounts.UpsertAccount(upsert, timeout=10)
            accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
                account_id=free, users=["bob"])), timeout=10)
            answers = [login(ch, seat, "alice"), login(ch, free, "bob"),
                       login(ch, free, "bob")]
            assert [a.decision for a in answers] == [cpb.DECISION_ALLOW] * 3, answers
            spb_grpc.SessionControlStub(ch).RecordUsage(spb.UsageEvent(
                event_id=f"u-{user}", account_id=free, user_id="bob", feature="exports",
                quantity=2), timeout=10)
            redis_client.xadd(keys.PAYMENT_STREAM, {
                "event_id": f"i-{user}", "account_id": free, "type": "INVOICE_ISSUED",
                "invoice_id": "i1", "amount_minor": "1000",
                "due_at": "2020-01-01T00:00:00+00:00"})
            poll("the invoice from the stream", lambda: login(ch, free, "bob").reason
                 == cpb.REASON_ACCOUNT_SUSPENDED)
            summary = accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
                account_id=free, period=datetime.now(UTC).strftime("%Y-%m")), timeout=10)
            assert summary.account_id == free
            with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as got:
                assert b"sessiongate_rpc_duration_seconds" in got.read()
            poll("the login records", lambda: redis_client.zcard(keys.leases(free)) >= 2)
        assert refusals(redis_client, user) == []
        assert "NOPERM" not in (tmp_path / "sidecar.log").read_text()
    finally:
        redis_client.execute_command("ACL", "DELUSER", user)
