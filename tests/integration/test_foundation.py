"""The login check end to end: real server, real redis-server, real gRPC over a socket."""

from __future__ import annotations

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.store import keys
from tests.support import ServerThread


def upsert(srv: ServerThread, **fields: object) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


def check(srv: ServerThread, account: str, user: str) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(spb.CheckSessionRequest(account_id=account, user_id=user))


def test_unknown_account_is_denied(server: ServerThread) -> None:
    r = check(server, "nobody", "alice")
    assert (r.decision, r.reason) == (cpb.DECISION_DENY, cpb.REASON_UNKNOWN_ACCOUNT)
    assert r.source == cpb.STATE_SOURCE_REDIS


def test_active_roster_user_allowed_and_stranger_denied(server: ServerThread) -> None:
    created = upsert(server, account_id="acme", users=["alice", "bob"], seat_limit=0)
    assert created.state == cpb.ACCOUNT_STATE_ACTIVE
    assert created.version == 1
    r = check(server, "acme", "alice")
    assert (r.decision, r.state, r.reason) == (
        cpb.DECISION_ALLOW, cpb.ACCOUNT_STATE_ACTIVE, cpb.REASON_OK)
    assert r.account_version == 1
    r = check(server, "acme", "mallory")
    assert (r.decision, r.reason) == (cpb.DECISION_DENY, cpb.REASON_USER_NOT_AUTHORIZED)


@pytest.mark.parametrize(
    ("state", "decision", "reason"),
    [
        (cpb.ACCOUNT_STATE_REMINDER, cpb.DECISION_ALLOW, cpb.REASON_PAYMENT_OVERDUE),
        (cpb.ACCOUNT_STATE_GRACE, cpb.DECISION_ALLOW, cpb.REASON_PAYMENT_OVERDUE),
        (cpb.ACCOUNT_STATE_SUSPENDED, cpb.DECISION_DENY, cpb.REASON_ACCOUNT_SUSPENDED),
        (cpb.ACCOUNT_STATE_CLOSED, cpb.DECISION_DENY, cpb.REASON_ACCOUNT_CLOSED),
        (cpb.ACCOUNT_STATE_ACTIVE, cpb.DECISION_ALLOW, cpb.REASON_OK),
    ],
)
def test_each_state_decides(server: ServerThread, state: int, decision: int, reason: int) -> None:
    upsert(server, account_id="acme", state=state)  # type: ignore[arg-type]
    r = check(server, "acme", "anyone")
    assert (r.decision, r.state, r.reason) == (decision, state, reason)
    assert r.message


def test_exempt_account_is_allowed_when_suspended(server: ServerThread) -> None:
    upsert(server, account_id="gov", exempt=True, state=cpb.ACCOUNT_STATE_SUSPENDED)
    r = check(server, "gov", "clerk")
    assert (r.decision, r.reason) == (cpb.DECISION_ALLOW, cpb.REASON_OK)


def test_a_change_is_seen_by_the_next_check_through_the_near_cache(server: ServerThread) -> None:
    upsert(server, account_id="acme", users=["alice"])
    assert check(server, "acme", "alice").decision == cpb.DECISION_ALLOW
    assert check(server, "acme", "alice").source == cpb.STATE_SOURCE_NEAR_CACHE
    upsert(server, account_id="acme", users=["bob"])
    r = check(server, "acme", "alice")
    assert r.reason == cpb.REASON_USER_NOT_AUTHORIZED
    assert r.account_version == 2


def test_get_account_and_not_found(server: ServerThread) -> None:
    upsert(server, account_id="acme", users=["bob", "alice"], seat_limit=5,
           admin_emails=["billing@acme.test"], currency="eur")
    got = server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert (list(got.users), got.seat_limit, got.currency, got.balance_minor) == (
        ["alice", "bob"], 5, "EUR", 0)
    with pytest.raises(grpc.RpcError) as err:
        server.accounts.GetAccount(apb.GetAccountRequest(account_id="ghost"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "account_id" in (err.value.details() or "")


BAD_CHECKS = [
    (dict(account_id="", user_id="u"), "account_id"),
    (dict(account_id="a", user_id=""), "user_id"),
    (dict(account_id="a" * 129, user_id="u"), "account_id"),
    (dict(account_id="a", user_id="u\x07"), "user_id"),
    (dict(account_id="a", user_id="u", feature="f\n"), "feature"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_CHECKS)
def test_bad_check_input_is_invalid_argument(
    server: ServerThread, fields: dict[str, str], field: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        server.sessions.CheckSession(spb.CheckSessionRequest(**fields))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)


BAD_UPSERTS = [
    (dict(account_id=""), "account.account_id"),
    (dict(account_id="a\x00"), "account.account_id"),
    (dict(account_id="a", users=["ok", ""]), "account.users[1]"),
    (dict(account_id="a", seat_limit=-1), "account.seat_limit"),
    (dict(account_id="a", seat_limit=1_000_001), "account.seat_limit"),  # MAX_SEAT_LIMIT + 1
    (dict(account_id="a", seat_limit=2**31 - 1), "account.seat_limit"),
    (dict(account_id="a", state=99), "account.state"),
    (dict(account_id="a", kind=7), "account.kind"),
    (dict(account_id="a", currency="dollars"), "account.currency"),
    (dict(account_id="a", admin_emails=["not-an-email"]), "account.admin_emails[0]"),
    (dict(account_id="a", kind=apb.ACCOUNT_KIND_CONSUMER, users=["x", "y"]), "account.users"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_UPSERTS)
def test_bad_upsert_is_invalid_argument_and_writes_nothing(
    server: ServerThread, redis_client: redis.Redis, fields: dict[str, object], field: str
) -> None:
    before = sorted(redis_client.keys("*"))
    with pytest.raises(grpc.RpcError) as err:
        upsert(server, **fields)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field)
    assert sorted(redis_client.keys("*")) == before


def test_health_serving_and_reflection_lists_services(server: ServerThread) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    for name in ("", "sessiongate.api.v1.SessionControl"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=name))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    replies = list(refl.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"sessiongate.api.v1.SessionControl", "sessiongate.api.v1.Accounts",
            "grpc.health.v1.Health"} <= names


def test_history_records_creation(server: ServerThread, redis_client: redis.Redis) -> None:
    upsert(server, account_id="acme")
    upsert(server, account_id="acme", state=cpb.ACCOUNT_STATE_CLOSED)
    entries = server.accounts.GetAccountHistory(
        apb.GetAccountHistoryRequest(account_id="acme")).transitions
    assert len(entries) == 2
    assert entries[1].to_state == cpb.ACCOUNT_STATE_CLOSED
    assert b"\x1fCLOSED\x1f" in (redis_client.hget(keys.account("acme"), "h") or b"")
