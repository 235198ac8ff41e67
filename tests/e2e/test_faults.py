"""Faults against real processes: Redis dies and returns under load; SIGTERM under load.

The sidecar is `sessiongate serve` in a child process; Redis is a real redis-server
(EmbeddedRedis) that the test SIGKILLs and starts again on the same port and data directory.
Every wait polls with a generous timeout: nothing here asserts on speed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.store.embedded import EmbeddedRedis, free_port
from tests.e2e.sidecar import poll
from tests.e2e.test_process import wait_serving

SG = [sys.executable, "-m", "sessiongate.cli", "serve"]


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


class Load:
    """Threads calling CheckSession without pause; records every outcome."""

    def __init__(self, addr: str, accounts: list[str], threads: int = 2) -> None:
        self.addr, self.accounts = addr, accounts
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: Counter[str] = Counter()
        self.last: dict[str, spb.CheckSessionResponse] = {}
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with grpc.insecure_channel(self.addr) as ch:
            stub = spb_grpc.SessionControlStub(ch)
            i = 0
            while not self.stop.is_set():
                aid = self.accounts[i % len(self.accounts)]
                i += 1
                try:
                    r = stub.CheckSession(spb.CheckSessionRequest(
                        account_id=aid, user_id="alice", no_session=True), timeout=15)
                    key = f"OK/{cpb.StateSource.Name(r.source)}/{cpb.Decision.Name(r.decision)}"
                    with self.lock:
                        self.last[aid] = r
                except grpc.RpcError as exc:
                    key = exc.code().name
                with self.lock:
                    self.outcomes[key] += 1

    def latest(self, aid: str) -> spb.CheckSessionResponse | None:
        with self.lock:
            return self.last.get(aid)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def _sidecar(env_extra: dict[str, str], tmp: Path) -> tuple[subprocess.Popen[str], str]:
    addr = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_LOG_FORMAT": "json",
           "SESSIONGATE_SCHEDULER": "0", "SESSIONGATE_DATA_DIR": str(tmp / "sidecar"),
           **env_extra}
    log = (tmp / "sidecar.log").open("w")
    proc = subprocess.Popen(SG, env=env, stderr=log, stdout=subprocess.DEVNULL, text=True)
    wait_serving(addr)
    return proc, addr


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    # fsync every write: a SIGKILL loses nothing, so the restarted server has the accounts.
    srv = EmbeddedRedis(tmp_path / "redis", extra_args=("--appendfsync", "always"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(("mode", "known_source", "known_decision", "unknown_decision"), [
    ("closed", cpb.STATE_SOURCE_FAILURE_MODE, cpb.DECISION_DENY, cpb.DECISION_DENY),
    ("open", cpb.STATE_SOURCE_FAILURE_MODE, cpb.DECISION_ALLOW, cpb.DECISION_ALLOW),
    ("static", cpb.STATE_SOURCE_STALE, cpb.DECISION_ALLOW, cpb.DECISION_DENY),
], ids=["closed", "open", "static"])
def test_redis_killed_and_restarted_under_load(
    tmp_path: Path, redis_server: EmbeddedRedis, mode: str, known_source: int,
    known_decision: int, unknown_decision: int,
) -> None:
    metrics_port = free_port()
    proc, addr = _sidecar({
        "SESSIONGATE_REDIS_URL": redis_server.url, "SESSIONGATE_FAILURE_MODE": mode,
        "SESSIONGATE_NEAR_CACHE_TTL": "0.2", "SESSIONGATE_ACCESS_LOG": "0",
        "SESSIONGATE_METRICS_ADDR": f"127.0.0.1:{metrics_port}", "SESSIONGATE_HTTP_ADDR": "",
    }, tmp_path)
    try:
        with grpc.insecure_channel(addr) as ch:
            apb_grpc.AccountsStub(ch).UpsertAccount(apb.UpsertAccountRequest(
                account=apb.Account(account_id="acme", users=["alice"])), timeout=10)
        with Load(addr, ["acme", "ghost"]) as load:
            poll("a Redis answer", lambda: (r := load.latest("acme")) is not None
                 and r.decision == cpb.DECISION_ALLOW)
            redis_server.kill()
            poll(f"{mode} answers for a known account",
                 lambda: (r := load.latest("acme")) is not None and r.source == known_source)
            known = load.latest("acme")
            assert known is not None and known.decision == known_decision
            if known_source == cpb.STATE_SOURCE_FAILURE_MODE:
                assert known.reason == cpb.REASON_BACKEND_UNAVAILABLE
                assert mode in known.message
            else:  # static: the last known state, and how old it is
                assert (known.reason, known.state) == (cpb.REASON_OK, cpb.ACCOUNT_STATE_ACTIVE)
                assert known.state_age_ms > 0
            with grpc.insecure_channel(addr) as ch:  # an account no lookup has seen yet
                unknown = spb_grpc.SessionControlStub(ch).CheckSession(spb.CheckSessionRequest(
                    account_id="never-seen", user_id="alice", no_session=True), timeout=15)
            assert (unknown.source, unknown.decision) == (
                cpb.STATE_SOURCE_FAILURE_MODE, unknown_decision)

            m = scrape(metrics_port)
            assert total(m, "sessiongate_redis_up") == 0
            assert total(m, "sessiongate_redis_errors_total", where="lookup") > 0
            degraded = "FAILURE_MODE" if known_source == cpb.STATE_SOURCE_FAILURE_MODE else "STALE"
            assert total(m, "sessiongate_decisions_total", source=degraded) > 0

            redis_server.start()  # same port, same data directory
            poll("recovery without a restart",
                 lambda: (r := load.latest("acme")) is not None
                 and r.source in (cpb.STATE_SOURCE_REDIS, cpb.STATE_SOURCE_NEAR_CACHE)
                 and r.decision == cpb.DECISION_ALLOW
                 and (u := load.latest("ghost")) is not None
                 and u.source in (cpb.STATE_SOURCE_REDIS, cpb.STATE_SOURCE_NEAR_CACHE)
                 and u.reason == cpb.REASON_UNKNOWN_ACCOUNT)
            poll("redis_up back to 1",
                 lambda: total(scrape(metrics_port), "sessiongate_redis_up") == 1)
        assert proc.poll() is None  # the same process served throughout
        # Every call was answered: the failure mode is an answer, not an error.
        assert set(load.outcomes) <= {
            f"OK/{cpb.StateSource.Name(s)}/{cpb.Decision.Name(d)}"
            for s in cpb.StateSource.values() for d in cpb.Decision.values()}, load.outcomes
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_sigterm_under_load_drains(tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    proc, addr = _sidecar({
        "SESSIONGATE_REDIS_URL": redis_server.url, "SESSIONGATE_METRICS_ADDR": "",
        "SESSIONGATE_HTTP_ADDR": "",
        "SESSIONGATE_DRAIN_DELAY": "3", "SESSIONGATE_DRAIN_TIMEOUT": "20",
    }, tmp_path)
    with grpc.insecure_channel(addr) as ch:
        apb_grpc.AccountsStub(ch).UpsertAccount(apb.UpsertAccountRequest(
            account=apb.Account(account_id="acme", users=["alice"])), timeout=10)
        stub = spb_grpc.SessionControlStub(ch)
        r = stub.CheckSession(spb.CheckSessionRequest(account_id="acme", user_id="alice"),
                              metadata=[("x-request-id", "fault-req-1")], timeout=10)
        assert r.decision == cpb.DECISION_ALLOW

        # An in-flight client stream: its second event is sent only after the drain began.
        release = threading.Event()
        stream_result: dict[str, object] = {}

        def events() -> Iterator[spb.UsageEvent]:
            yield spb.UsageEvent(event_id="u1", account_id="acme", feature="api", quantity=1)
            release.wait(60)
            yield spb.UsageEvent(event_id="u2", account_id="acme", feature="api", quantity=2)

        def stream() -> None:
            try:
                stream_result["resp"] = stub.RecordUsageStream(events(), timeout=60)
            except grpc.RpcError as exc:
                stream_result["error"] = exc.code()

        streamer = threading.Thread(target=stream)
        with Load(addr, ["acme"]) as load:
            streamer.start()
            poll("load running", lambda: load.outcomes["OK/STATE_SOURCE_NEAR_CACHE/DECISION_ALLOW"]
                 + load.outcomes["OK/STATE_SOURCE_REDIS/DECISION_ALLOW"] > 20)
            proc.send_signal(signal.SIGTERM)
            health = health_pb2_grpc.HealthStub(ch)

            def not_serving() -> bool:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                except grpc.RpcError:
                    return False
                return bool(status == health_pb2.HealthCheckResponse.NOT_SERVING)

            poll("health NOT_SERVING", not_serving)
            # Still serving during the drain delay: the load goes on a little, like a
            # balancer that has not yet routed away, then stops.
            served = sum(load.outcomes.values())
            poll("calls served during the drain delay",
                 lambda: sum(load.outcomes.values()) > served + 10)
        release.set()
        streamer.join(60)
        assert proc.wait(60) == 0
        resp = stream_result.get("resp")
        assert isinstance(resp, spb.RecordUsageBatchResponse), stream_result
        assert resp.accepted == 2
    # Every call of the load, before and during the drain, was answered.
    assert set(load.outcomes) <= {
        "OK/STATE_SOURCE_NEAR_CACHE/DECISION_ALLOW", "OK/STATE_SOURCE_REDIS/DECISION_ALLOW",
    }, load.outcomes
    lines = [json.loads(line) for line in (tmp_path / "sidecar.log").read_text().splitlines()
             if line.startswith("{")]
    events_ = [e["event"] for e in lines]
    assert "draining" in events_ and events_[-1] == "stopped"
    tagged = [e for e in lines if e.get("request_id") == "fault-req-1"]
    assert tagged and tagged[0]["method"] == "CheckSession"
    assert all(e.get("request_id") for e in lines if e["event"] == "rpc")
