"""Poison entries on the payment stream (issue 26, item 2): entries that once crashed the
whole batch (`type` = "²", a 5,000-digit `type`, a `due_at` before year 1 in UTC) and a
reused event id are dead-lettered with a field-naming reason, the rest of the same batch is
applied, and nothing stays pending. A real sidecar process, a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import grpc
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.store import keys
from sessiongate.store.embedded import EmbeddedRedis, free_port
from tests.e2e.test_consumer_crash import poll
from tests.e2e.test_process import wait_serving

POISON = [
    ({"event_id": "x1", "account_id": "acme", "type": "²", "amount_minor": "1"}, "type"),
    ({"event_id": "x2", "account_id": "acme", "type": "9" * 5000, "amount_minor": "1"},
     "type"),
    ({"event_id": "x3", "account_id": "acme", "type": "INVOICE_ISSUED", "invoice_id": "i",
      "amount_minor": "1", "due_at": "0001-01-01T00:00:00+14:00"}, "due_at"),
]


def test_poison_entries_never_hold_back_their_batch(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=False)
    server.start()
    r = redis.Redis.from_url(server.url)
    addr, metrics = f"127.0.0.1:{free_port()}", free_port()
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_REDIS_URL": server.url,
           "SESSIONGATE_CONSUMER_NAME": "poisoned", "SESSIONGATE_PAYMENT_CLAIM_IDLE": "1",
           "SESSIONGATE_METRICS_ADDR": f"127.0.0.1:{metrics}",
           "SESSIONGATE_ACCESS_LOG": "false", "SESSIONGATE_DATA_DIR": str(tmp_path)}
    proc: subprocess.Popen[bytes] | None = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sessiongate.cli", "serve"], env=env,
                                stderr=subprocess.DEVNULL)
        wait_serving(addr)
        with grpc.insecure_channel(addr) as ch:
            stub = apb_grpc.AccountsStub(ch)
            for aid in ("acme", "beta"):
                stub.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(account_id=aid)))
        # One batch (MULTI: the consumer meets all at once): the poison first, a valid
        # invoice and credit of another account after, and a payment sent twice, then
        # reused with another amount.
        pipe = r.pipeline(transaction=True)
        for fields, _ in POISON:
            pipe.xadd(keys.PAYMENT_STREAM, fields)  # type: ignore[arg-type]
        pipe.xadd(keys.PAYMENT_STREAM, {
            "event_id": "b-inv", "account_id": "beta", "type": "INVOICE_ISSUED",
            "invoice_id": "inv-1", "amount_minor": "500", "due_at": "2025-01-01T00:00:00Z"})
        pipe.xadd(keys.PAYMENT_STREAM, {"event_id": "b-credit", "account_id": "beta",
                                        "type": "CREDIT_APPLIED", "amount_minor": "500"})
        for amount in ("100", "100", "250"):
            pipe.xadd(keys.PAYMENT_STREAM, {"event_id": "a-pay", "account_id": "acme",
                                            "type": "PAYMENT_SUCCEEDED", "amount_minor": amount})
        pipe.execute()

        def pending() -> int:
            try:
                return int(r.xpending(keys.PAYMENT_STREAM, "sessiongate")["pending"])
            except redis.ResponseError:  # no group yet
                return -1

        poll("every entry handled", lambda: r.xlen(keys.PAYMENT_DEAD_LETTER) == 4
             and pending() == 0, timeout=30)
        dead = [e for _, e in r.xrange(keys.PAYMENT_DEAD_LETTER)]
        reasons = [e[b"reason"].decode() for e in dead]
        for reason, (_, field) in zip(reasons, POISON, strict=False):
            assert reason.startswith(field + ":"), reason
            assert "internal error" not in reason
        assert len(reasons[1]) < 300  # the 5,000 digits are not repeated
        assert reasons[3].startswith("conflicting duplicate: event_id"), reasons[3]
        assert json.loads(dead[3][b"fields"])["amount_minor"] == "250"
        with grpc.insecure_channel(addr) as ch:
            stub = apb_grpc.AccountsStub(ch)
            beta = stub.GetAccount(apb.GetAccountRequest(account_id="beta"))
            assert (beta.balance_minor, beta.state) == (0, cpb.ACCOUNT_STATE_ACTIVE)
            history = stub.GetAccountHistory(apb.GetAccountHistoryRequest(account_id="beta"))
            assert [t.event_id for t in history.transitions][-2:] == ["b-inv", "b-credit"]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert ('sessiongate_conflicting_duplicates_total{source="payments_stream"} 1.0'
                in text), text
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        r.close()
        server.stop()
