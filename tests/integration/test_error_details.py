"""What clients are told (issue 26, "Also"): a time zone must be an IANA name, and Redis's
own error text (script hashes, hosts, ports) stays in the server log. Real server, real
redis-server."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.periods import ResetPeriod, window_key
from sessiongate.store import keys
from sessiongate.store.embedded import EmbeddedRedis
from tests.integration.test_usage import PLAN
from tests.support import ServerThread, make_settings

SHA = re.compile(r"[0-9a-f]{40}")


def upsert(srv: ServerThread, **fields: object) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


@pytest.mark.parametrize("zone", ["../../../etc/passwd", "/etc/passwd", "Mars/Olympus",
                                  "Europe/../../etc/passwd", "utc ", "x" * 300])
def test_a_time_zone_must_be_an_iana_name(server: ServerThread, zone: str) -> None:
    with pytest.raises(grpc.RpcError) as err:
        upsert(server, account_id="acme", time_zone=zone)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("account.time_zone"), err.value.details()
    with pytest.raises(grpc.RpcError) as missing:
        server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # nothing written


def test_valid_time_zones(server: ServerThread) -> None:
    assert upsert(server, account_id="acme", time_zone="Europe/Paris").time_zone == "Europe/Paris"
    assert upsert(server, account_id="acme").time_zone == "UTC"  # empty: UTC


def test_a_script_error_is_answered_without_redis_text(
        server: ServerThread, redis_client: redis.Redis) -> None:
    now = datetime(2026, 10, 10, tzinfo=UTC)
    server.clock.set(now)
    server.accounts.UpsertPlan(PLAN)
    upsert(server, account_id="acme", users=["alice"], plan_id="pro")
    # the counter's key holds a hash: the script fails inside Redis (WRONGTYPE, its hash)
    redis_client.hset(keys.quota("acme", "exports", window_key(ResetPeriod.MONTH, now)),
                      "x", "1")
    with pytest.raises(grpc.RpcError) as err:
        server.sessions.ConsumeEntitlement(spb.EntitlementRequest(
            account_id="acme", user_id="alice", feature="exports", quantity=1))
    details = err.value.details() or ""
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert details.startswith("backend unavailable (request id "), details
    assert not SHA.search(details) and "WRONGTYPE" not in details and "script" not in details


def test_the_failure_mode_answer_names_no_redis_error(tmp_path: Path) -> None:
    backend = EmbeddedRedis(tmp_path / "redis", persistent=False)
    backend.start()
    srv = ServerThread(make_settings(backend.url, scheduler=False)).start()
    try:
        backend.stop()  # Redis gone: the failure mode (closed) answers
        r = srv.sessions.CheckSession(spb.CheckSessionRequest(account_id="acme",
                                                              user_id="alice"))
        assert (r.decision, r.reason) == (cpb.DECISION_DENY, cpb.REASON_BACKEND_UNAVAILABLE)
        assert r.message == "account state unavailable; failure mode closed: denied"
        with pytest.raises(grpc.RpcError) as err:
            srv.sessions.RecordUsage(spb.UsageEvent(event_id="u1", account_id="acme",
                                                    feature="x", quantity=1))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert err.value.details() == "account state unavailable"
    finally:
        srv.stop()
