"""Attacks on the login path (issue 26): memory, SIGTERM races, a hung Redis, unknown ids.

The sidecar is `sessiongate serve` in a child process and Redis a real redis-server, except
for the near-cache bound, which the in-process server shows as well (real Redis and gRPC).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.client import AsyncClient, ClientConfig
from sessiongate.service.session_control import RAW_METHOD
from sessiongate.service.wire import varint
from sessiongate.store.embedded import EmbeddedRedis, free_port
from tests.e2e.sidecar import poll
from tests.e2e.test_process import wait_serving
from tests.support import ServerThread, make_settings

SG = [sys.executable, "-m", "sessiongate.cli", "serve"]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis(tmp_path / "redis", persistent=False)
    srv.start()
    try:
        yield srv
    finally:
        pid = srv.pid
        if pid is not None:
            os.kill(pid, signal.SIGCONT)  # in case a test left it stopped
        srv.stop()


@pytest.fixture
def sidecar(tmp_path: Path, redis_server: EmbeddedRedis
            ) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], str]]]:
    """Starts `sessiongate serve` on `redis_server` with extra settings; with one account,
    `acme` (user `alice`). Killed at the end if a test did not stop it."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(**settings: str) -> tuple[subprocess.Popen[bytes], str]:
        addr = f"127.0.0.1:{free_port()}"
        env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_LOG_FORMAT": "json",
               "SESSIONGATE_SCHEDULER": "0", "SESSIONGATE_DATA_DIR": str(tmp_path / "sidecar"),
               "SESSIONGATE_REDIS_URL": redis_server.url, "SESSIONGATE_METRICS_ADDR": "",
               "SESSIONGATE_ACCESS_LOG": "0",
               **{f"SESSIONGATE_{k.upper()}": v for k, v in settings.items()}}
        log = (tmp_path / "sidecar.log").open("ab")
        proc = subprocess.Popen(SG, env=env, stderr=log, stdout=subprocess.DEVNULL)
        procs.append(proc)
        wait_serving(addr)
        with grpc.insecure_channel(addr) as ch:
            apb_grpc.AccountsStub(ch).UpsertAccount(apb.UpsertAccountRequest(
                account=apb.Account(account_id="acme", users=["alice"])), timeout=10)
        return proc, addr

    try:
        yield start
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_requests_with_large_distinct_unknown_fields_do_not_grow_memory(
    sidecar: Callable[..., tuple[subprocess.Popen[bytes], str]],
) -> None:
    """Unknown fields are legal: 300 logins of 3.9 MB (under gRPC's 4 MiB receive limit)
    that differ only in one are all answered, and the server keeps none of their bytes."""
    proc, addr = sidecar()
    body = spb.CheckSessionRequest(account_id="acme", user_id="alice",
                                   no_session=True).SerializeToString()
    filler = b"x" * 3_900_000
    unknown_field = varint((1000 << 3) | 2)  # field 1000, length-delimited: no such field

    def request(i: int) -> bytes:
        padding = b"%08d" % i + filler
        return body + unknown_field + varint(len(padding)) + padding

    sent = 0
    with grpc.insecure_channel(addr) as ch:
        check = ch.unary_unary(RAW_METHOD, request_serializer=None,
                               response_deserializer=spb.CheckSessionResponse.FromString)
        for i in range(10):  # gRPC's buffers for messages this size, before the baseline
            assert check(request(i), timeout=30).decision == cpb.DECISION_ALLOW
        before = rss_bytes(proc.pid)
        for i in range(10, 310):
            raw = request(i)
            r = check(raw, timeout=30)
            assert (r.decision, r.reason) == (cpb.DECISION_ALLOW, cpb.REASON_OK)
            sent += len(raw)
        grown = rss_bytes(proc.pid) - before
    assert sent > 1_100_000_000
    assert grown < 300_000_000, f"RSS grew {grown / 1e6:.0f} MB for {sent / 1e6:.0f} MB sent"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_sigterm_under_load_cancels_no_call_through_the_sdk(
    sidecar: Callable[..., tuple[subprocess.Popen[bytes], str]],
) -> None:
    """Many calls in flight when SIGTERM arrives: each is answered by the server or, once
    it is gone, by the SDK's fallback; none raises (CANCELLED included)."""
    proc, addr = sidecar(drain_timeout="10")
    outcomes: Counter[str] = Counter()
    errors: list[str] = []
    stop = threading.Event()

    async def hammer() -> None:
        cfg = ClientConfig(addr=addr, timeout=5.0, max_attempts=1)
        async with AsyncClient(cfg) as sg:
            async def worker() -> None:
                while not stop.is_set():
                    try:
                        r = await sg.check_session("acme", "alice", open_session=False)
                    except grpc.RpcError as exc:
                        errors.append(f"{exc.code().name}: {exc.details()}")
                        continue
                    if r.source == cpb.STATE_SOURCE_FAILURE_MODE and "client fallback" in r.message:
                        outcomes["fallback"] += 1
                    else:
                        assert r.decision == cpb.DECISION_ALLOW, r
                        outcomes["answered"] += 1
            await asyncio.gather(*[worker() for _ in range(64)])

    thread = threading.Thread(target=asyncio.run, args=(hammer(),), daemon=True)
    thread.start()
    try:
        poll("the load running", lambda: outcomes["answered"] > 500)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        poll("the fallback answering", lambda: outcomes["fallback"] > 100)
    finally:
        stop.set()
        thread.join(30)
    assert not errors, Counter(errors)
    assert outcomes["answered"] > 500


@pytest.mark.parametrize("mode", ["closed", "static"])
def test_hung_redis_answers_by_failure_mode_within_a_one_second_deadline(
    sidecar: Callable[..., tuple[subprocess.Popen[bytes], str]],
    redis_server: EmbeddedRedis, mode: str,
) -> None:
    """A stopped redis-server accepts connections and never answers: past the near-cache TTL
    each lookup gives up after SESSIONGATE_LOGIN_REDIS_TIMEOUT (default 250 ms), not the 2 s
    socket timeout, so a client with a 1 s deadline gets the failure mode's answer."""
    proc, addr = sidecar(failure_mode=mode, near_cache_ttl="0.3")
    pid = redis_server.pid
    assert pid is not None
    with grpc.insecure_channel(addr) as ch:
        stub = spb_grpc.SessionControlStub(ch)

        def check(account_id: str) -> spb.CheckSessionResponse:
            r: spb.CheckSessionResponse = stub.CheckSession(spb.CheckSessionRequest(
                account_id=account_id, user_id="alice", no_session=True), timeout=1.0)
            return r

        assert check("acme").decision == cpb.DECISION_ALLOW
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(0.5)  # past the near-cache TTL
            for _ in range(4):  # the same account again: no read piles up behind the first
                r = check("acme")
                if mode == "closed":
                    assert (r.source, r.decision, r.reason) == (
                        cpb.STATE_SOURCE_FAILURE_MODE, cpb.DECISION_DENY,
                        cpb.REASON_BACKEND_UNAVAILABLE), r
                else:
                    assert (r.source, r.decision, r.reason) == (
                        cpb.STATE_SOURCE_STALE, cpb.DECISION_ALLOW, cpb.REASON_OK), r
            r = check("never-seen")  # no last known state in either mode
            assert (r.source, r.decision, r.reason) == (
                cpb.STATE_SOURCE_FAILURE_MODE, cpb.DECISION_DENY,
                cpb.REASON_BACKEND_UNAVAILABLE), r
        finally:
            os.kill(pid, signal.SIGCONT)

        def recovered() -> bool:
            r = check("acme")
            return r.source in (cpb.STATE_SOURCE_REDIS, cpb.STATE_SOURCE_NEAR_CACHE) and (
                r.decision == cpb.DECISION_ALLOW)

        poll("recovery once Redis runs again", recovered)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def test_unknown_ids_never_evict_known_accounts(redis_client: redis.Redis,
                                                redis_url: str) -> None:
    """The near-cache full of accounts; ten times its bound of unknown ids: every account is
    still answered from the near-cache."""
    srv = ServerThread(make_settings(redis_url, near_cache_ttl=60.0, near_cache_entries=30,
                                     near_cache_unknown=10)).start()
    try:
        known = [f"known-{i}" for i in range(30)]
        for aid in known:
            srv.accounts.UpsertAccount(apb.UpsertAccountRequest(
                account=apb.Account(account_id=aid, users=["alice"])), timeout=10)

        def check(aid: str) -> spb.CheckSessionResponse:
            r: spb.CheckSessionResponse = srv.sessions.CheckSession(spb.CheckSessionRequest(
                account_id=aid, user_id="alice", no_session=True), timeout=10)
            return r

        assert {check(aid).source for aid in known} == {cpb.STATE_SOURCE_NEAR_CACHE}
        for i in range(100):
            r = check(f"unknown-{i}")
            assert (r.source, r.reason) == (cpb.STATE_SOURCE_REDIS, cpb.REASON_UNKNOWN_ACCOUNT)
        answers = [check(aid) for aid in known]
        assert {(r.source, r.decision) for r in answers} == {
            (cpb.STATE_SOURCE_NEAR_CACHE, cpb.DECISION_ALLOW)}
        # The last unknown ids are remembered too (within their own bound).
        assert check("unknown-99").source == cpb.STATE_SOURCE_NEAR_CACHE
    finally:
        srv.stop()
