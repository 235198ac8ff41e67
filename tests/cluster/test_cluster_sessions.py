"""Seats, sessions and quotas on a real 3-master Redis Cluster: every script touches one slot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from tests.support import ServerThread

ACCOUNTS = [f"seats-{i}" for i in range(6)]  # spread over the masters by their buckets


def login(srv: ServerThread, account: str, user: str) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(spb.CheckSessionRequest(account_id=account, user_id=user))


def test_seats_sessions_and_quotas_on_a_cluster(cluster_server: ServerThread) -> None:
    srv = cluster_server
    srv.accounts.UpsertPlan(apb.Plan(plan_id="p", features=[
        apb.Feature(name="exports", kind=apb.FEATURE_KIND_METERED, quota=2)]))
    for aid in ACCOUNTS:
        srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
            account_id=aid, seat_limit=2, plan_id="p")))

    def attempt(i: int) -> tuple[str, spb.CheckSessionResponse]:
        aid = ACCOUNTS[i % len(ACCOUNTS)]
        return aid, login(srv, aid, f"user-{i}")

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(attempt, range(60)))
    for aid in ACCOUNTS:
        allowed = [r for a, r in results if a == aid and r.decision == cpb.DECISION_ALLOW]
        assert len(allowed) == 2
        sid = allowed[0].session_id
        assert srv.sessions.Heartbeat(spb.HeartbeatRequest(session_id=sid)).decision == (
            cpb.DECISION_ALLOW)
        assert srv.sessions.EndSession(spb.EndSessionRequest(session_id=sid)).ended
        assert login(srv, aid, "late").decision == cpb.DECISION_ALLOW  # the freed seat
        req = spb.EntitlementRequest(account_id=aid, user_id="u", feature="exports",
                                     quantity=2, event_id="e1")
        assert srv.sessions.ConsumeEntitlement(req).remaining == 0
        assert srv.sessions.ConsumeEntitlement(req).duplicate
    srv.clock.advance(timedelta(seconds=301))  # every lease lapsed
    assert all(login(srv, aid, "next").decision == cpb.DECISION_ALLOW for aid in ACCOUNTS)
