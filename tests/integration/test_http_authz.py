"""/authz over a real socket (aiohttp in the sidecar's loop) against a real redis-server:
the proxy's token, identity from headers or a verified JWT (HS256, JWKS, cookie), the
original method and URI, and the cache header. Through real proxies: tests/e2e/test_proxies.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import rsa

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.domain.errors import InvalidArgument
from sessiongate.store.embedded import EmbeddedRedis, free_port
from tests.integration.dunning_support import invoice
from tests.support import ServerThread, make_settings

ADMIN = [("authorization", "Bearer admin-t")]
TOKENS = dict(app_tokens="app-t", billing_tokens="bill-t", admin_tokens="admin-t")


@contextlib.contextmanager
def serving(redis_url: str, **overrides: Any) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(redis_url, http_addr="127.0.0.1:0", **overrides)).start()
    try:
        yield srv
    finally:
        srv.stop()


def authz(srv: ServerThread, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.app.http_port, timeout=20)
    conn.request("GET", "/authz", headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    conn.close()
    got = {k.lower(): v for k, v in resp.getheaders()}
    return resp.status, got, json.loads(raw) if raw else None


def upsert(srv: ServerThread, md: Any = None, **fields: Any) -> None:
    srv.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(**fields)),
                               metadata=md)


def test_the_proxy_needs_an_app_token_when_tokens_are_configured(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, **TOKENS) as srv:
        upsert(srv, ADMIN, account_id="acme", users=["alice"])
        who = {"x-account-id": "acme", "x-user-id": "alice"}
        status, _, body = authz(srv, who)
        assert (status, body["error"]) == (401, "proxy_unauthenticated")
        status, _, body = authz(srv, {**who, "x-sessiongate-token": "bill-t"})
        assert (status, body["error"]) == (403, "proxy_forbidden")
        status, headers, _ = authz(srv, {**who, "x-sessiongate-token": "app-t"})
        assert status == 200 and headers["x-sessiongate-access"] == "full"


def test_identity_from_headers_method_and_uri_from_either_family(
    redis_client: redis.Redis, redis_url: str
) -> None:
    with serving(redis_url, near_cache_ttl=5.0) as srv:
        srv.accounts.UpsertPolicy(apb.DunningPolicy(policy_id="ro", stages=[apb.DunningStage(
            state=cpb.ACCOUNT_STATE_SUSPENDED, access=cpb.ACCESS_LEVEL_READ_ONLY)]))
        upsert(srv, account_id="ro", users=["alice"], policy_id="ro",
               state=cpb.ACCOUNT_STATE_SUSPENDED)
        who = {"x-account-id": "ro", "x-user-id": "alice"}
        status, headers, body = authz(srv, who)  # no method given: this request's GET
        assert (status, body) == (200, None)
        assert headers["x-sessiongate-access"] == "read-only"
        assert headers["cache-control"] == "private, max-age=5"
        for family in ("forwarded", "original"):
            uri = "x-forwarded-uri" if family == "forwarded" else "x-original-uri"
            status, headers, body = authz(srv, {**who, f"x-{family}-method": "PUT",
                                                uri: "/api/doc"})
            assert (status, body["reason"]) == (402, "ACCOUNT_SUSPENDED")
            assert headers["cache-control"] == "private, max-age=5"
        status, _, body = authz(srv, {"x-user-id": "alice"})
        assert (status, body["error"], body["field"]) == (
            401, "missing_identity", "header x-account-id")
        status, _, body = authz(srv, {"x-account-id": "a" * 129, "x-user-id": "alice"})
        assert (status, body["error"]) == (401, "bad_request")
        # nginx's mode: every denial but 401 as 403, the real one in headers
        status, headers, _ = authz(srv, {**who, "x-original-method": "POST",
                                         "x-sessiongate-deny-as-403": "1"})
        assert (status, headers["x-sessiongate-status"]) == (403, "402")
        assert json.loads(headers["x-sessiongate-body"])["reason"] == "ACCOUNT_SUSPENDED"


def test_the_parent_chain_rules_http_checks(redis_client: redis.Redis, redis_url: str) -> None:
    with serving(redis_url) as srv:
        srv.accounts.UpsertPolicy(apb.DunningPolicy(policy_id="ro", stages=[apb.DunningStage(
            state=cpb.ACCOUNT_STATE_SUSPENDED, access=cpb.ACCESS_LEVEL_READ_ONLY)]))
        upsert(srv, account_id="top", policy_id="ro", state=cpb.ACCOUNT_STATE_SUSPENDED)
        upsert(srv, account_id="mid", parent_id="top")
        upsert(srv, account_id="leaf", parent_id="mid", users=["alice"])
        who = {"x-account-id": "leaf", "x-user-id": "alice"}
        status, headers, _ = authz(srv, {**who, "x-forwarded-method": "GET"})
        assert (status, headers["x-sessiongate-access"]) == (200, "read-only")
        status, _, body = authz(srv, {**who, "x-forwarded-method": "POST"})
        assert (status, body["reason"]) == (402, "ACCOUNT_SUSPENDED")
        assert "'top'" in body["message"]


def rsa_jwks(tmp_path: Path) -> tuple[Any, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return key, path


def test_identity_from_a_jwt_verified_by_a_jwks_file_or_cookie(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    key, path = rsa_jwks(tmp_path)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with serving(redis_url, jwt_jwks_file=str(path), jwt_cookie="session",
                 jwt_audience="app", envoy_account_claim="org.id") as srv:
        upsert(srv, account_id="acme", users=["alice"])
        claims = {"sub": "alice", "org": {"id": "acme"}, "aud": "app",
                  "exp": int(time.time()) + 60}
        good = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        forged_headers = {"x-account-id": "evil", "x-user-id": "mallory"}
        status, headers, _ = authz(srv, {"authorization": f"Bearer {good}", **forged_headers})
        assert (status, headers["x-sessiongate-state"]) == (200, "ACTIVE")
        status, _, _ = authz(srv, {"cookie": f"session={good}"})
        assert status == 200
        for bad in (jwt.encode(claims, other, algorithm="RS256", headers={"kid": "k1"}),
                    jwt.encode({**claims, "aud": "other"}, key, algorithm="RS256",
                               headers={"kid": "k1"}),
                    jwt.encode({**claims, "exp": 1}, key, algorithm="RS256",
                               headers={"kid": "k1"}),
                    jwt.encode(claims, "s" * 32, algorithm="HS256"),  # no secret configured
                    "not.a.jwt"):
            status, _, body = authz(srv, {"authorization": f"Bearer {bad}"})
            assert (status, body["error"]) == (401, "invalid_token"), bad
        status, _, body = authz(srv, forged_headers)  # headers alone are no identity
        assert (status, body["error"], body["field"]) == (401, "missing_identity", "JWT")


@pytest.mark.parametrize(("mode", "status"), [("closed", 503), ("open", 200)])
def test_redis_unreachable_follows_the_failure_mode(tmp_path: Path, mode: str,
                                                     status: int) -> None:
    backend = EmbeddedRedis(tmp_path, persistent=False)
    backend.start()
    try:
        with serving(backend.url, failure_mode=mode, near_cache=False) as srv:
            upsert(srv, account_id="acme", users=["alice"])
            backend.kill()
            got, headers, body = authz(srv, {"x-account-id": "acme", "x-user-id": "alice"})
    finally:
        backend.stop()
    assert got == status
    assert headers["x-sessiongate-reason"] == "BACKEND_UNAVAILABLE"
    if mode == "closed":
        assert body["reason"] == "BACKEND_UNAVAILABLE"


def test_serving_http_off_loopback_needs_tokens(tmp_path: Path) -> None:
    env = {"SESSIONGATE_GRPC_ADDR": f"127.0.0.1:{free_port()}",
           "SESSIONGATE_HTTP_ADDR": f"0.0.0.0:{free_port()}", "SESSIONGATE_METRICS_ADDR": "",
           "SESSIONGATE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "sessiongate.cli", "serve"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "refusing to serve HTTP on 0.0.0.0" in r.stderr


def test_a_bad_open_paths_setting_is_refused(redis_client: redis.Redis, redis_url: str) -> None:
    srv = ServerThread(make_settings(redis_url, authz_open_paths="billing"))
    srv.thread.start()
    try:
        with pytest.raises(InvalidArgument, match="SESSIONGATE_AUTHZ_OPEN_PATHS"):
            srv.call(srv.app.start())
    finally:
        srv.stop()


def test_a_402_links_the_standing_page_that_the_same_server_serves(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """With SESSIONGATE_LINK_SECRET the 402 body carries `standing_url` and the pay URL made
    from SESSIONGATE_PAY_URL_TEMPLATE; the sidecar's own HTTP server serves that page."""
    with serving(redis_url, link_secret="s3cret", public_url="https://sg.example",
                 pay_url_template="https://billing.example/pay?account={account_id}") as srv:
        upsert(srv, account_id="acme co", users=["alice"])
        invoice(srv, account="acme co", amount=12000, due=srv.clock.now() - timedelta(days=40))
        status, _, body = authz(srv, {"x-account-id": "acme co", "x-user-id": "alice"})
        assert status == 402, body
        assert body["payment_url"] == "https://billing.example/pay?account=acme%20co"
        assert body["standing_url"].startswith("https://sg.example/standing/")
        path = body["standing_url"].removeprefix("https://sg.example")
        conn = http.client.HTTPConnection("127.0.0.1", srv.app.http_port, timeout=20)
        conn.request("GET", path)
        page = conn.getresponse()
        html = page.read().decode()
        assert page.status == 200, html
        assert "https://billing.example/pay?account=acme%20co" in html and "120.00" in html
        conn.request("GET", path[:-3] + "xyz")  # a forged token: 404, nothing disclosed
        forged = conn.getresponse()
        assert forged.status == 404 and "acme" not in forged.read().decode()
        conn.close()


def dateless(srv: ServerThread, headers: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    """`authz` without the Date header (the one a remembered answer changes)."""
    status, got, body = authz(srv, headers)
    got.pop("date")
    return status, got, body


def test_remembered_answers_follow_every_change_of_the_account(
    redis_client: redis.Redis, redis_url: str
) -> None:
    """/authz's answers are remembered in the one answer memo (service/answer_memo.py) and
    equal the computed ones; a payment event, an override, a plan change and a parent's
    suspension each change the very next answer."""
    from tests.integration.dunning_support import pay

    with serving(redis_url, near_cache_ttl=600.0) as srv:
        memo = srv.app.answers
        assert memo is not None
        srv.accounts.UpsertPlan(apb.Plan(plan_id="pro", features=[
            apb.Feature(name="invoices", available_while_restricted=True)]))
        srv.accounts.UpsertPlan(apb.Plan(plan_id="basic"))
        upsert(srv, account_id="acme", users=["alice"], plan_id="pro")
        who = {"x-account-id": "acme", "x-user-id": "alice"}
        dateless(srv, who)  # may come from Redis
        first = dateless(srv, who)  # computed from the near-cache snapshot, and remembered
        assert first[0] == 200 and memo.bytes > 0
        for _ in range(3):
            assert dateless(srv, who) == first
        # payment -> suspended (a 402, remembered for GET /: the same body), and back
        invoice(srv, account="acme", amount=5000, due=srv.clock.now() - timedelta(days=40))
        owed = dateless(srv, who)
        assert (owed[0], owed[2]["reason"], owed[2]["amount_due_minor"]) == (
            402, "ACCOUNT_SUSPENDED", 5000)
        assert dateless(srv, who) == owed
        nginx = dateless(srv, {**who, "x-sessiongate-deny-as-403": "1"})  # same answer, as 403
        assert (nginx[0], json.loads(nginx[1]["x-sessiongate-body"])) == (403, owed[2])
        pay(srv, "pay-1", 5000, account="acme")
        assert dateless(srv, who) == first
        # an override, and cleared
        srv.accounts.OverrideState(apb.OverrideStateRequest(
            account_id="acme", state=cpb.ACCOUNT_STATE_SUSPENDED, reason="chargeback"))
        assert dateless(srv, who)[0] == 402
        feature = {**who, "x-forwarded-uri": "/features/invoices"}
        assert dateless(srv, feature)[0] == 200  # the plan keeps it open
        # a plan change: the feature no longer stays open
        upsert(srv, account_id="acme", users=["alice"], plan_id="basic")
        assert dateless(srv, feature)[0] == 402
        srv.accounts.OverrideState(apb.OverrideStateRequest(account_id="acme", reason="ok"))
        assert dateless(srv, who) == first
        # a parent suspended
        upsert(srv, account_id="top")
        upsert(srv, account_id="leaf", parent_id="top", users=["alice"])
        leaf = {"x-account-id": "leaf", "x-user-id": "alice"}
        for _ in range(3):
            assert dateless(srv, leaf)[0] == 200
        upsert(srv, account_id="top", state=cpb.ACCOUNT_STATE_SUSPENDED)
        status, _, body = dateless(srv, leaf)
        assert status == 402 and "'top'" in body["message"]
