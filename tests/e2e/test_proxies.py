"""Real nginx and Caddy in front of a tiny upstream app, with sessiongate's /authz as their
authorizer: what a client sees through each proxy. The proxies run deploy/'s own
configurations, with ports and the token filled in.

nginx and Caddy come from Debian (tests/system_packages.py installs them when missing).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.domain.commits import Change
from sessiongate.domain.model import Account, AccountState
from sessiongate.store.embedded import free_port
from tests.support import ServerThread, make_settings
from tests.system_packages import ensure

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET = "proxy-test-secret-of-32-bytes-at-least"
APP_TOKEN = "app-token"
ADMIN = [("authorization", "Bearer admin-token")]
SUSPENDS_AT = datetime(2026, 2, 1, tzinfo=UTC)


# ---------------------------------------------------------------- the pieces


class Echo(BaseHTTPRequestHandler):
    """The upstream app: answers every method with the request it received, as JSON."""

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"proxy not listening on {port}: {log.read_text()}") from None
            time.sleep(0.05)


def nginx_conf(tmp: Path, port: int, sg: str, upstream: int) -> Path:
    site = (ROOT / "deploy/nginx/sessiongate.conf").read_text()
    site = (site.replace("listen 80;", f"listen 127.0.0.1:{port};")
            .replace("127.0.0.1:9465", sg).replace("127.0.0.1:8080", f"127.0.0.1:{upstream}")
            .replace("APP_TOKEN", APP_TOKEN))
    for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp / d).mkdir()
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{site}
}}
""")
    return conf


def caddy_conf(tmp: Path, port: int, sg: str, upstream: int) -> Path:
    site = (ROOT / "deploy/caddy/Caddyfile").read_text()
    site = (site.replace(":80 {", f"http://127.0.0.1:{port} {{")
            .replace("127.0.0.1:9465", sg).replace("127.0.0.1:8080", f"127.0.0.1:{upstream}")
            .replace("APP_TOKEN", APP_TOKEN))
    conf = tmp / "Caddyfile"
    conf.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
    return conf


@pytest.fixture(scope="module")
def sidecar(redis_url: str) -> Iterator[ServerThread]:
    redis.Redis.from_url(redis_url).flushall()
    srv = ServerThread(make_settings(
        redis_url, http_addr="127.0.0.1:0", app_tokens=APP_TOKEN, admin_tokens="admin-token",
        billing_tokens="billing-token", jwt_secret=SECRET, authz_open_paths="/billing",
        envoy_payment_url="https://pay.example/")).start()
    try:
        setup_accounts(srv)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def run_proxy(argv: list[str], port: int, log: Path, env: dict[str, str] | None = None
              ) -> Iterator[int]:
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_listening(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module", params=["nginx", "caddy"])
def proxy(request: pytest.FixtureRequest, sidecar: ServerThread, upstream: int,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    tmp = tmp_path_factory.mktemp(request.param)
    port = free_port()
    sg = f"127.0.0.1:{sidecar.app.http_port}"
    if request.param == "nginx":
        binary = ensure("nginx", "nginx")
        conf = nginx_conf(tmp, port, sg, upstream)
        yield from run_proxy([binary, "-p", str(tmp), "-c", str(conf), "-e",
                              str(tmp / "error.log")], port, tmp / "out.log")
    else:
        binary = ensure("caddy", "caddy")
        conf = caddy_conf(tmp, port, sg, upstream)
        env = {**os.environ, "HOME": str(tmp), "XDG_DATA_HOME": str(tmp / "data"),
               "XDG_CONFIG_HOME": str(tmp / "config")}
        yield from run_proxy([binary, "run", "--config", str(conf), "--adapter", "caddyfile"],
                             port, tmp / "out.log", env)


# ---------------------------------------------------------------- accounts


def put_account(srv: ServerThread, account: Account) -> None:
    rt = srv.app.rt
    assert rt is not None

    def mutate(current: Account | None, ledger: str | None) -> Change:
        return Change(replace(account, state_since=srv.clock.now()))

    srv.call(rt.accounts.update(account.account_id, mutate, srv.clock.now))


def setup_accounts(srv: ServerThread) -> None:
    srv.accounts.UpsertPolicy(apb.DunningPolicy(policy_id="ro", stages=[apb.DunningStage(
        state=cpb.ACCOUNT_STATE_SUSPENDED, access=cpb.ACCESS_LEVEL_READ_ONLY)]), metadata=ADMIN)
    srv.accounts.UpsertPlan(apb.Plan(plan_id="pro", features=[
        apb.Feature(name="invoices", available_while_restricted=True),
        apb.Feature(name="reports")]), metadata=ADMIN)
    alice = frozenset({"alice"})
    put_account(srv, Account("good", users=alice, plan_id="pro"))
    put_account(srv, Account("late", users=alice, derived_state=AccountState.GRACE,
                             balance_minor=1200, suspends_at=SUSPENDS_AT))
    put_account(srv, Account("owing", users=alice, plan_id="pro", balance_minor=4999,
                             currency="EUR", derived_state=AccountState.SUSPENDED))
    put_account(srv, Account("ro", users=alice, policy_id="ro", balance_minor=700,
                             derived_state=AccountState.SUSPENDED))


# ---------------------------------------------------------------- the client's view


def token(account: str, user: str, secret: str = SECRET) -> str:
    return jwt.encode({"account_id": account, "sub": user, "exp": int(time.time()) + 600},
                      secret, algorithm="HS256")


def fetch(port: int, path: str, method: str = "GET", bearer: str | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    hdrs = dict(headers or {})
    if bearer is not None:
        hdrs["authorization"] = f"Bearer {bearer}"
    conn.request(method, path, body=b"{}" if method in ("POST", "PUT") else None, headers=hdrs)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    got = {k.lower(): v for k, v in resp.getheaders()}
    body = json.loads(raw) if raw and "json" in got.get("content-type", "") else raw
    return resp.status, got, body


def upstream_saw(port: int, path: str, method: str = "GET", **kw: Any) -> dict[str, str]:
    status, _, body = fetch(port, path, method, **kw)
    assert status == 200, body
    assert body["method"] == method and body["path"] == path
    return {k: v for k, v in body["headers"].items() if k.startswith("x-sessiongate-")}


def payment_required(port: int, path: str, method: str, bearer: str) -> dict[str, Any]:
    status, headers, body = fetch(port, path, method, bearer=bearer)
    assert status == 402, (status, body)
    assert headers["content-type"].startswith("application/json")
    assert body["allowed"] is False
    return body  # type: ignore[no-any-return]


def test_allowed_requests_reach_the_upstream_with_the_state_headers(proxy: int) -> None:
    seen = upstream_saw(proxy, "/app/page?x=1", bearer=token("good", "alice"),
                        headers={"x-sessiongate-suspends-at": "forged"})
    assert seen.get("x-sessiongate-suspends-at", "") == ""  # a client's copy never passes
    assert {k: v for k, v in seen.items() if v} == {
        "x-sessiongate-state": "ACTIVE", "x-sessiongate-reason": "OK",
        "x-sessiongate-access": "full"}
    late = upstream_saw(proxy, "/app", "POST", bearer=token("late", "alice"))
    assert late["x-sessiongate-reason"] == "PAYMENT_OVERDUE"
    assert late["x-sessiongate-suspends-at"] == "2026-02-01T00:00:00Z"


def test_a_suspended_account_gets_402_with_what_is_owed(proxy: int) -> None:
    body = payment_required(proxy, "/app", "GET", token("owing", "alice"))
    assert (body["reason"], body["amount_due"], body["payment_url"]) == (
        "ACCOUNT_SUSPENDED", "49.99 EUR", "https://pay.example/")
    assert "49.99 EUR" in body["how_to_pay"]


def test_a_read_only_stage_passes_reads_and_refuses_writes(proxy: int) -> None:
    bearer = token("ro", "alice")
    for method in ("GET", "HEAD"):
        status, _, _ = fetch(proxy, "/app/doc", method, bearer=bearer)
        assert status == 200
    assert upstream_saw(proxy, "/app/doc", bearer=bearer)["x-sessiongate-access"] == (
        "read-only")
    for method in ("POST", "DELETE"):
        body = payment_required(proxy, "/app/doc", method, bearer)
        assert body["message"].startswith(f"{method} refused")
        assert body["amount_due"] == "7.00 USD"


def test_open_paths_and_features_stay_available_while_suspended(proxy: int) -> None:
    bearer = token("owing", "alice")
    seen = upstream_saw(proxy, "/billing/pay", "POST", bearer=bearer)
    assert (seen["x-sessiongate-access"], seen["x-sessiongate-reason"]) == (
        "full", "ACCOUNT_SUSPENDED")
    assert upstream_saw(proxy, "/features/invoices/2026-01",
                        bearer=bearer)["x-sessiongate-access"] == "full"
    payment_required(proxy, "/features/reports", "GET", bearer)
    payment_required(proxy, "/billing/../app", "GET", bearer)


def test_who_may_not_pass(proxy: int) -> None:
    status, _, body = fetch(proxy, "/app", bearer=token("good", "mallory"))
    assert (status, body["reason"]) == (403, "USER_NOT_AUTHORIZED")
    status, _, body = fetch(proxy, "/billing", bearer=token("nobody", "alice"))
    assert (status, body["reason"]) == (403, "UNKNOWN_ACCOUNT")
    status, _, body = fetch(proxy, "/app")
    assert (status, body["error"]) == (401, "missing_identity")
    status, _, body = fetch(proxy, "/app", bearer=token("good", "alice", secret="x" * 32))
    assert (status, body["error"]) == (401, "invalid_token")


def test_no_session_is_opened(proxy: int, sidecar: ServerThread, redis_url: str) -> None:
    """A per-request check writes nothing: no session, no seat, no login record."""
    client = redis.Redis.from_url(redis_url)
    assert sidecar.app.batch is not None
    sidecar.call(sidecar.app.batch.flush())
    before = set(client.keys("*"))
    for _ in range(3):
        upstream_saw(proxy, "/app", bearer=token("good", "alice"))
    sidecar.call(sidecar.app.batch.flush())
    assert set(client.keys("*")) == before


def test_the_proxies_are_real() -> None:
    assert shutil.which("nginx") and shutil.which("caddy")
