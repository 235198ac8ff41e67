"""What the tests test is what production runs: no inlined shadow copies.

The RPC wrapper reports each call through `Observer.record`, the metrics count through
`Buckets.observe`, and a batch of access lines is rendered line by line by `access_line` (each
of which has its own tests), so a fix to one of them reaches production.
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
import redis

from sessiongate import logs
from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.metrics import AGE_BUCKETS, Buckets, Metrics
from tests.support import ServerThread, make_settings


def test_the_rpc_wrapper_reports_each_call_through_observer_record(
        redis_url: str, redis_client: redis.Redis) -> None:
    srv = ServerThread(make_settings(redis_url, access_log=True)).start()
    try:
        assert srv.app.rt is not None
        observer = srv.app.rt.observer
        seen: list[tuple[str, str, bool]] = []
        record = observer.record

        def recording(method: str, code: str, seconds: float, peer: str, rid: str | None,
                      given_rid: Any = None, response: Any = None) -> None:
            seen.append((method, code, peer.startswith("ipv")))
            record(method, code, seconds, peer, rid, given_rid, response)

        observer.record = recording  # type: ignore[method-assign]
        srv.sessions.CheckSession(spb.CheckSessionRequest(account_id="nobody", user_id="u"))
        with pytest.raises(grpc.RpcError) as refused:
            srv.accounts.GetAccount(apb.GetAccountRequest(account_id="nobody"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        deadline = time.monotonic() + 10  # an aborted call is recorded after its status is sent
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [("CheckSession", "OK", True), ("GetAccount", "NOT_FOUND", True)]
    finally:
        srv.stop()


def test_the_metrics_count_through_buckets_observe(monkeypatch: pytest.MonkeyPatch) -> None:
    observed: list[float] = []
    observe = Buckets.observe

    def counting(self: Buckets, value: float) -> None:
        observed.append(value)
        observe(self, value)

    monkeypatch.setattr(Buckets, "observe", counting)
    metrics = object.__new__(Metrics)  # the hook's own state only: no endpoint, no Redis
    metrics.rpc_seconds, metrics.decisions = {}, {}
    metrics.state_age = Buckets(AGE_BUCKETS)
    metrics.redis_errors = {"rpc": 0, "lookup": 0, "scrape": 0}
    metrics.conflicting_duplicates = {}
    answer = spb.CheckSessionResponse(state_age_ms=1500)
    metrics.observe([("GetAccount", "OK", 0.25, 0.0, "", None, None, None),
                     ("CheckSession", "OK", 0.5, 0.0, "", None, None, answer)])
    assert observed == [0.25, 0.5, 1.5]
    assert metrics.state_age.samples()[1] == 1.5


def test_a_batch_of_access_lines_is_rendered_by_access_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    access_line = logs.access_line

    def counting(method: str, *args: Any) -> str:
        calls.append(method)
        return access_line(method, *args)

    monkeypatch.setattr(logs, "access_line", counting)
    ns = 1_769_817_600_123_456_789
    text = logs.access_lines([("CheckSession", "OK", 0.001, "ipv4:1", "a", ns),
                              ("GetAccount", "OK", 0.002, "ipv4:2", "b", ns)])
    assert calls == ["CheckSession", "GetAccount"] and len(text.split("\n")) == 2
