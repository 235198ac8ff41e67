"""SIGKILL a sidecar while it consumes payments: a second replica finishes, nothing is lost
or applied twice. Real processes, a real redis-server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.store import keys
from sessiongate.store.embedded import EmbeddedRedis, free_port
from tests.e2e.test_process import wait_serving

ACCOUNTS = [f"crash-{i}" for i in range(40)]
PAYMENTS_PER_ACCOUNT = 40  # 40 x (1 invoice + 40 payments of 1) = 1640 entries


def poll(what: str, cond: Callable[[], bool], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def sidecar(redis_url: str, name: str, tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    addr = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_REDIS_URL": redis_url,
           "SESSIONGATE_CONSUMER_NAME": name, "SESSIONGATE_PAYMENT_CLAIM_IDLE": "1",
           "SESSIONGATE_METRICS_ADDR": "",
           "SESSIONGATE_HTTP_ADDR": "", "SESSIONGATE_ACCESS_LOG": "false",
           "SESSIONGATE_DATA_DIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-m", "sessiongate.cli", "serve"], env=env,
                            stderr=subprocess.DEVNULL)
    wait_serving(addr)
    return proc, addr


def test_sigkill_mid_stream_loses_and_doubles_nothing(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    r = redis.Redis.from_url(server.url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        first, addr = sidecar(server.url, "doomed", tmp_path)
        procs.append(first)
        with grpc.insecure_channel(addr) as ch:
            stub = apb_grpc.AccountsStub(ch)
            for aid in ACCOUNTS:
                stub.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(account_id=aid)))

        pipe = r.pipeline(transaction=False)
        for aid in ACCOUNTS:
            pipe.xadd(keys.PAYMENT_STREAM, {
                "event_id": f"{aid}-inv", "account_id": aid, "type": "INVOICE_ISSUED",
                "invoice_id": "inv-1", "amount_minor": "100000", "currency": "USD",
                "due_at": "2026-01-01T00:00:00Z"})
        for n in range(PAYMENTS_PER_ACCOUNT):
            for aid in ACCOUNTS:
                pipe.xadd(keys.PAYMENT_STREAM, {
                    "event_id": f"{aid}-pay-{n}", "account_id": aid,
                    "type": "PAYMENT_SUCCEEDED", "amount_minor": "1", "currency": "USD"})
        pipe.execute()
        total = len(ACCOUNTS) * (1 + PAYMENTS_PER_ACCOUNT)

        def applied() -> int:
            p = r.pipeline(transaction=False)
            for aid in ACCOUNTS:  # an applied payment event is in its account's ledger
                p.hget(keys.account(aid), "l")
            return sum((ledger or b"").count(b"\x1e") for ledger in p.execute())

        def pending() -> int:
            try:
                return int(r.xpending(keys.PAYMENT_STREAM, "sessiongate")["pending"])
            except redis.ResponseError:  # no group yet
                return -1

        # Kill the first sidecar mid-stream: some entries applied, some read but not acked.
        poll("the first consumer to make progress", lambda: applied() > 50)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert applied() < total, "the consumer finished before it could be killed"
        # Killed mid-batch: entries it had read stay pending under its name, for XAUTOCLAIM.
        assert pending() > 0

        second, second_addr = sidecar(server.url, "survivor", tmp_path)
        procs.append(second)
        poll("every entry to be applied and acknowledged",
             lambda: applied() == total and pending() == 0)

        for aid in ACCOUNTS:
            ledger = r.hget(keys.account(aid), "l") or b""
            assert ledger.count(b"\x1e") == 1 + PAYMENTS_PER_ACCOUNT  # every event, once
        with grpc.insecure_channel(second_addr) as ch:
            stub = apb_grpc.AccountsStub(ch)
            for aid in ACCOUNTS:
                got = stub.GetAccount(apb.GetAccountRequest(account_id=aid))
                assert got.balance_minor == 100000 - PAYMENTS_PER_ACCOUNT  # none lost/doubled
        assert r.xlen(keys.PAYMENT_DEAD_LETTER) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        r.close()
        server.stop()
