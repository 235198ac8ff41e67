"""An ASGI middleware that asks sessiongate at every login, and a tiny app behind it.

`POST /login` with a JSON body `{"account_id": ..., "user_id": ...}` is checked with
`CheckSession` before the app sees it: a denied login gets 403 (402 when the account is
suspended for non-payment) with sessiongate's reason and message; an allowed one reaches the
app with the answer in `scope["state"]["sessiongate"]`. Other paths pass through unchecked.
When the sidecar is unreachable the client's fallback policy answers, and a fallback denial
is a 503 (try again), not a 403.

Run it: `uvicorn examples.asgi_login.app:app` (SESSIONGATE_ADDR, SESSIONGATE_TOKEN[_FILE]).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.client import AsyncClient, ClientConfig

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 64 * 1024


async def respond(send: Send, status: int, body: dict[str, Any],
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": payload})


class SessionGateMiddleware:
    def __init__(self, app: ASGIApp, config: ClientConfig | None = None,
                 login_path: str = "/login") -> None:
        self.app = app
        self.config = config
        self.login_path = login_path
        self._client: AsyncClient | None = None

    @property
    def client(self) -> AsyncClient:
        if self._client is None:  # made on first use: inside the server's event loop
            self._client = AsyncClient(self.config or ClientConfig.from_env())
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(scope, receive, send)
        if scope["type"] != "http" or scope["path"] != self.login_path \
                or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_BODY:
                return await respond(send, 413, {"error": "body too large"})
        try:
            login = json.loads(body or b"{}")
            account_id, user_id = str(login["account_id"]), str(login["user_id"])
        except (ValueError, KeyError, TypeError):
            return await respond(send, 400, {"error": "expected JSON account_id and user_id"})
        answer = await self.client.check_session(account_id, user_id)
        verdict = {
            "decision": cpb.Decision.Name(answer.decision).removeprefix("DECISION_"),
            "reason": cpb.Reason.Name(answer.reason).removeprefix("REASON_"),
            "source": cpb.StateSource.Name(answer.source).removeprefix("STATE_SOURCE_"),
            "message": answer.message,
            "session_id": answer.session_id,
        }
        headers = [(b"x-sessiongate-source", verdict["source"].encode())]
        if answer.decision != cpb.DECISION_ALLOW:
            status = 403
            if answer.reason == cpb.REASON_ACCOUNT_SUSPENDED:
                status = 402
            elif answer.source == cpb.STATE_SOURCE_FAILURE_MODE:
                status = 503
            return await respond(send, status, verdict, headers)
        scope.setdefault("state", {})["sessiongate"] = verdict
        replayed = False

        async def replay() -> Message:  # the app reads the body we consumed
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def demo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The application: a login that sessiongate allowed, and a public page."""
    if scope["path"] == "/login":
        await receive()
        answer = scope["state"]["sessiongate"]
        await respond(send, 200, {"welcome": True, "session_id": answer["session_id"],
                                  "notice": answer["message"] if answer["reason"] != "OK"
                                  else ""})
    else:
        await respond(send, 200, {"page": scope["path"]})


app = SessionGateMiddleware(demo_app)
