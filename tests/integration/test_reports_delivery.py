"""The monthly report and the digest delivered for real: a real redis-server, the app's own
outbox deliverer, a real SMTP server (aiosmtpd); the fake clock drives the 1st of a month."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
import redis
from aiosmtpd.controller import Controller

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.domain.clock import ManualClock
from sessiongate.store import keys
from tests.integration.dunning_support import invoice
from tests.support import ServerThread, make_settings

OCT2 = datetime(2026, 10, 2, tzinfo=UTC)  # accounts created after every September report was due
WAIT = 30.0


class Mailbox:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        with self.lock:
            self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def ids(self) -> list[str]:
        with self.lock:
            return [str(m["X-Sessiongate-Notification-Id"]) for _, m in self.messages]

    def wait_for(self, count: int) -> list[tuple[list[str], EmailMessage]]:
        deadline = time.monotonic() + WAIT
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} emails"
            time.sleep(0.02)
        with self.lock:
            return list(self.messages)


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        box = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                box.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, str]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, f"smtp://127.0.0.1:{port}"
    finally:
        controller.stop()


def _start(redis_url: str, smtp_url: str, clock: ManualClock, **kw: Any) -> ServerThread:
    settings = make_settings(redis_url, smtp_url=smtp_url, reports=True,
                             smtp_from="reports@vendor.test", notify_retry_base=0.05, **kw)
    return ServerThread(settings, clock=clock).start()


def _upsert(srv: ServerThread, account_id: str, zone: str, *emails: str, **kw: Any
            ) -> apb.Account:
    return srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id=account_id, time_zone=zone, report_emails=list(emails), **kw)))


def _tick(srv: ServerThread) -> int:
    assert srv.app.reports is not None
    return int(srv.call(srv.app.reports.monthly.tick()))


def _login(srv: ServerThread, account: str, user: str) -> None:
    r = srv.sessions.CheckSession(spb.CheckSessionRequest(account_id=account, user_id=user))
    assert r.session_id


def _wait_logins(srv: ServerThread, account: str, period: str, n: int) -> None:
    deadline = time.monotonic() + 10
    while srv.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
            account_id=account, period=period)).logins != n:  # through the batch writer
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_tokyo_gets_its_report_before_los_angeles_each_once_with_chart_and_csv(
    redis_client: redis.Redis, redis_url: str, mailbox: tuple[Mailbox, str]
) -> None:
    box, smtp_url = mailbox
    clock = ManualClock(OCT2)
    srv = _start(redis_url, smtp_url, clock)
    try:
        _upsert(srv, "tokyo", "Asia/Tokyo", "champion@tokyo.test", users=["ann", "bo"],
                seat_limit=4, admin_emails=["billing@tokyo.test"])
        _upsert(srv, "la", "America/Los_Angeles", "champion@la.test")
        _upsert(srv, "quiet", "UTC")  # no report addresses, no webhook: no report
        clock.set(datetime(2026, 10, 5, 9, tzinfo=UTC))
        _login(srv, "tokyo", "ann")
        _login(srv, "tokyo", "bo")
        _wait_logins(srv, "tokyo", "2026-10", 2)

        clock.set(datetime(2026, 10, 31, 20, 59, tzinfo=UTC))  # 05:59 on the 1st in Tokyo
        assert _tick(srv) == 0
        clock.set(datetime(2026, 10, 31, 21, 0, tzinfo=UTC))  # 06:00 in Tokyo
        assert _tick(srv) == 1
        assert _tick(srv) == 0  # never doubled
        first = box.wait_for(1)
        clock.set(datetime(2026, 11, 1, 13, 59, tzinfo=UTC))  # 05:59 in Los Angeles (PST)
        assert _tick(srv) == 0
        clock.set(datetime(2026, 11, 1, 14, 0, tzinfo=UTC))
        assert _tick(srv) == 1
        assert _tick(srv) == 0
        both = box.wait_for(2)
        assert first[0][0] == ["champion@tokyo.test"]
        assert box.ids() == ["tokyo:monthly_report:2026-10", "la:monthly_report:2026-10"]
        assert redis_client.exists(keys.reports_complete("2026-10")) == 0  # UTC-12 not yet
        clock.set(datetime(2026, 11, 1, 18, 0, tzinfo=UTC))
        assert _tick(srv) == 0
        assert redis_client.exists(keys.reports_complete("2026-10")) == 1
    finally:
        srv.stop()

    _, msg = both[0]
    assert msg["Subject"] == "Your 2026-10 report: tokyo"
    assert msg.get_content_type() == "multipart/mixed"
    text = msg.get_body(("plain",)).get_content()
    assert "Logins:             2 (2026-09: 0)" in text
    assert "2 of 2 named (100%)" in text
    html_part = msg.get_body(("related", "html"))
    assert html_part is not None and html_part.get_content_type() == "multipart/related"
    html = msg.get_body(("html",)).get_content()
    image = next(p for p in msg.walk() if p.get_content_type() == "image/png")
    cid = str(image["Content-ID"]).strip("<>")
    assert f'src="cid:{cid}"' in html
    assert image.get_content()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<style" not in html and "Paid up" in html
    csv_part = next(p for p in msg.iter_attachments() if p.get_content_type() == "text/csv")
    assert csv_part.get_filename() == "tokyo-2026-10.csv"
    rows = csv_part.get_content().splitlines()
    assert rows[0] == "day,logins,active_users,peak_seats_in_use"
    assert "2026-10-05,2,2,2" in rows

    _, empty = both[1]
    assert "2026-10: no activity recorded." in empty.get_body(("plain",)).get_content()


def test_a_run_missed_while_no_replica_was_up_is_made_up_once_late(
    redis_client: redis.Redis, redis_url: str, mailbox: tuple[Mailbox, str]
) -> None:
    box, smtp_url = mailbox
    clock = ManualClock(OCT2)
    srv = _start(redis_url, smtp_url, clock)
    try:
        _upsert(srv, "paris", "Europe/Paris", "champion@paris.test")
        clock.set(datetime(2026, 10, 31, 12, tzinfo=UTC))
        assert _tick(srv) == 0  # due 05:00 UTC on 1 Nov
    finally:
        srv.stop()
    clock.set(datetime(2026, 11, 3, 10, tzinfo=UTC))  # nobody was up on the 1st
    srv = _start(redis_url, smtp_url, clock)  # its start-up run makes it up
    try:
        (rcpts, msg), = box.wait_for(1)
        assert rcpts == ["champion@paris.test"]
        assert msg["X-Sessiongate-Notification-Id"] == "paris:monthly_report:2026-10"
        assert _tick(srv) == 0
        assert redis_client.exists(keys.report_sent("paris", "2026-10")) == 1
    finally:
        srv.stop()
    assert box.ids() == ["paris:monthly_report:2026-10"]


def test_two_replicas_send_each_report_and_each_digest_once(
    redis_client: redis.Redis, redis_url: str, mailbox: tuple[Mailbox, str]
) -> None:
    box, smtp_url = mailbox
    clock = ManualClock(OCT2)
    extra = {"digest_emails": "ops@vendor.test, cfo@vendor.test", "scheduler": True}
    a = _start(redis_url, smtp_url, clock, **extra)
    b = _start(redis_url, smtp_url, clock, **extra)
    try:
        _upsert(a, "tokyo", "Asia/Tokyo", "champion@tokyo.test")
        _upsert(b, "la", "America/Los_Angeles", "champion@la.test")
        invoice(a, account="tokyo", amount=12000, due=datetime(2026, 10, 15, tzinfo=UTC))
        clock.set(datetime(2026, 11, 2, 8, tzinfo=UTC))  # both reports and a digest due
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(srv.call, job()) for _ in range(3) for srv in (a, b)
                       for job in (srv.app.reports.monthly.tick,  # type: ignore[union-attr]
                                   srv.app.reports.digest.tick)]  # type: ignore[union-attr]
            results = [f.result() for f in futures]
        assert sum(int(r) for r in results) == 3  # two reports, one digest
        expected = {"tokyo:monthly_report:2026-10", "la:monthly_report:2026-10",
                    "digest:2026-11-02", "digest:2026-10-01"}  # the last: a's start-up run
        deadline = time.monotonic() + WAIT
        while set(box.ids()) != expected:
            assert time.monotonic() < deadline, box.ids()
            time.sleep(0.02)
        deadline = time.monotonic() + WAIT
        while any(redis_client.xlen(keys.outbox(x)) for x in keys.ALL_BUCKETS):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        a.stop()
        b.stop()
    assert sorted(box.ids()) == sorted(expected)  # each once
    digest = next(m for r, m in box.messages if m["X-Sessiongate-Notification-Id"]
                  == "digest:2026-11-02")
    assert digest["Subject"] == "sessiongate daily digest: 2026-11-02"
    assert sorted(digest["To"].split(", ")) == ["cfo@vendor.test", "ops@vendor.test"]
    text = digest.get_body(("plain",)).get_content()
    assert "120.00 USD" in text  # total overdue per currency
    assert "dead-lettered payment events" in text


def test_send_report_resends_now_and_list_accounts_filters_and_pages(
    redis_client: redis.Redis, redis_url: str, mailbox: tuple[Mailbox, str]
) -> None:
    box, smtp_url = mailbox
    clock = ManualClock(OCT2)
    srv = _start(redis_url, smtp_url, clock)
    try:
        _upsert(srv, "partner", "UTC", "champion@partner.test")
        for i in range(5):
            _upsert(srv, f"child-{i}", "UTC", parent_id="partner", seat_limit=i + 1)
        clock.set(datetime(2026, 11, 20, tzinfo=UTC))
        resp = srv.accounts.SendReport(apb.SendReportRequest(
            account_id="partner", period="2026-10", children=True))
        assert resp.period == "2026-10" and resp.notification_id.startswith(
            "partner:monthly_report:2026-10:sent-")
        again = srv.accounts.SendReport(apb.SendReportRequest(account_id="partner"))
        assert again.period == "2026-10" and again.notification_id != resp.notification_id
        msgs = box.wait_for(2)
        text = msgs[0][1].get_body(("plain",)).get_content()
        assert "Accounts you manage:" in text and "child-4: seats 0/5" in text

        for bad, code, field in (
            (apb.SendReportRequest(account_id="partner", period="2026-13"),
             grpc.StatusCode.INVALID_ARGUMENT, "period"),
            (apb.SendReportRequest(account_id="partner", period="2027-01"),
             grpc.StatusCode.INVALID_ARGUMENT, "period"),
            (apb.SendReportRequest(account_id="nobody", period="2026-10"),
             grpc.StatusCode.NOT_FOUND, "account_id"),
        ):
            with pytest.raises(grpc.RpcError) as err:
                srv.accounts.SendReport(bad)
            assert err.value.code() == code and err.value.details().startswith(field)

        pages, token = [], ""
        while True:
            page = srv.accounts.ListAccounts(apb.ListAccountsRequest(
                parent_id="partner", page_size=2, page_token=token))
            pages.append([a.account_id for a in page.accounts])
            token = page.next_page_token
            if not token:
                break
        assert pages == [["child-0", "child-1"], ["child-2", "child-3"], ["child-4"]]
        active = srv.accounts.ListAccounts(apb.ListAccountsRequest(state=1))
        assert len(active.accounts) == 6 and not active.next_page_token
        grace = srv.accounts.ListAccounts(apb.ListAccountsRequest(state=3))
        assert list(grace.accounts) == []
        for bad, field in ((apb.ListAccountsRequest(page_size=5000), "page_size"),
                           (apb.ListAccountsRequest(state=99), "state")):
            with pytest.raises(grpc.RpcError) as err:
                srv.accounts.ListAccounts(bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert err.value.details().startswith(field)
        far = apb.ListAccountsRequest()
        far.suspends_before.seconds = 2**62  # the fuzz suite's find: was INTERNAL
        with pytest.raises(grpc.RpcError) as err:
            srv.accounts.ListAccounts(far)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("suspends_before")
        soon = apb.ListAccountsRequest()
        soon.suspends_before.FromDatetime(datetime(2027, 1, 1))
        assert list(srv.accounts.ListAccounts(soon).accounts) == []  # nobody is dunned
    finally:
        srv.stop()


@pytest.mark.parametrize("field,value", [
    ("time_zone", "Mars/Olympus"), ("time_zone", "UTC+2"),
    ("report_emails", ["champion"]), ("report_emails", [f"u{i}@x.test" for i in range(21)]),
])
def test_upsert_validates_time_zone_and_report_emails_and_changes_nothing(
    server: ServerThread, field: str, value: Any
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
            account_id="acme", **{field: value})))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith(f"account.{field}")
    with pytest.raises(grpc.RpcError) as err:
        server.accounts.GetAccount(apb.GetAccountRequest(account_id="acme"))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    got = server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", time_zone="Asia/Tokyo", report_emails=["c@acme.test"])))
    assert (got.time_zone, list(got.report_emails)) == ("Asia/Tokyo", ["c@acme.test"])


def test_with_a_webhook_every_account_gets_its_report_as_json_and_the_cli_sends_now(
    redis_client: redis.Redis, redis_url: str, mailbox: tuple[Mailbox, str],
    receiver: Receiver, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sessiongate.cli import main

    box, smtp_url = mailbox
    clock = ManualClock(OCT2)
    srv = _start(redis_url, smtp_url, clock, webhook_url=receiver.url)
    try:
        _upsert(srv, "hooked", "UTC")  # no report addresses: webhook only
        _upsert(srv, "graced", "UTC", "c@graced.test", state=3)  # an override: GRACE
        clock.set(datetime(2026, 11, 1, 6, tzinfo=UTC))
        assert _tick(srv) == 2
        deadline = time.monotonic() + WAIT
        while len(receiver.bodies) < 2 or len(box.messages) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        hooked = next(b for b in receiver.bodies if b["account_id"] == "hooked")
        assert (hooked["kind"], hooked["id"], hooked["period"]) == (
            "monthly_report", "hooked:monthly_report:2026-10", "2026-10")
        assert hooked["logins"] == {"this": 0, "previous": 0}
        assert box.ids() == ["graced:monthly_report:2026-10"]

        assert main(["accounts", "--state", "grace", "--addr", srv.addr]) == 0
        listed = capsys.readouterr().out.split()
        assert listed[:2] == ["graced", "GRACE"] and "hooked" not in listed
        assert main(["report", "graced", "--month", "2026-10", "--send",
                     "--addr", srv.addr]) == 0
        assert capsys.readouterr().out.startswith("queued graced:monthly_report:2026-10:sent-")
        assert main(["digest", "--addr", srv.addr]) == 0  # a preview: nothing sent
        preview = json.loads(capsys.readouterr().out)
        assert (preview["kind"], preview["id"]) == ("digest", "preview")
        assert set(preview) >= {"changed", "suspending", "overdue", "dead_letters"}
        assert main(["digest", "--send", "--addr", srv.addr]) == 0
        assert capsys.readouterr().out.startswith("sent digest:")
        deadline = time.monotonic() + WAIT
        while not any(b["kind"] == "digest" for b in receiver.bodies):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        while len(box.messages) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The server has no digest addresses: the webhook got the digest, no email went out.
        assert sorted(r[0] for r, _ in box.messages) == ["c@graced.test", "c@graced.test"]
    finally:
        srv.stop()


def test_the_digest_lists_changes_reinstatements_suspensions_and_overdue_totals(
    redis_client: redis.Redis, redis_url: str
) -> None:
    from sessiongate.reporting.digest import Digest
    from tests.integration.dunning_support import T0, pay, start, upsert

    srv = start(redis_url, digest_emails="ops@vendor.test")
    try:
        clock = srv.clock
        clock.set(T0 - timedelta(hours=1))
        upsert(srv, account_id="new")  # created in the last day: no change to report
        for aid in ("late", "payer"):
            upsert(srv, account_id=aid)
        clock.set(T0)
        for aid in ("late", "payer"):
            invoice(srv, event_id=f"{aid}-inv", account=aid, amount=12000,
                    due=T0 - timedelta(days=26))  # suspension due ~5 days from T0
        clock.set(T0 + timedelta(hours=1))
        pay(srv, "payer-paid", 12000, account="payer")
        clock.set(T0 + timedelta(hours=12))
        rt = srv.app.rt
        assert rt is not None
        digest = Digest(rt.transport, rt.scripts, rt.accounts, rt.settings, clock)
        body = srv.call(digest.build(clock.now(), "digest:test", "2026-01-01"))
    finally:
        srv.stop()
    assert body["digest_emails"] == ["ops@vendor.test"]
    assert body["changed"] == {"ACTIVE": ["payer"], "GRACE": ["late"]}
    assert body["reinstated"] == ["payer"]
    assert [(s["account_id"], s["amount_due_minor"]) for s in body["suspending"]] == [
        ("late", 12000)]
    assert body["overdue"] == {"USD": 12000}
    assert body["dead_letters"] == {"payments": 0, "notifications": 0}
