"""Notification delivery: real redis-server, a real HTTP receiver, a real SMTP server (aiosmtpd).

Tests wait for outcomes with generous timeouts; none asserts on timing.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import pathlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster

from sessiongate.billing.notify.email import EmailSink, SmtpTarget, compose
from sessiongate.billing.notify.outbox import GROUP, Deliverer
from sessiongate.billing.notify.sink import Notification, Sink
from sessiongate.billing.notify.webhook import WebhookSink, verify
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.model import Account
from sessiongate.store import keys
from sessiongate.store.client import transport
from sessiongate.store.transport import Transport
from tests.cluster.cluster import LocalCluster
from tests.integration.dunning_support import DAY, T0, invoice, pay, start, upsert
from tests.support import Connect, ServerThread, async_until, make_settings, run_with

SECRET = "s3cret"
WAIT = 30.0


class Receiver:
    """A webhook receiver: answers `status` (or the next scripted status), records requests."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.status = 200
        self.script: list[int] = []
        self.requests: list[tuple[int, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    status = receiver.script.pop(0) if receiver.script else receiver.status
                    receiver.requests.append((status, dict(self.headers.items()), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def delivered(self) -> list[str]:
        """Notification ids answered with 200, in order (duplicates included)."""
        with self.lock:
            return [h["X-Sessiongate-Notification-Id"] for s, h, _ in self.requests if s == 200]

    def count(self) -> int:
        with self.lock:
            return len(self.requests)


class Mailbox:
    """aiosmtpd handler: keeps every message with its envelope recipients."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            return [str(m["X-Sessiongate-Notification-Id"]) for _, m in self.messages]


def smtp_server(handler: Mailbox, **kw: Any) -> tuple[Controller, int]:
    """A started aiosmtpd server on a free port (another port if a neighbour took it)."""
    for attempt in range(5):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=30,
                                **kw)
        try:
            controller.start()
        except Exception:
            if attempt == 4:
                raise
            continue
        return controller, port
    raise AssertionError("unreachable")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.thread.start()
    yield r
    r.server.shutdown()
    r.server.server_close()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    box = Mailbox()
    controller, port = smtp_server(box)
    yield box, f"smtp://127.0.0.1:{port}"
    controller.stop()


def note(account: str, n: int, state: str = "REMINDER", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": f"{account}:{n}:transition", "kind": "transition", "account_id": account,
        "state": state, "previous_state": "ACTIVE", "amount_due_minor": 12000,
        "currency": "USD", "suspends_at": "2026-02-01T00:00:00+00:00",
        "reason": "invoice inv-1 is 1 day overdue", "at": "2026-01-02T00:00:00+00:00",
        "admin_emails": [f"billing@{account}.test", f"cfo@{account}.test"],
    }
    body.update(extra)
    return body


def xadd(r: redis.Redis, body: dict[str, Any]) -> None:
    account = body["account_id"]
    r.xadd(keys.outbox_of(account),
           {"account": account, "version": 1, "body": json.dumps(body)})


def pending(r: redis.Redis) -> int:
    total = 0
    for b in keys.ALL_BUCKETS:
        stream = keys.outbox(b)
        if r.exists(stream) and any(g["name"] == GROUP.encode() for g in r.xinfo_groups(stream)):
            total += int(r.xpending(stream, GROUP)["pending"])
    return total


def wait_until(pred: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)




def deliverer(r: Transport, sinks: list[Sink], name: str, **kw: Any) -> Deliverer:
    kw = {"retry_base": 0.02, "retry_max": 0.2, "block": 0.2, **kw}
    return Deliverer(r, sinks, consumer=name, **kw)


def test_app_delivers_a_committed_notification_by_webhook_and_email(
    redis_client: redis.Redis, redis_url: str, receiver: Receiver,
    mailbox: tuple[Mailbox, str],
) -> None:
    box, smtp_url = mailbox
    settings = make_settings(
        redis_url, webhook_url=receiver.url, webhook_secret=SECRET, smtp_url=smtp_url,
        smtp_from="dunning@vendor.test", scheduler=False,
    )
    srv = ServerThread(settings).start()
    try:
        rt = srv.app.rt
        assert rt is not None
        body = note("acme", 1, state="GRACE")
        quiet = note("solo", 1, state="REMINDER", admin_emails=[])
        for b in (body, quiet):
            res = srv.call(rt.accounts.commit(
                Account(b["account_id"]), expected_version=0, now=datetime.now(UTC),
                notifications=[b]))
            assert res.ok
        wait_until(lambda: len(receiver.delivered()) == 2, "both webhook calls")
        wait_until(lambda: len(box.ids()) == 1, "the email")
        wait_until(lambda: pending(redis_client) == 0, "acks")
    finally:
        srv.stop()

    by_id = {h["X-Sessiongate-Notification-Id"]: (h, raw) for _, h, raw in receiver.requests}
    headers, raw = by_id["acme:1:transition"]
    assert json.loads(raw) == body
    expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Sessiongate-Signature"] == expected
    assert verify(SECRET, raw, headers["X-Sessiongate-Signature"])
    assert not verify(SECRET, raw + b" ", headers["X-Sessiongate-Signature"])
    assert headers["Content-Type"] == "application/json"
    assert int(headers["X-Sessiongate-Timestamp"]) > 1_700_000_000
    assert "solo:1:transition" in by_id  # no admin emails: webhook only

    rcpts, msg = box.messages[0]
    assert sorted(rcpts) == ["billing@acme.test", "cfo@acme.test"]
    assert msg["From"] == "dunning@vendor.test"
    assert msg["Subject"] == "Final notice: 120.00 USD overdue, access ends 2026-02-01 00:00 UTC"
    assert msg["X-Sessiongate-Notification-Id"] == "acme:1:transition"
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(("plain",)).get_content()
    assert "120.00 USD" in text and "invoice inv-1 is 1 day overdue" in text
    html = msg.get_body(("html",)).get_content()  # from templates/dunning.html, CSS inlined
    assert "120.00 USD" in html and "invoice inv-1 is 1 day overdue" in html
    assert "<style" not in html and 'style="' in html
    # Acknowledged entries leave the outbox.
    assert all(redis_client.xlen(keys.outbox(b)) == 0 for b in keys.ALL_BUCKETS)


def test_webhook_outage_retries_until_delivered_once_without_resending_email(
    redis_client: redis.Redis, redis_url: str, receiver: Receiver,
    mailbox: tuple[Mailbox, str],
) -> None:
    box, smtp_url = mailbox
    receiver.status = 503
    bodies = [note(f"acct{i}", i) for i in range(6)]
    ids = sorted(b["id"] for b in bodies)
    for b in bodies:
        xadd(redis_client, b)

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        d = deliverer(connect(), [WebhookSink(receiver.url, SECRET),
                                  EmailSink(smtp_url, "x@v.test")], "replica-a")
        await d.start()
        try:
            # Down: every notification fails at the webhook, more than once; emails go out.
            await async_until(lambda: receiver.count() >= 3 * len(bodies), "repeated retries")
            await async_until(lambda: sorted(box.ids()) == ids, "emails")
            assert d.in_flight == len(bodies)
            assert pending(redis_client) == len(bodies)  # nothing acked, nothing lost
            receiver.status = 200
            await async_until(lambda: sorted(receiver.delivered()) == ids, "recovery")
            await async_until(lambda: d.in_flight == 0, "acks")
        finally:
            await d.stop()
        assert d.sent["webhook"] == len(bodies)
        assert d.failed["webhook"] >= 2 * len(bodies)
        assert d.sent["email"] == len(bodies)

    run_with(redis_url, scenario)
    assert sorted(receiver.delivered()) == ids  # each exactly once
    assert sorted(box.ids()) == ids  # emails never resent during the retries
    assert pending(redis_client) == 0


def test_client_error_is_dead_lettered_and_429_is_retried(
    redis_client: redis.Redis, redis_url: str, receiver: Receiver,
) -> None:
    receiver.script = [429, 400]
    bad = note("acme", 1)
    good = note("beta", 1)
    xadd(redis_client, bad)
    redis_client.xadd(keys.outbox(3), {"account": "x", "version": 1, "body": "not json"})

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        d = deliverer(connect(), [WebhookSink(receiver.url, SECRET)], "replica-a")
        await d.start()
        try:
            await async_until(lambda: redis_client.xlen(keys.NOTIFY_DEAD_LETTER) == 2,
                              "two dead letters")
            xadd(redis_client, good)  # the queue is not blocked
            await async_until(lambda: receiver.delivered() == [good["id"]], "the next one")
            await async_until(lambda: d.in_flight == 0, "acks")
        finally:
            await d.stop()
        assert d.dead["webhook"] == 1 and d.dead["-"] == 1

    run_with(redis_url, scenario)
    statuses = [s for s, _, _ in receiver.requests]
    assert statuses == [429, 400, 200]
    letters = {f[b"sink"]: f for _, f in redis_client.xrange(keys.NOTIFY_DEAD_LETTER)}
    assert letters[b"webhook"][b"notification_id"] == b"acme:1:transition"
    assert b"400" in letters[b"webhook"][b"reason"]
    assert json.loads(letters[b"webhook"][b"body"]) == bad
    assert letters[b"-"][b"body"] == b"not json"
    assert pending(redis_client) == 0


def test_entries_of_a_crashed_replica_are_taken_over(
    redis_client: redis.Redis, redis_url: str, receiver: Receiver,
) -> None:
    receiver.status = 503
    bodies = [note(f"acct{i}", i) for i in range(5)]
    ids = sorted(b["id"] for b in bodies)
    for b in bodies:
        xadd(redis_client, b)

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        sink = WebhookSink(receiver.url, SECRET)
        a = deliverer(connect(), [sink], "replica-a", claim_idle=3600)
        await a.start()
        await async_until(lambda: a.failed["webhook"] >= len(bodies), "replica a's attempts")
        await a.stop()  # "crash": nothing acked, everything pending at replica-a
        assert pending(redis_client) == len(bodies)
        receiver.status = 200
        b = deliverer(connect(), [sink], "replica-b", claim_idle=0.2)
        await b.start()
        try:
            await async_until(lambda: sorted(receiver.delivered()) == ids, "take-over")
            await async_until(lambda: b.in_flight == 0, "acks")
        finally:
            await b.stop()
        assert b.sent["webhook"] == len(bodies)

    run_with(redis_url, scenario)
    assert sorted(receiver.delivered()) == ids
    assert pending(redis_client) == 0


def test_email_texts_and_smtp_urls() -> None:
    base = note("acme", 1)
    assert compose(base)[0] == "Payment reminder: 120.00 USD overdue"
    assert compose({**base, "state": "SUSPENDED"})[0] == "Account suspended: 120.00 USD overdue"
    assert compose({**base, "state": "ACTIVE"})[0] == "Access restored: account acme"
    assert compose({**base, "currency": "JPY", "amount_due_minor": 500})[0] == (
        "Payment reminder: 500 JPY overdue")
    t = SmtpTarget.parse("smtp://u%40x:p%3Aw@mail.test:2525?starttls=1")
    assert (t.host, t.port, t.username, t.password, t.starttls, t.implicit_tls) == (
        "mail.test", 2525, "u@x", "p:w", True, False)
    t = SmtpTarget.parse("smtps://mail.test")
    assert (t.port, t.implicit_tls, t.starttls) == (465, True, False)
    for bad in ("http://mail.test", "smtp://", "mail.test:25"):
        with pytest.raises(InvalidArgument) as e:
            SmtpTarget.parse(bad)
        assert e.value.field == "SESSIONGATE_SMTP_URL"
    with pytest.raises(InvalidArgument):
        WebhookSink("ftp://x.test/", SECRET)


def test_delivery_on_a_redis_cluster(tmp_path: pathlib.Path, receiver: Receiver) -> None:
    """The outboxes live on different nodes: per-stream reads, acks and take-over still work."""
    cluster = LocalCluster(tmp_path).start(timeout=60)
    try:
        async def main() -> None:
            r = RedisCluster.from_url(cluster.url)
            t = transport(cluster.url, cluster=True, block=1.0)
            try:
                bodies = [note(f"acct{i}", i) for i in range(12)]  # spread over the nodes
                for b in bodies:
                    await r.xadd(keys.outbox_of(b["account_id"]),
                                 {"account": b["account_id"], "version": 1,
                                  "body": json.dumps(b)})
                receiver.script = [503] * 6
                d = deliverer(t, [WebhookSink(receiver.url, SECRET)], "replica-a")
                await d.start()
                try:
                    ids = sorted(b["id"] for b in bodies)
                    await async_until(lambda: sorted(receiver.delivered()) == ids, "delivery")
                    await async_until(lambda: d.in_flight == 0, "acks")
                finally:
                    await d.stop()
                assert d.sent["webhook"] == len(bodies) and d.failed["webhook"] == 6
                for b in bodies:
                    assert await r.xlen(keys.outbox_of(b["account_id"])) == 0
            finally:
                await r.aclose()
                await t.aclose()

        asyncio.run(main())
    finally:
        cluster.stop()


def test_dunning_transitions_reach_the_webhook_and_the_admins(
    redis_client: redis.Redis, redis_url: str, receiver: Receiver,
    mailbox: tuple[Mailbox, str],
) -> None:
    """The whole path: a backdated invoice (GRACE), then the payment (ACTIVE again)."""
    box, smtp_url = mailbox
    srv = start(redis_url, webhook_url=receiver.url, webhook_secret=SECRET, smtp_url=smtp_url,
                notify_retry_base=0.02, notify_retry_max=0.2)
    try:
        upsert(srv, account_id="acme", users=["alice"], admin_emails=["billing@acme.test"])
        invoice(srv, due=T0 - 20 * DAY)
        wait_until(lambda: "GRACE" in states(receiver), "the final notice")
        pay(srv, "pay-1", 12000)
        wait_until(lambda: "ACTIVE" in states(receiver), "the reinstatement")
        wait_until(lambda: len(box.ids()) == len(receiver.delivered()), "the emails")
        wait_until(lambda: pending(redis_client) == 0, "acks")
    finally:
        srv.stop()
    assert len(receiver.delivered()) == len(set(receiver.delivered()))
    for _, headers, raw in receiver.requests:
        assert verify(SECRET, raw, headers["X-Sessiongate-Signature"])
    subjects = {str(m["Subject"]) for _, m in box.messages}
    assert "Final notice: 120.00 USD overdue, access ends 2026-01-12 00:00 UTC" in subjects
    assert "Access restored: account acme" in subjects
    assert {r for rcpts, _ in box.messages for r in rcpts} == {"billing@acme.test"}


def states(receiver: Receiver) -> list[str]:
    with receiver.lock:
        return [json.loads(raw)["state"] for s, _, raw in receiver.requests if s == 200]


def test_consumers_of_departed_replicas_are_forgotten_unless_they_hold_entries(
    redis_client: redis.Redis, redis_url: str, receiver: Receiver,
) -> None:
    stream = keys.outbox(5)
    redis_client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    redis_client.xreadgroup(GROUP, "ghost", {stream: ">"})  # a consumer with nothing pending
    redis_client.xadd(stream, {"account": "x", "version": 1, "body": json.dumps(note("x", 1))})
    redis_client.xreadgroup(GROUP, "holder", {stream: ">"})  # one holding an entry

    def names() -> set[bytes]:
        return {c["name"] for c in redis_client.xinfo_consumers(stream, GROUP)}

    async def scenario(r: AsyncRedis, connect: Connect) -> None:
        d = deliverer(connect(), [WebhookSink(receiver.url, SECRET)], "replica-a",
                      forget_after=0.05, claim_idle=3600)
        await d.start()
        try:
            await async_until(lambda: b"ghost" not in names(), "the ghost forgotten")
        finally:
            await d.stop()

    run_with(redis_url, scenario)
    assert b"holder" in names()  # its entry stays claimable
    assert pending(redis_client) == 1


@pytest.mark.parametrize("mode", ["starttls", "smtps"])
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_email_over_tls_with_login(mode: str, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: pathlib.Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))  # the client's default trust store
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> AuthResult:
        logins.append((data.login, data.password))
        return AuthResult(success=(data.login, data.password) == (b"bot", b"p@ss:1"))

    box = Mailbox()
    tls: dict[str, Any] = ({"tls_context": server_ctx, "require_starttls": True}
                           if mode == "starttls" else
                           # aiosmtpd does not see implicit TLS as TLS for AUTH's sake
                           {"ssl_context": server_ctx, "auth_require_tls": False})
    controller, port = smtp_server(box, authenticator=authenticator, auth_required=True, **tls)
    try:
        url = (f"smtp://bot:p%40ss%3A1@127.0.0.1:{port}?starttls=1" if mode == "starttls"
               else f"smtps://bot:p%40ss%3A1@127.0.0.1:{port}")
        body = note("acme", 1, state="SUSPENDED")
        n = Notification.from_fields({b"account": b"acme", b"version": b"1",
                                      b"body": json.dumps(body).encode()})
        asyncio.run(EmailSink(url, "dunning@vendor.test").deliver(n))
    finally:
        controller.stop()
    assert logins == [(b"bot", b"p@ss:1")]
    [(rcpts, msg)] = box.messages
    assert sorted(rcpts) == ["billing@acme.test", "cfo@acme.test"]
    assert msg["Subject"] == "Account suspended: 120.00 USD overdue"
