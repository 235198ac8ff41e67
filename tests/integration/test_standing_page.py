"""The standing page: its link in the dunning email and webhook, opened in Debian's chromium
(headless, JavaScript off, driven by Playwright), forged and expired links refused."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import redis
from aiohttp import web
from playwright.sync_api import sync_playwright

from sessiongate.billing.notify.links import LinkSigner
from sessiongate.domain.clock import ManualClock
from sessiongate.http.standing import add_standing_routes
from sessiongate.rendering import Renderer
from tests.integration.dunning_support import T0, invoice, upsert
from tests.integration.test_reports_delivery import (  # noqa: F401 (fixtures)
    Mailbox,
    Receiver,
    mailbox,
    receiver,
)
from tests.support import ServerThread, make_settings
from tests.system_packages import ensure

SECRET = "link-secret"
PAY = "https://billing.example.com/pay?account={account_id}"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as e:
        body = e.read().decode()
        e.close()
        return int(e.code), body


def test_the_standing_page_from_a_dunning_email_shows_the_amount_and_the_pay_link(
    redis_client: redis.Redis, redis_url: str, receiver: Receiver,  # noqa: F811
    mailbox: tuple[Mailbox, str],  # noqa: F811
) -> None:
    box, smtp_url = mailbox
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    clock = ManualClock(T0)
    settings = make_settings(redis_url, smtp_url=smtp_url, webhook_url=receiver.url,
                             link_secret=SECRET, public_url=base, pay_url_template=PAY,
                             scheduler=False, notify_retry_base=0.05)
    srv = ServerThread(settings, clock=clock).start()
    rt = srv.app.rt
    assert rt is not None
    links = LinkSigner(SECRET, base, timedelta(days=30), clock.now)
    app = web.Application()
    add_standing_routes(app, accounts=rt.accounts, links=links, renderer=Renderer(),
                        clock=clock, pay_url_template=PAY)
    runner = web.AppRunner(app)

    async def serve() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()

    srv.call(serve())
    try:
        upsert(srv, account_id="acme & co", admin_emails=["billing@acme.test"])
        invoice(srv, account="acme & co", amount=12000, due=T0 - timedelta(days=20))
        deadline = time.monotonic() + 30
        while not (box.messages and receiver.bodies):  # the transition's email and webhook
            assert time.monotonic() < deadline
            time.sleep(0.02)
        hook = receiver.bodies[0]
        url = hook["standing_url"]
        assert url.startswith(f"{base}/standing/")
        assert links.account_of(url.rsplit("/", 1)[1]) == "acme & co"
        _, msg = box.messages[0]
        assert url in msg.get_body(("plain",)).get_content()
        assert f'href="{url}"' in msg.get_body(("html",)).get_content()

        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=ensure("chromium", "chromium"),
                                        args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(java_script_enabled=False).new_page()
                resp = page.goto(url)
                assert resp is not None and resp.status == 200
                assert page.get_by_role("heading", name="Account acme & co").is_visible()
                assert page.get_by_role("heading", name="Standing").is_visible()
                assert page.locator("#amount-due").inner_text() == "120.00 USD"
                pay = page.get_by_role("link", name="Pay now")
                assert pay.get_attribute("href") == (
                    "https://billing.example.com/pay?account=acme%20%26%20co")
                assert page.locator("script").count() == 0  # rendered on the server
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / "standing-page.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
                forged = browser.new_page()
                resp = forged.goto(url[:-2] + ("AA" if not url.endswith("AA") else "BB"))
                assert resp is not None and resp.status == 404
            finally:
                browser.close()

        token = url.rsplit("/", 1)[1]
        ok_status, _ = _get(url)
        assert ok_status == 200
        refused = [
            _get(f"{base}/standing/{token[:-1]}{'A' if token[-1] != 'A' else 'B'}"),  # forged
            _get(f"{base}/standing/{LinkSigner('other', base, timedelta(days=30), clock.now).token('acme & co')}"),  # noqa: E501
            _get(f"{base}/standing/{links.token('nobody')}"),  # valid, no such account
            _get(f"{base}/standing/not-a-token"),
        ]
        clock.advance(timedelta(days=31))
        refused.append(_get(url))  # expired
        assert refused == [(404, "Not Found")] * 5  # the same answer: nothing disclosed
    finally:
        srv.call(runner.cleanup())
        srv.stop()
