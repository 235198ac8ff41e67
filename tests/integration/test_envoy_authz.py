"""Envoy ext_authz Check over real gRPC with Envoy's own protos, against a real redis-server."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from envoy.service.auth.v3 import external_auth_pb2 as ext
from envoy.service.auth.v3 import external_auth_pb2_grpc as ext_grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.domain.commits import Change
from sessiongate.domain.model import Account, AccountState
from sessiongate.service.envoy_authz import JWT_AUTHN_NAMESPACE, SERVICE_NAME, check_request
from sessiongate.store.embedded import EmbeddedRedis
from tests.support import ServerThread, make_settings

SUSPENDS_AT = datetime(2026, 2, 1, tzinfo=UTC)


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def serving(redis_url: str, **overrides: Any) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(redis_url, **overrides)).start()
    try:
        yield srv
    finally:
        srv.stop()


def check(srv: ServerThread, request: Any, metadata: Any = None) -> Any:
    stub = ext_grpc.AuthorizationStub(srv.channel)
    return stub.Check(request, timeout=20, metadata=metadata)


def upsert(srv: ServerThread, metadata: Any = None, **fields: Any) -> None:
    srv.accounts.UpsertAccount(
        apb.UpsertAccountRequest(account=apb.Account(**fields)), metadata=metadata, timeout=20)


def put_account(srv: ServerThread, account: Account) -> None:
    """Commit an account through the store (compare-and-set), e.g. with a ledger summary."""
    rt = srv.app.rt
    assert rt is not None

    def mutate(current: Account | None, ledger: str | None) -> Change:
        return Change(replace(account, state_since=srv.clock.now()))

    srv.call(rt.accounts.update(account.account_id, mutate, srv.clock.now))


def headers(options: Any) -> dict[str, str]:
    return {o.header.key: o.header.value for o in options}


def meta(resp: Any) -> dict[str, Any]:
    return json_format.MessageToDict(resp.dynamic_metadata)


def denied(resp: Any, http_status: int) -> dict[str, Any]:
    """Assert a denial with `http_status`; return its JSON body."""
    assert resp.WhichOneof("http_response") == "denied_response"
    assert resp.status.code != 0
    assert resp.denied_response.status.code == http_status
    assert headers(resp.denied_response.headers)["content-type"] == "application/json"
    body: dict[str, Any] = json.loads(resp.denied_response.body)
    assert body["allowed"] is False
    return body


def allowed(resp: Any) -> dict[str, str]:
    """Assert an allow; return the headers added upstream."""
    assert resp.status.code == 0
    assert resp.WhichOneof("http_response") == "ok_response"
    return headers(resp.ok_response.headers)


# ---------------------------------------------------------------- decision paths


def test_active_account_is_allowed_with_state_headers_and_metadata(server: ServerThread) -> None:
    upsert(server, account_id="acme", users=["alice", "bob"])
    resp = check(server, check_request("acme", "alice", "/features/reports/q3?x=1"))
    assert allowed(resp) == {"x-sessiongate-state": "ACTIVE", "x-sessiongate-reason": "OK",
                             "x-sessiongate-access": "full"}
    # a client's own copy of the overdue header never reaches the upstream
    assert list(resp.ok_response.headers_to_remove) == ["x-sessiongate-suspends-at"]
    assert all(o.append_action == o.OVERWRITE_IF_EXISTS_OR_ADD for o in resp.ok_response.headers)
    m = meta(resp)
    assert (m["decision"], m["reason"], m["state"], m["feature"]) == (
        "ALLOW", "OK", "ACTIVE", "reports")
    assert (m["account_id"], m["user_id"], m["account_version"]) == ("acme", "alice", 1)
    assert m["source"] in ("near_cache", "redis")


def test_overdue_account_is_allowed_with_the_suspension_date(server: ServerThread) -> None:
    put_account(server, Account("late", users=frozenset({"alice"}),
                                derived_state=AccountState.GRACE, balance_minor=12000,
                                currency="USD", suspends_at=SUSPENDS_AT))
    resp = check(server, check_request("late", "alice"))
    assert allowed(resp) == {
        "x-sessiongate-state": "GRACE",
        "x-sessiongate-reason": "PAYMENT_OVERDUE",
        "x-sessiongate-access": "full",
        "x-sessiongate-suspends-at": "2026-02-01T00:00:00Z",
    }
    assert not resp.ok_response.headers_to_remove
    assert meta(resp)["reason"] == "PAYMENT_OVERDUE"


def test_suspended_account_gets_402_saying_why_and_how_to_pay(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, envoy_payment_url="https://billing.example/pay") as srv:
        put_account(srv, Account("owing", derived_state=AccountState.SUSPENDED,
                                 balance_minor=4999, currency="EUR"))
        resp = check(srv, check_request("owing", "alice"))
    body = denied(resp, 402)
    assert (body["reason"], body["state"], body["error"]) == (
        "ACCOUNT_SUSPENDED", "SUSPENDED", "account_suspended")
    assert (body["amount_due_minor"], body["currency"], body["amount_due"]) == (
        4999, "EUR", "49.99 EUR")
    assert body["payment_url"] == "https://billing.example/pay"
    assert "49.99 EUR" in body["how_to_pay"]
    assert "https://billing.example/pay" in body["how_to_pay"]
    assert "suspended" in body["message"]
    assert headers(resp.denied_response.headers)["x-sessiongate-reason"] == "ACCOUNT_SUSPENDED"
    assert meta(resp)["decision"] == "DENY"


@pytest.mark.parametrize(
    ("setup", "account", "user", "reason"),
    [
        ("closed", "acme", "alice", "ACCOUNT_CLOSED"),
        ("none", "nobody", "alice", "UNKNOWN_ACCOUNT"),
        ("roster", "acme", "mallory", "USER_NOT_AUTHORIZED"),
    ],
)
def test_denials_are_403_with_a_json_reason(
    server: ServerThread, setup: str, account: str, user: str, reason: str
) -> None:
    if setup == "closed":
        upsert(server, account_id="acme", state=cpb.ACCOUNT_STATE_CLOSED)
    elif setup == "roster":
        upsert(server, account_id="acme", users=["alice"])
    resp = check(server, check_request(account, user))
    body = denied(resp, 403)
    assert body["reason"] == reason
    assert (body["account_id"], body["user_id"]) == (account, user)
    assert body["message"]
    assert resp.status.code == grpc.StatusCode.PERMISSION_DENIED.value[0]


def test_the_verdict_matches_check_session(server: ServerThread) -> None:
    """Same lookup and decide: every state answers alike through both front doors."""
    from sessiongate.api.v1 import session_control_pb2 as spb

    for i, state in enumerate([cpb.ACCOUNT_STATE_ACTIVE, cpb.ACCOUNT_STATE_REMINDER,
                               cpb.ACCOUNT_STATE_SUSPENDED, cpb.ACCOUNT_STATE_CLOSED]):
        aid = f"acct{i}"
        upsert(server, account_id=aid, state=state)
        session = server.sessions.CheckSession(
            spb.CheckSessionRequest(account_id=aid, user_id="u"), timeout=20)
        m = meta(check(server, check_request(aid, "u")))
        assert m["reason"] == cpb.Reason.Name(session.reason).removeprefix("REASON_")
        assert m["decision"] == cpb.Decision.Name(session.decision).removeprefix("DECISION_")


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("request_headers", "field", "error"),
    [
        ({"x-account-id": "acme"}, "header x-user-id", "missing_identity"),
        ({"x-user-id": "alice"}, "header x-account-id", "missing_identity"),
        ({"x-account-id": "", "x-user-id": "alice"}, "header x-account-id", "missing_identity"),
        ({"x-account-id": "a" * 129, "x-user-id": "u"}, "header x-account-id", "bad_request"),
        ({"x-account-id": "acme", "x-user-id": "al\x07ice"}, "header x-user-id", "bad_request"),
    ],
)
def test_missing_or_malformed_identity_is_400_and_looks_nothing_up(
    server: ServerThread, request_headers: dict[str, str], field: str, error: str
) -> None:
    req = ext.CheckRequest()
    req.attributes.request.http.path = "/"
    req.attributes.request.http.headers.update(request_headers)
    resp = check(server, req)
    body = denied(resp, 400)
    assert (body["error"], body["field"]) == (error, field)
    assert body["message"].startswith(field)
    assert resp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]


def test_bad_feature_in_the_path_is_400(server: ServerThread) -> None:
    upsert(server, account_id="acme")
    body = denied(check(server, check_request("acme", "u", "/features/a%0Ab/x")), 400)
    assert body["field"] == "path"


def test_configured_headers_and_feature_pattern(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, envoy_account_header="X-Tenant", envoy_user_header="x-sub",
                 envoy_feature_pattern=r"^/api/v\d+/([^/]+)") as srv:
        upsert(srv, account_id="acme", users=["alice"])
        req = check_request("acme", "alice", "/api/v2/exports%20x/1",
                            account_header="x-tenant", user_header="x-sub")
        resp = check(srv, req)
        assert meta(resp)["feature"] == "exports x"
        allowed(resp)
        # the default headers mean nothing here
        body = denied(check(srv, check_request("acme", "alice")), 400)
        assert body["field"] == "header x-tenant"


# ---------------------------------------------------------------- JWT claims


def with_jwt_metadata(req: Any, payload: dict[str, Any], key: str = "jwt_payload") -> Any:
    req.attributes.metadata_context.filter_metadata[JWT_AUTHN_NAMESPACE].update({key: payload})
    return req


def test_identity_from_jwt_authn_metadata_ignores_forgeable_headers(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, envoy_jwt_metadata_key="jwt_payload",
                 envoy_account_claim="org.id", envoy_user_claim="sub") as srv:
        upsert(srv, account_id="acme", users=["alice"])
        upsert(srv, account_id="evil")
        # the headers claim another account; the verified token wins
        req = with_jwt_metadata(check_request("evil", "mallory"),
                                {"sub": "alice", "org": {"id": "acme"}, "exp": 1e10})
        m = meta(check(srv, req))
        assert (m["decision"], m["account_id"], m["user_id"]) == ("ALLOW", "acme", "alice")
        # numeric claims (a Struct holds doubles) come out as integers
        upsert(srv, account_id="42", users=["7"])
        m = meta(check(srv, with_jwt_metadata(check_request("x", "y"),
                                              {"sub": 7, "org": {"id": 42}})))
        assert (m["decision"], m["account_id"], m["user_id"]) == ("ALLOW", "42", "7")
        # no verified token at all: 400, not a fallback to the headers
        body = denied(check(srv, check_request("acme", "alice")), 400)
        assert (body["field"], body["error"]) == ("JWT payload", "missing_identity")
        body = denied(check(srv, with_jwt_metadata(check_request("a", "b"), {"sub": "alice"})),
                      400)
        assert body["field"] == "claim org.id"
        body = denied(check(srv, with_jwt_metadata(
            check_request("a", "b"), {"sub": ["alice"], "org": {"id": "acme"}})), 400)
        assert (body["field"], body["message"]) == ("claim sub", "claim sub: not a string")


def test_identity_from_a_jwt_payload_header_with_user_from_its_header(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, envoy_jwt_payload_header="x-jwt-payload",
                 envoy_account_claim="tenant", envoy_user_claim="") as srv:
        upsert(srv, account_id="acme", users=["alice"])
        payload = base64.urlsafe_b64encode(json.dumps({"tenant": "acme"}).encode())
        req = check_request("evil", "alice",
                            headers={"x-jwt-payload": payload.decode().rstrip("=")})
        m = meta(check(srv, req))
        assert (m["decision"], m["account_id"], m["user_id"]) == ("ALLOW", "acme", "alice")
        bad = check_request("acme", "alice", headers={"x-jwt-payload": "%%%not-base64"})
        body = denied(check(srv, bad), 400)
        assert body["field"] == "header x-jwt-payload"


# ---------------------------------------------------------------- auth


def test_calls_need_an_app_token_when_tokens_are_configured(
    redis_client: redis.Redis, redis_url: str
) -> None:
    tokens = dict(app_tokens="app-t", billing_tokens="bill-t", admin_tokens="admin-t")
    with serving(redis_url, **tokens) as srv:
        upsert(srv, [("authorization", "Bearer admin-t")], account_id="acme")
        req = check_request("acme", "alice")
        for md, code in [(None, grpc.StatusCode.UNAUTHENTICATED),
                         ([("authorization", "Bearer wrong")], grpc.StatusCode.UNAUTHENTICATED),
                         ([("authorization", "Bearer bill-t")],
                          grpc.StatusCode.PERMISSION_DENIED)]:
            with pytest.raises(grpc.RpcError) as err:
                check(srv, req, md)
            assert err.value.code() == code
        allowed(check(srv, req, [("authorization", "Bearer app-t")]))


# ---------------------------------------------------------------- Redis unreachable


@contextlib.contextmanager
def redis_outage(tmp_path: Path, failure_mode: str) -> Iterator[tuple[ServerThread, EmbeddedRedis]]:
    """A server on its own redis-server, which the test kills: its port is then closed.

    The near-cache is off so that the first check after the kill goes to Redis.
    """
    backend = EmbeddedRedis(tmp_path, persistent=False)
    backend.start()
    try:
        with serving(backend.url, failure_mode=failure_mode, near_cache=False) as srv:
            yield srv, backend
    finally:
        backend.stop()


@pytest.mark.parametrize("mode", ["closed", "open", "static"])
def test_redis_unreachable_follows_the_failure_mode(tmp_path: Path, mode: str) -> None:
    with redis_outage(tmp_path, mode) as (srv, backend):
        upsert(srv, account_id="acme", users=["alice"])
        allowed(check(srv, check_request("acme", "alice")))  # seen once: last known state
        backend.kill()
        known = check(srv, check_request("acme", "alice"))
        unseen = check(srv, check_request("other", "alice"))
    if mode == "closed":
        for resp in (known, unseen):
            body = denied(resp, 503)
            assert body["reason"] == "BACKEND_UNAVAILABLE"
            assert "failure mode closed" in body["message"]
            assert resp.status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    elif mode == "open":
        for resp in (known, unseen):
            assert allowed(resp) == {"x-sessiongate-state": "UNKNOWN",
                                     "x-sessiongate-reason": "BACKEND_UNAVAILABLE",
                                     "x-sessiongate-access": "full"}
            assert meta(resp)["source"] == "unavailable"
    else:  # static: the last known state decides; nothing known -> closed
        assert allowed(known)["x-sessiongate-state"] == "ACTIVE"
        assert meta(known)["source"] == "stale"
        assert denied(unseen, 503)["reason"] == "BACKEND_UNAVAILABLE"


# ---------------------------------------------------------------- discovery


def test_health_and_reflection_know_the_envoy_service(server: ServerThread) -> None:
    health = health_pb2_grpc.HealthStub(server.channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=20)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(server.channel)
    replies = list(refl.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=20))
    assert SERVICE_NAME in {s.name for s in replies[0].list_services_response.service}
    assert SERVICE_NAME == "envoy.service.auth.v3.Authorization"


# ---------------------------------------------------------------- access levels


def test_a_read_only_stage_passes_reads_and_refuses_writes_with_402(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, authz_open_paths="/billing") as srv:
        srv.accounts.UpsertPolicy(apb.DunningPolicy(policy_id="ro", stages=[apb.DunningStage(
            state=cpb.ACCOUNT_STATE_SUSPENDED, access=cpb.ACCESS_LEVEL_READ_ONLY)]))
        put_account(srv, Account("ro", users=frozenset({"alice"}), policy_id="ro",
                                 derived_state=AccountState.SUSPENDED, balance_minor=4999))
        for method in ("GET", "HEAD", "OPTIONS"):
            got = allowed(check(srv, check_request("ro", "alice", "/api/x", method=method)))
            assert (got["x-sessiongate-access"], got["x-sessiongate-reason"]) == (
                "read-only", "ACCOUNT_SUSPENDED")
        resp = check(srv, check_request("ro", "alice", "/api/x", method="POST"))
        body = denied(resp, 402)
        assert (body["reason"], body["amount_due"]) == ("ACCOUNT_SUSPENDED", "49.99 USD")
        assert body["message"].startswith("POST refused") and "read-only" in body["message"]
        assert meta(resp)["access"] == "none"
        # an open path takes writes too
        got = allowed(check(srv, check_request("ro", "alice", "/billing/pay", method="POST")))
        assert got["x-sessiongate-access"] == "full"


def test_open_paths_and_features_pass_for_a_suspended_account_only(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, authz_open_paths="/billing,/export") as srv:
        srv.accounts.UpsertPlan(apb.Plan(plan_id="pro", features=[
            apb.Feature(name="invoices", available_while_restricted=True),
            apb.Feature(name="reports")]))
        put_account(srv, Account("owing", users=frozenset({"alice"}), plan_id="pro",
                                 derived_state=AccountState.SUSPENDED, balance_minor=100))
        put_account(srv, Account("gone", users=frozenset({"alice"}), plan_id="pro",
                                 derived_state=AccountState.CLOSED))
        for path in ("/billing", "/billing/pay?x=1", "/export/all.csv", "/features/invoices"):
            got = allowed(check(srv, check_request("owing", "alice", path, method="POST")))
            assert got["x-sessiongate-access"] == "full"
            assert got["x-sessiongate-reason"] == "ACCOUNT_SUSPENDED"
        for path in ("/", "/billingx", "/billing/../api", "/features/reports"):
            denied(check(srv, check_request("owing", "alice", path)), 402)
        denied(check(srv, check_request("owing", "mallory", "/billing")), 403)  # off roster
        denied(check(srv, check_request("gone", "alice", "/billing")), 403)  # closed
        denied(check(srv, check_request("gone", "alice", "/features/invoices")), 403)
        denied(check(srv, check_request("nobody", "alice", "/billing")), 403)  # unknown


def test_the_parent_chain_rules_envoy_checks(server: ServerThread) -> None:
    upsert(server, account_id="top", state=cpb.ACCOUNT_STATE_SUSPENDED)
    upsert(server, account_id="mid", parent_id="top")
    upsert(server, account_id="leaf", parent_id="mid", users=["alice"])
    body = denied(check(server, check_request("leaf", "alice")), 402)
    assert body["reason"] == "ACCOUNT_SUSPENDED" and "'top'" in body["message"]
    upsert(server, account_id="top", state=cpb.ACCOUNT_STATE_ACTIVE)
    allowed(check(server, check_request("leaf", "alice")))


# ---------------------------------------------------------------- remembered answers


def ageless(resp: Any) -> Any:
    """The answer without its state's age (the one field a remembered answer changes)."""
    out = ext.CheckResponse()
    out.CopyFrom(resp)
    del out.dynamic_metadata.fields["state_age_ms"]
    return out


def test_remembered_answers_follow_every_change_of_the_account(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """Answers are remembered in the one answer memo (service/answer_memo.py) and equal the
    computed ones; a payment event, an override, a plan change and a parent's suspension
    each change the very next answer."""
    from tests.integration.dunning_support import invoice, pay

    with serving(redis_url, near_cache_ttl=600.0) as srv:
        memo = srv.app.answers
        assert memo is not None
        srv.accounts.UpsertPlan(apb.Plan(plan_id="pro", features=[
            apb.Feature(name="invoices", available_while_restricted=True)]))
        srv.accounts.UpsertPlan(apb.Plan(plan_id="basic"))
        upsert(srv, account_id="acme", users=["alice"], plan_id="pro")
        req = check_request("acme", "alice", "/app")
        check(srv, req)  # may come from Redis
        first = check(srv, req)  # computed from the near-cache snapshot, and remembered
        assert meta(first)["source"] == "near_cache" and memo.bytes > 0
        for _ in range(3):
            again = check(srv, req)
            assert ageless(again) == ageless(first)
            assert "state_age_ms" in meta(again)
        # looked up by the ids as given, but kept under valid ids only: bad ones find none
        assert denied(check(srv, check_request("acme", "alice ", "/app")), 400)["field"] == (
            "header x-user-id")
        # payment -> suspended, and back
        invoice(srv, account="acme", amount=5000, due=srv.clock.now() - timedelta(days=40))
        assert denied(check(srv, req), 402)["reason"] == "ACCOUNT_SUSPENDED"
        pay(srv, "pay-1", 5000, account="acme")
        assert allowed(check(srv, req))["x-sessiongate-state"] == "ACTIVE"
        # an override (without expiry: remembered too), and cleared
        srv.accounts.OverrideState(apb.OverrideStateRequest(
            account_id="acme", state=cpb.ACCOUNT_STATE_SUSPENDED, reason="chargeback"))
        for _ in range(2):
            assert denied(check(srv, req), 402)["reason"] == "ACCOUNT_SUSPENDED"
        feature = check_request("acme", "alice", "/features/invoices")
        assert allowed(check(srv, feature))["x-sessiongate-access"] == "full"  # the plan's
        # a plan change: the feature no longer stays open
        upsert(srv, account_id="acme", users=["alice"], plan_id="basic")
        assert denied(check(srv, feature), 402)["reason"] == "ACCOUNT_SUSPENDED"
        srv.accounts.OverrideState(apb.OverrideStateRequest(account_id="acme", reason="ok"))
        assert allowed(check(srv, req))["x-sessiongate-state"] == "ACTIVE"
        # a parent suspended
        upsert(srv, account_id="top")
        upsert(srv, account_id="leaf", parent_id="top", users=["alice"])
        leaf = check_request("leaf", "alice")
        for _ in range(3):
            allowed(check(srv, leaf))
        upsert(srv, account_id="top", state=cpb.ACCOUNT_STATE_SUSPENDED)
        assert "'top'" in denied(check(srv, leaf), 402)["message"]
