"""examples/asgi_login: the ASGI middleware driven with real scope/receive/send calls, against
a real sidecar (and against no sidecar at all, for the fallback)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from examples.asgi_login.app import SessionGateMiddleware, demo_app
from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.client import Client, ClientConfig, Fallback
from sessiongate.store.embedded import free_port
from tests.support import ServerThread, make_settings


@pytest.fixture
def sidecar(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(redis_url, scheduler=False, app_tokens="app-t",
                                     admin_tokens="adm-t")).start()
    try:
        with Client(addr=srv.addr, token="adm-t") as admin:
            admin.upsert_account(apb.Account(account_id="acme", users=["alice"]))
            admin.upsert_account(apb.Account(account_id="late", state=cpb.ACCOUNT_STATE_SUSPENDED))
        yield srv
    finally:
        srv.stop()


async def request(app: Any, method: str, path: str, body: bytes = b"",
                  chunk: int = 0) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    """One HTTP request through the ASGI callable; the body optionally in chunks."""
    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    inbox = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
             for i, p in enumerate(parts)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [],
             "query_string": b""}
    await app(scope, receive, send)
    start, body_msg = sent[0], sent[1]
    assert start["type"] == "http.response.start"
    return start["status"], dict(start["headers"]), json.loads(body_msg["body"])


def run(app: SessionGateMiddleware, *calls: tuple[Any, ...]) -> list[Any]:
    async def main() -> list[Any]:
        try:
            return [await request(app, *c) for c in calls]
        finally:
            await app.aclose()

    return asyncio.run(main())


def login(account: str, user: str) -> bytes:
    return json.dumps({"account_id": account, "user_id": user}).encode()


def test_login_is_checked_and_the_app_sees_the_answer(sidecar: ServerThread) -> None:
    app = SessionGateMiddleware(demo_app, ClientConfig(addr=sidecar.addr, token="app-t"))
    ok, stranger, suspended, public, bad = run(
        app,
        ("POST", "/login", login("acme", "alice"), 7),  # chunked body, replayed to the app
        ("POST", "/login", login("acme", "mallory")),
        ("POST", "/login", login("late", "bob")),
        ("GET", "/about"),
        ("POST", "/login", b"{not json"),
    )
    status, _, body = ok
    assert status == 200 and body["welcome"] is True
    assert body["session_id"]  # the login opened a session; the app got its id
    status, _, body = stranger
    assert (status, body["reason"]) == (403, "USER_NOT_AUTHORIZED")
    status, _, body = suspended
    assert (status, body["reason"]) == (402, "ACCOUNT_SUSPENDED")
    assert (public[0], public[2]) == (200, {"page": "/about"})  # not checked: passed through
    assert bad[0] == 400


def test_unreachable_sidecar_uses_the_client_fallback() -> None:
    dead = f"127.0.0.1:{free_port()}"
    deny = SessionGateMiddleware(demo_app, ClientConfig(addr=dead, timeout=1.0, backoff=0.01))
    ((status, headers, body),) = run(deny, ("POST", "/login", login("acme", "alice")))
    assert (status, body["reason"]) == (503, "BACKEND_UNAVAILABLE")
    assert headers[b"x-sessiongate-source"] == b"FAILURE_MODE"
    allow = SessionGateMiddleware(demo_app, ClientConfig(
        addr=dead, timeout=1.0, backoff=0.01, fallback=Fallback("allow")))
    ((status, _, body),) = run(allow, ("POST", "/login", login("acme", "alice")))
    assert status == 200 and "fallback allow" in body["notice"]


def test_lifespan_closes_the_client(sidecar: ServerThread) -> None:
    app = SessionGateMiddleware(demo_app, ClientConfig(addr=sidecar.addr, token="app-t"))

    async def main() -> list[str]:
        await request(app, "POST", "/login", login("acme", "alice"))
        assert app._client is not None
        inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        return sent

    assert asyncio.run(main()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert app._client is None
