"""The Prometheus endpoint of a real server: RPC, decision, near-cache and Redis-side metrics."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.store import keys
from tests.support import ServerThread, make_settings

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def scrape_counting(port: int, calls: int, method: str = "CheckSession") -> Samples:
    """A scrape once all `calls` of `method` are counted: the server reports finished calls
    in batches, some milliseconds after they end (rpc.FLUSH_AFTER_S)."""
    deadline = time.monotonic() + 10
    while True:
        m = scrape(port)
        counted = sum(v for (name, labels), v in m.items()
                      if name == "sessiongate_rpc_duration_seconds_count"
                      and ("method", method) in labels)
        if counted >= calls or time.monotonic() > deadline:
            return m
        time.sleep(0.01)


@pytest.fixture
def metered(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    srv = ServerThread(
        make_settings(redis_url, scheduler=False, metrics_addr="127.0.0.1:0",
                      near_cache_ttl=300.0)).start()  # hits stay hits on a busy machine
    try:
        yield srv
    finally:
        srv.stop()


def test_rpc_decision_and_cache_metrics(metered: ServerThread) -> None:
    assert metered.app.metrics is not None
    port = metered.app.metrics.port
    metered.accounts.UpsertAccount(apb.UpsertAccountRequest(
        account=apb.Account(account_id="acme", users=["alice"])))
    for user in ("alice", "alice", "mallory"):
        metered.sessions.CheckSession(spb.CheckSessionRequest(account_id="acme", user_id=user))
    metered.sessions.CheckSession(spb.CheckSessionRequest(account_id="ghost", user_id="u"))
    with pytest.raises(grpc.RpcError):
        metered.sessions.CheckSession(spb.CheckSessionRequest(account_id="", user_id="u"))

    m = scrape_counting(port, 5)
    hist = "sessiongate_rpc_duration_seconds_count"
    assert value(m, hist, method="CheckSession", code="OK") == 4
    assert value(m, hist, method="CheckSession", code="INVALID_ARGUMENT") == 1
    assert value(m, hist, method="UpsertAccount", code="OK") == 1
    assert value(m, "sessiongate_rpc_duration_seconds_bucket",
                 method="CheckSession", code="OK", le="+Inf") == 4
    dec = "sessiongate_decisions_total"
    assert value(m, dec, decision="ALLOW", reason="OK", source="NEAR_CACHE") == 2
    assert value(m, dec, decision="DENY", reason="USER_NOT_AUTHORIZED", source="NEAR_CACHE") == 1
    assert value(m, dec, decision="DENY", reason="UNKNOWN_ACCOUNT", source="REDIS") == 1
    assert value(m, "sessiongate_decision_state_age_seconds_count") == 4
    assert value(m, "sessiongate_near_cache_hits_total") == 3
    assert value(m, "sessiongate_near_cache_misses_total") >= 1
    assert value(m, "sessiongate_redis_up") == 1
    assert value(m, "sessiongate_redis_errors_total", where="lookup") == 0
    assert value(m, "sessiongate_accounts", state="ACTIVE") == 1


def test_seat_limited_logins_answered_from_their_bytes_are_counted(
        metered: ServerThread) -> None:
    """A seat-limited login seen before is answered as bytes by the method (`wire.Sent`):
    the metrics count its decision and its state's age as for any answer."""
    assert metered.app.metrics is not None
    metered.accounts.UpsertAccount(apb.UpsertAccountRequest(
        account=apb.Account(account_id="seats", users=["alice"], seat_limit=5)))
    for _ in range(4):
        got = metered.sessions.CheckSession(
            spb.CheckSessionRequest(account_id="seats", user_id="alice"))
        assert got.decision == cpb.DECISION_ALLOW and got.session_id
    m = scrape_counting(metered.app.metrics.port, 4)
    assert value(m, "sessiongate_rpc_duration_seconds_count", method="CheckSession",
                 code="OK") == 4
    assert value(m, "sessiongate_decisions_total", decision="ALLOW", reason="OK",
                 source="NEAR_CACHE") == 4  # the upsert warmed the near-cache
    assert value(m, "sessiongate_decision_state_age_seconds_count") == 4


def test_payment_queue_dead_letters_and_accounts_by_state(
    metered: ServerThread, redis_client: redis.Redis
) -> None:
    assert metered.app.metrics is not None
    m = scrape(metered.app.metrics.port)  # no stream yet: tolerated
    assert value(m, "sessiongate_payment_stream_length") == 0
    assert value(m, "sessiongate_redis_up") == 1

    metered.app.metrics.collector._accounts_at = float("-inf")  # force a fresh scan
    for aid, state in (("a1", cpb.ACCOUNT_STATE_SUSPENDED), ("a2", cpb.ACCOUNT_STATE_SUSPENDED),
                       ("a3", cpb.ACCOUNT_STATE_CLOSED)):
        metered.accounts.UpsertAccount(apb.UpsertAccountRequest(
            account=apb.Account(account_id=aid, state=state)))
    group = "metrics-test-group"
    redis_client.xgroup_create(keys.PAYMENT_STREAM, group, id="0", mkstream=True)
    for i in range(3):
        redis_client.xadd(keys.PAYMENT_STREAM, {"event_id": f"e{i}"}, id=f"{1000 + i}-0")
    redis_client.xreadgroup(group, "c1", {keys.PAYMENT_STREAM: ">"}, count=1)  # 1 pending
    redis_client.xadd(keys.PAYMENT_DEAD_LETTER, {"event_id": "bad"})

    m = scrape(metered.app.metrics.port)
    assert value(m, "sessiongate_payment_stream_length") == 3
    assert value(m, "sessiongate_payment_pending", group=group) == 1
    # Entries at 1970-01-01T00:00:01: very old, so the lag is large and positive.
    assert value(m, "sessiongate_payment_lag_seconds", group=group) > 1e6
    assert value(m, "sessiongate_payment_oldest_pending_seconds", group=group) > 1e6
    assert value(m, "sessiongate_payment_dead_letters") == 1
    assert value(m, "sessiongate_accounts", state="SUSPENDED") == 2
    assert value(m, "sessiongate_accounts", state="CLOSED") == 1

    redis_client.xreadgroup(group, "c1", {keys.PAYMENT_STREAM: ">"})
    redis_client.xack(keys.PAYMENT_STREAM, group, "1000-0", "1001-0", "1002-0")
    m = scrape(metered.app.metrics.port)
    assert value(m, "sessiongate_payment_lag_seconds", group=group) == 0
    assert value(m, "sessiongate_payment_pending", group=group) == 0
    assert value(m, "sessiongate_payment_oldest_pending_seconds", group=group) == 0


def test_metrics_off_when_the_address_is_empty(redis_client: redis.Redis, redis_url: str) -> None:
    srv = ServerThread(make_settings(redis_url, scheduler=False, metrics_addr="")).start()
    try:
        assert srv.app.metrics is None
        assert srv.app.rt is not None and not srv.app.rt.observer.hooks
    finally:
        srv.stop()


class _Notifier:
    """A stand-in component exposing the deliverer's per-sink counters (sent, failed, dead)."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter(webhook=3, email=1)
        self.failed: Counter[str] = Counter(webhook=2)
        self.dead: Counter[str] = Counter(email=1)

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def test_notification_counters_of_components(metered: ServerThread) -> None:
    assert metered.app.metrics is not None
    metered.app.components.append(_Notifier())
    m = scrape(metered.app.metrics.port)
    assert value(m, "sessiongate_notifications_sent_total", sink="webhook") == 3
    assert value(m, "sessiongate_notifications_sent_total", sink="email") == 1
    assert value(m, "sessiongate_notifications_failed_total", sink="webhook") == 2


def test_grafana_dashboard_queries_exported_metrics(metered: ServerThread, repo_root: Path) -> None:
    """Every metric the dashboard queries is one this server exports (after some traffic)."""
    assert metered.app.metrics is not None
    metered.app.components.append(_Notifier())
    metered.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(account_id="x")))
    metered.sessions.CheckSession(spb.CheckSessionRequest(account_id="x", user_id="u"))
    redis.Redis.from_url(metered.app.settings.redis_url).xgroup_create(
        keys.PAYMENT_STREAM, "g", id="0", mkstream=True)
    exported = {name for name, _ in scrape_counting(metered.app.metrics.port, 1)}
    dashboard = json.loads((repo_root / "deploy/grafana/sessiongate.json").read_text())
    queried = {m for p in dashboard["panels"] for t in p["targets"]
               for m in re.findall(r"\bsessiongate_[a-z_]+", t["expr"])}
    assert queried, "no queries found"
    assert queried <= exported, queried - exported
    assert {"sessiongate_decisions_total", "sessiongate_payment_lag_seconds",
            "sessiongate_accounts", "sessiongate_redis_up"} <= queried


def test_forward_auth_requests_are_counted_like_rpcs(redis_client: redis.Redis,
                                                     redis_url: str) -> None:
    """/authz answers are in the latency metric (`method="HTTP /authz"`, `code` the HTTP
    status), as gRPC calls are."""
    import http.client

    srv = ServerThread(make_settings(redis_url, scheduler=False, metrics_addr="127.0.0.1:0",
                                     http_addr="127.0.0.1:0")).start()
    try:
        assert srv.app.metrics is not None
        srv.accounts.UpsertAccount(apb.UpsertAccountRequest(
            account=apb.Account(account_id="acme", users=["alice"])))
        statuses = []
        for user in ("alice", "alice", "mallory"):
            conn = http.client.HTTPConnection("127.0.0.1", srv.app.http_port, timeout=10)
            conn.request("GET", "/authz", headers={"x-account-id": "acme", "x-user-id": user})
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
            conn.close()
        assert statuses == [200, 200, 403]
        m = scrape_counting(srv.app.metrics.port, 3, "HTTP /authz")
        name = "sessiongate_rpc_duration_seconds_count"
        assert value(m, name, method="HTTP /authz", code="200") == 2
        assert value(m, name, method="HTTP /authz", code="403") == 1
    finally:
        srv.stop()
