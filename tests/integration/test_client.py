"""The client SDK against a real server: deadlines, tokens, TLS, retries, local fallback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import trustme

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.client import AsyncClient, Client, ClientConfig, Fallback
from sessiongate.store.embedded import free_port
from tests.support import ServerThread, make_settings

TOKENS = {"app_tokens": "app-t", "admin_tokens": "adm-t", "billing_tokens": "bill-t"}


@pytest.fixture
def sidecar(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    srv = ServerThread(make_settings(redis_url, scheduler=False, **TOKENS)).start()
    try:
        with Client(addr=srv.addr, token="adm-t") as admin:
            admin.upsert_account(apb.Account(account_id="acme", users=["alice"]))
        yield srv
    finally:
        srv.stop()


def test_sync_client_checks_and_reads_with_its_token(sidecar: ServerThread) -> None:
    with Client(addr=sidecar.addr, token="app-t") as sg:
        r = sg.check_session("acme", "alice", open_session=False)
        assert (r.decision, r.reason) == (cpb.DECISION_ALLOW, cpb.REASON_OK)
        assert sg.check_session("acme", "mallory").reason == cpb.REASON_USER_NOT_AUTHORIZED
        assert sg.healthy()
        # A refusal by the server is raised, not papered over by the fallback.
        with pytest.raises(grpc.RpcError) as info:
            sg.get_account("acme")
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as info:
            sg.check_session("", "alice")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with Client(addr=sidecar.addr, token="adm-t") as admin:
        assert admin.get_account("acme").users == ["alice"]
    with Client(addr=sidecar.addr) as anonymous, pytest.raises(grpc.RpcError) as info:
        anonymous.check_session("acme", "alice")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_token_and_address_from_the_environment(tmp_path: Path, sidecar: ServerThread) -> None:
    (tmp_path / "tok").write_text("app-t\n")
    cfg = ClientConfig.from_env({"SESSIONGATE_ADDR": sidecar.addr,
                                 "SESSIONGATE_TOKEN_FILE": str(tmp_path / "tok")})
    assert (cfg.addr, cfg.token) == (sidecar.addr, "app-t")
    with Client(cfg) as sg:
        assert sg.check_session("acme", "alice").decision == cpb.DECISION_ALLOW


def test_async_client(sidecar: ServerThread) -> None:
    async def main() -> tuple[spb.CheckSessionResponse, spb.CheckSessionResponse, bool]:
        async with AsyncClient(addr=sidecar.addr, token="app-t") as sg:
            allowed = await sg.check_session("acme", "alice", open_session=False)
            denied = await sg.check_session("nobody", "alice")
            return allowed, denied, await sg.healthy()

    allowed, denied, healthy = asyncio.run(main())
    assert allowed.decision == cpb.DECISION_ALLOW
    assert denied.reason == cpb.REASON_UNKNOWN_ACCOUNT
    assert healthy


def test_fallback_when_the_sidecar_is_unreachable() -> None:
    dead = f"127.0.0.1:{free_port()}"
    fast: dict[str, Any] = {"addr": dead, "timeout": 1.0, "backoff": 0.01}
    with Client(**fast) as sg:
        r = sg.check_session("acme", "alice")
        assert (r.decision, r.source, r.reason) == (
            cpb.DECISION_DENY, cpb.STATE_SOURCE_FAILURE_MODE, cpb.REASON_BACKEND_UNAVAILABLE)
        assert "unreachable" in r.message
        assert not sg.healthy()
        with pytest.raises(grpc.RpcError):  # only the login check has a fallback
            sg.get_account("acme")
    with Client(**fast, fallback=Fallback("allow")) as sg:
        assert sg.check_session("acme", "alice").decision == cpb.DECISION_ALLOW

    async def aio() -> spb.CheckSessionResponse:
        async with AsyncClient(**fast) as sg:
            return await sg.check_session("acme", "alice", open_session=False)

    assert asyncio.run(aio()).source == cpb.STATE_SOURCE_FAILURE_MODE


def test_last_known_fallback_repeats_the_last_answer(
    redis_client: redis.Redis, redis_url: str
) -> None:
    srv = ServerThread(make_settings(redis_url, scheduler=False)).start()
    stopped = False
    try:
        with Client(addr=srv.addr) as admin:
            admin.upsert_account(apb.Account(account_id="acme", users=["alice"]))
        sg = Client(addr=srv.addr, timeout=1.0, backoff=0.01,
                    fallback=Fallback("last_known", max_age=600))
        assert sg.check_session("acme", "alice").decision == cpb.DECISION_ALLOW
        assert sg.check_session("acme", "bob").decision == cpb.DECISION_DENY
        srv.stop()
        stopped = True
        r = sg.check_session("acme", "alice")
        assert (r.decision, r.source, r.reason) == (
            cpb.DECISION_ALLOW, cpb.STATE_SOURCE_STALE, cpb.REASON_OK)
        assert r.session_id == "" and "last known" in r.message
        assert sg.check_session("acme", "bob").decision == cpb.DECISION_DENY
        never = sg.check_session("acme", "carol")  # nothing remembered: deny
        assert (never.decision, never.source) == (
            cpb.DECISION_DENY, cpb.STATE_SOURCE_FAILURE_MODE)
        sg.close()
    finally:
        if not stopped:
            srv.stop()


class Flaky:
    """A real gRPC server for SessionControl/Accounts that fails the first `fail` calls."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str]] = []  # (method, x-request-id)
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(4))
        handlers = {
            "CheckSession": (spb.CheckSessionRequest, spb.CheckSessionResponse(
                decision=cpb.DECISION_ALLOW, source=cpb.STATE_SOURCE_REDIS)),
        }
        self.server.add_generic_rpc_handlers([
            grpc.method_handlers_generic_handler("sessiongate.api.v1.SessionControl", {
                name: self._handler(name, req, resp) for name, (req, resp) in handlers.items()}),
            grpc.method_handlers_generic_handler("sessiongate.api.v1.Accounts", {
                "GetAccount": self._handler("GetAccount", apb.GetAccountRequest,
                                            apb.Account(account_id="acme")),
                "UpsertAccount": self._handler("UpsertAccount", apb.UpsertAccountRequest,
                                               apb.Account(account_id="acme")),
            }),
        ])
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def _handler(self, name: str, req: Any, resp: Any) -> grpc.RpcMethodHandler:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            rid = dict(context.invocation_metadata()).get("x-request-id", "")
            with self.lock:
                self.calls.append((name, rid))
                failing = self.fail > 0
                self.fail -= 1
            if failing:
                context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
            return resp

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=req.FromString,
            response_serializer=lambda m: m.SerializeToString())

    def __enter__(self) -> Flaky:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(None)


def test_only_idempotent_calls_are_retried() -> None:
    with Flaky(fail=2) as flaky, Client(addr=f"127.0.0.1:{flaky.port}", backoff=0.001,
                                        max_attempts=3) as sg:
        assert sg.get_account("acme").account_id == "acme"  # 2 failures, then success
        assert [m for m, _ in flaky.calls] == ["GetAccount"] * 3
        assert len({rid for _, rid in flaky.calls}) == 1  # one request id for all attempts

        flaky.fail, flaky.calls = 1, []
        with pytest.raises(grpc.RpcError) as info:
            sg.upsert_account(apb.Account(account_id="acme"))  # not idempotent: one try
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert len(flaky.calls) == 1

        flaky.fail, flaky.calls = 1, []
        r = sg.check_session("acme", "alice")  # opens a session: one try, then the fallback
        assert (len(flaky.calls), r.source) == (1, cpb.STATE_SOURCE_FAILURE_MODE)

        flaky.fail, flaky.calls = 1, []
        r = sg.check_session("acme", "alice", open_session=False)  # a pure check: retried
        assert (len(flaky.calls), r.source) == (2, cpb.STATE_SOURCE_REDIS)


def test_client_over_tls(tmp_path: Path, redis_client: redis.Redis, redis_url: str) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("sidecar.internal")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "cert.pem").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    srv = ServerThread(make_settings(redis_url, scheduler=False, tls_cert=str(
        tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem")))
    srv.thread.start()
    srv.port = srv.call(srv.app.start())
    try:
        cfg = ClientConfig(addr=f"127.0.0.1:{srv.port}", tls_ca=ca.cert_pem.bytes(),
                           server_name="sidecar.internal")
        with Client(cfg) as sg:
            assert sg.check_session("ghost", "u").reason == cpb.REASON_UNKNOWN_ACCOUNT
    finally:
        srv.stop()


def test_usage_in_batches_sync_and_async(sidecar: ServerThread) -> None:
    """record_usage_batch: many events in few messages, each counted once, a retry (the
    same events again) all duplicates; the async client alike."""
    def events(prefix: str, n: int) -> list[spb.UsageEvent]:
        return [spb.UsageEvent(event_id=f"{prefix}{i}", account_id="acme", user_id="alice",
                               feature="api", quantity=2) for i in range(n)]

    with Client(addr=sidecar.addr, token="app-t") as sg:
        first = sg.record_usage_batch(events("s", 1203), per_message=100)
        again = sg.record_usage_batch(events("s", 1203))
    assert (first.accepted, first.duplicates) == (1203, 0)
    assert (again.accepted, again.duplicates) == (0, 1203)

    async def main() -> spb.RecordUsageBatchResponse:
        async with AsyncClient(addr=sidecar.addr, token="app-t") as sg:
            return await sg.record_usage_batch(events("a", 7) + events("s", 3), per_message=4)

    got = asyncio.run(main())
    assert (got.accepted, got.duplicates) == (7, 3)
