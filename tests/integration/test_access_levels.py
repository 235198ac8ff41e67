"""Access levels over real gRPC against a real redis-server: read-only stages, features that
stay available while restricted, parent chains, and UpsertAccount's chain rule."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from tests.support import ServerThread

S = cpb


def upsert(srv: ServerThread, **fields: object) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)))


def login(srv: ServerThread, account: str, user: str, **kw: object) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(
        spb.CheckSessionRequest(account_id=account, user_id=user, **kw))  # type: ignore[arg-type]


def read_only_policy(srv: ServerThread) -> None:
    srv.accounts.UpsertPolicy(apb.DunningPolicy(policy_id="ro", stages=[
        apb.DunningStage(state=S.ACCOUNT_STATE_GRACE, after=Duration(seconds=86400),
                         access=S.ACCESS_LEVEL_READ_ONLY),
        apb.DunningStage(state=S.ACCOUNT_STATE_SUSPENDED, after=Duration(seconds=86400 * 30),
                         access=S.ACCESS_LEVEL_READ_ONLY),
    ]))


def test_a_read_only_stage_answers_allow_read_only(server: ServerThread) -> None:
    read_only_policy(server)
    saved = server.accounts.GetPolicy(apb.GetPolicyRequest(policy_id="ro"))
    assert [s.access for s in saved.stages] == [S.ACCESS_LEVEL_READ_ONLY] * 2
    upsert(server, account_id="acme", users=["alice"], policy_id="ro",
           state=S.ACCOUNT_STATE_SUSPENDED)
    r = login(server, "acme", "alice")
    assert (r.decision, r.access, r.reason, r.state) == (
        S.DECISION_ALLOW, S.ACCESS_LEVEL_READ_ONLY, S.REASON_ACCOUNT_SUSPENDED,
        S.ACCOUNT_STATE_SUSPENDED)
    assert "read-only" in r.message and "owed" in r.message and r.session_id
    for _ in range(3):  # the remembered answer (near-cache memo, raw hot path) says it too
        again = login(server, "acme", "alice", no_session=True)
        assert (again.decision, again.access) == (S.DECISION_ALLOW, S.ACCESS_LEVEL_READ_ONLY)
    hb = server.sessions.Heartbeat(spb.HeartbeatRequest(session_id=r.session_id))
    assert (hb.decision, hb.access) == (S.DECISION_ALLOW, S.ACCESS_LEVEL_READ_ONLY)
    # The default policy's SUSPENDED grants nothing; plain answers say FULL / NONE.
    upsert(server, account_id="plain", users=["alice"], state=S.ACCOUNT_STATE_SUSPENDED)
    denied = login(server, "plain", "alice")
    assert (denied.decision, denied.access) == (S.DECISION_DENY, S.ACCESS_LEVEL_NONE)
    upsert(server, account_id="ok", users=["alice"])
    assert login(server, "ok", "alice").access == S.ACCESS_LEVEL_FULL
    assert login(server, "ok", "alice", no_session=True).access == S.ACCESS_LEVEL_FULL
    hb = server.sessions.Heartbeat(spb.HeartbeatRequest(
        session_id=login(server, "ok", "alice").session_id))
    assert hb.access == S.ACCESS_LEVEL_FULL


def test_an_unknown_stage_access_is_invalid_argument(server: ServerThread) -> None:
    with pytest.raises(grpc.RpcError) as err:
        server.accounts.UpsertPolicy(apb.DunningPolicy(policy_id="bad", stages=[
            apb.DunningStage(state=S.ACCOUNT_STATE_GRACE, after=Duration(seconds=1),
                             access=99)]))  # type: ignore[arg-type]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("stages[0].access")


def test_a_feature_available_while_restricted_stays_on(server: ServerThread) -> None:
    server.accounts.UpsertPlan(apb.Plan(plan_id="pro", features=[
        apb.Feature(name="billing", available_while_restricted=True),
        apb.Feature(name="reports")]))
    plan = server.accounts.GetPlan(apb.GetPlanRequest(plan_id="pro"))
    assert [f.available_while_restricted for f in plan.features] == [True, False]
    upsert(server, account_id="owing", users=["alice"], plan_id="pro",
           state=S.ACCOUNT_STATE_SUSPENDED)
    r = login(server, "owing", "alice", feature="billing")
    assert (r.decision, r.access, r.reason) == (
        S.DECISION_ALLOW, S.ACCESS_LEVEL_FULL, S.REASON_ACCOUNT_SUSPENDED)
    assert login(server, "owing", "alice", feature="reports").decision == S.DECISION_DENY
    assert login(server, "owing", "alice").decision == S.DECISION_DENY
    assert login(server, "owing", "mallory", feature="billing").reason == (
        S.REASON_USER_NOT_AUTHORIZED)
    ent = server.sessions.CheckEntitlement(spb.EntitlementRequest(
        account_id="owing", user_id="alice", feature="billing"))
    assert ent.decision == S.DECISION_ALLOW
    assert server.sessions.CheckEntitlement(spb.EntitlementRequest(
        account_id="owing", user_id="alice", feature="reports")).decision == S.DECISION_DENY
    upsert(server, account_id="gone", users=["alice"], plan_id="pro",
           state=S.ACCOUNT_STATE_CLOSED)
    closed = login(server, "gone", "alice", feature="billing")
    assert (closed.decision, closed.reason) == (S.DECISION_DENY, S.REASON_ACCOUNT_CLOSED)


def test_a_session_of_a_feature_available_while_restricted_heartbeats(
        server: ServerThread) -> None:
    """Opened for the billing page while suspended, the session lives on with Heartbeat
    naming its feature; without it, or for another feature, it is refused as a login is."""
    server.accounts.UpsertPlan(apb.Plan(plan_id="pro", features=[
        apb.Feature(name="billing", available_while_restricted=True),
        apb.Feature(name="reports")]))
    upsert(server, account_id="owing", users=["alice"], plan_id="pro",
           state=S.ACCOUNT_STATE_SUSPENDED)
    opened = login(server, "owing", "alice", feature="billing")
    assert opened.decision == S.DECISION_ALLOW and opened.session_id
    beat = server.sessions.Heartbeat(spb.HeartbeatRequest(session_id=opened.session_id,
                                                          feature="billing"))
    assert (beat.decision, beat.access) == (S.DECISION_ALLOW, S.ACCESS_LEVEL_FULL)
    assert beat.HasField("expires_at")
    other = server.sessions.Heartbeat(spb.HeartbeatRequest(session_id=opened.session_id,
                                                           feature="reports"))
    assert (other.decision, other.reason) == (S.DECISION_DENY, S.REASON_ACCOUNT_SUSPENDED)
    with pytest.raises(grpc.RpcError) as err:
        server.sessions.Heartbeat(spb.HeartbeatRequest(session_id=opened.session_id,
                                                       feature="bad\nname"))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("feature")


def test_the_parent_chain_is_followed_on_every_grpc_path(server: ServerThread) -> None:
    read_only_policy(server)
    for i in range(5, 0, -1):  # p1 -> p2 -> ... -> p5
        upsert(server, account_id=f"p{i}", parent_id=f"p{i + 1}" if i < 5 else "")
    upsert(server, account_id="child", users=["alice"], parent_id="p1")
    s = login(server, "child", "alice")
    assert s.access == S.ACCESS_LEVEL_FULL
    upsert(server, account_id="p5", state=S.ACCOUNT_STATE_SUSPENDED)  # five levels up
    r = login(server, "child", "alice")
    assert (r.decision, r.reason) == (S.DECISION_DENY, S.REASON_ACCOUNT_SUSPENDED)
    assert "'p5'" in r.message
    hb = server.sessions.Heartbeat(spb.HeartbeatRequest(session_id=s.session_id))
    assert (hb.decision, hb.access) == (S.DECISION_DENY, S.ACCESS_LEVEL_NONE)
    # A read-only grandparent makes the child read-only.
    upsert(server, account_id="p5", state=S.ACCOUNT_STATE_ACTIVE)
    upsert(server, account_id="p2", parent_id="p3", policy_id="ro",
           state=S.ACCOUNT_STATE_SUSPENDED)
    r = login(server, "child", "alice")
    assert (r.decision, r.access) == (S.DECISION_ALLOW, S.ACCESS_LEVEL_READ_ONLY)
    # An exempt link shields what is under it.
    upsert(server, account_id="p1", parent_id="p2", exempt=True)
    assert login(server, "child", "alice").access == S.ACCESS_LEVEL_FULL


def test_upsert_refuses_a_cycle_or_a_chain_deeper_than_five(server: ServerThread) -> None:
    for i in range(5, 0, -1):
        upsert(server, account_id=f"p{i}", parent_id=f"p{i + 1}" if i < 5 else "")
    upsert(server, account_id="c1", parent_id="p1")  # five ancestors: fine
    for fields, what in (({"account_id": "c2", "parent_id": "c1"}, "deeper than 5"),
                         ({"account_id": "p5", "parent_id": "p1"}, "a cycle")):
        with pytest.raises(grpc.RpcError) as err:
            upsert(server, **fields)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = err.value.details() or ""
        assert details.startswith("account.parent_id") and what in details
    got = server.accounts.GetAccount(apb.GetAccountRequest(account_id="p5"))
    assert got.parent_id == ""  # nothing changed
    with pytest.raises(grpc.RpcError):
        server.accounts.GetAccount(apb.GetAccountRequest(account_id="c2"))


def test_upsert_refuses_a_parent_that_would_push_a_subtree_past_five(
        server: ServerThread) -> None:
    """Moving an account that has children of its own counts their levels too: a chain of
    three (z3 under z2 under z1) can take a subtree two deep, not three."""
    for chain in ("z", "w"):
        for i in range(1, 5):
            upsert(server, account_id=f"{chain}{i}",
                   parent_id=f"{chain}{i - 1}" if i > 1 else "")
    upsert(server, account_id="z4", parent_id="")  # z1 <- z2 <- z3; z4 alone
    with pytest.raises(grpc.RpcError) as err:
        upsert(server, account_id="w1", parent_id="z3")  # w4 would be six levels down
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = err.value.details() or ""
    assert details.startswith("account.parent_id") and "'w1' has 3 level(s)" in details
    got = server.accounts.GetAccount(apb.GetAccountRequest(account_id="w1"))
    assert got.parent_id == ""  # nothing changed
    upsert(server, account_id="w4", parent_id="")  # the subtree is two deep now: it fits
    upsert(server, account_id="w1", parent_id="z3")
    assert server.accounts.GetAccount(apb.GetAccountRequest(account_id="w3")).parent_id == "w2"
    with pytest.raises(grpc.RpcError) as err:  # and w3 cannot take a child any more
        upsert(server, account_id="w4", parent_id="w3")
    assert "deeper than 5" in (err.value.details() or "")
