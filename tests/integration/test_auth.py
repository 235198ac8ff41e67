"""Bearer tokens and roles over real gRPC: who may call what, and that refusals write nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.config import Settings
from sessiongate.domain.errors import PermissionDenied, Unauthenticated
from sessiongate.service.auth import Authenticator
from tests.support import ServerThread, make_settings

# "both-1" is listed under app and admin: one token may carry several roles.
TOKENS = {"app_tokens": "app-1,app-2,both-1", "billing_tokens": "bill-1",
          "admin_tokens": "adm-1, both-1"}


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


@pytest.fixture
def secured(redis_client: redis.Redis, redis_url: str) -> Iterator[ServerThread]:
    # Tokens configured: listening on every address is allowed.
    srv = ServerThread(make_settings(
        redis_url, scheduler=False, grpc_addr="0.0.0.0:0", **TOKENS)).start()
    try:
        yield srv
    finally:
        srv.stop()


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()  # type: ignore[operator]
    return info.value.code()  # type: ignore[no-any-return]


def upsert(srv: ServerThread, md: list[tuple[str, str]], aid: str = "acme") -> apb.Account:
    return srv.accounts.UpsertAccount(
        apb.UpsertAccountRequest(account=apb.Account(account_id=aid, users=["alice"])),
        metadata=md)


def check(srv: ServerThread, md: list[tuple[str, str]]) -> spb.CheckSessionResponse:
    return srv.sessions.CheckSession(
        spb.CheckSessionRequest(account_id="acme", user_id="alice"), metadata=md)


@pytest.mark.parametrize("md", [
    [],
    bearer("nope"),
    bearer(""),
    [("authorization", "Basic YWxhZGRpbjpvcGVu")],
    [("authorization", "app-1")],  # the token without its scheme
    bearer("app-1x"),
    bearer("app-"),
])
def test_missing_or_wrong_token_is_unauthenticated_and_writes_nothing(
    secured: ServerThread, redis_client: redis.Redis, md: list[tuple[str, str]]
) -> None:
    assert code_of(lambda: upsert(secured, md)) == grpc.StatusCode.UNAUTHENTICATED
    assert code_of(lambda: check(secured, md)) == grpc.StatusCode.UNAUTHENTICATED
    assert redis_client.dbsize() == 0


def test_right_token_wrong_role_is_permission_denied(
    secured: ServerThread, redis_client: redis.Redis
) -> None:
    for token in ("app-1", "app-2", "bill-1"):
        assert code_of(lambda t=token: upsert(secured, bearer(t))) == (  # type: ignore[misc]
            grpc.StatusCode.PERMISSION_DENIED)
    assert redis_client.dbsize() == 0
    # Admin is no superuser: an admin-only token may not open sessions.
    upsert(secured, bearer("adm-1"))
    with pytest.raises(grpc.RpcError) as info:
        check(secured, bearer("adm-1"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "app" in (info.value.details() or "")
    assert code_of(lambda: check(secured, bearer("bill-1"))) == grpc.StatusCode.PERMISSION_DENIED


def test_each_role_reaches_its_service_and_a_shared_token_reaches_both(
    secured: ServerThread,
) -> None:
    assert upsert(secured, bearer("adm-1")).version == 1
    r = check(secured, bearer("app-2"))
    assert (r.decision, r.reason) == (cpb.DECISION_ALLOW, cpb.REASON_OK)
    # Lowercase scheme and surrounding whitespace are accepted.
    assert check(secured, [("authorization", "bearer  app-1 ")]).decision == cpb.DECISION_ALLOW
    assert upsert(secured, bearer("both-1"), "other").account_id == "other"
    assert check(secured, bearer("both-1")).decision == cpb.DECISION_ALLOW


def test_health_is_open_without_a_token(secured: ServerThread) -> None:
    stub = health_pb2_grpc.HealthStub(secured.channel)
    assert stub.Check(health_pb2.HealthCheckRequest()).status == (
        health_pb2.HealthCheckResponse.SERVING)
    name = "sessiongate.api.v1.SessionControl"
    assert stub.Check(health_pb2.HealthCheckRequest(service=name)).status == (
        health_pb2.HealthCheckResponse.SERVING)


def test_tokens_from_file_secrets(tmp_path: Path, redis_client: redis.Redis,
                                  redis_url: str) -> None:
    files = {}
    for role, content in (("APP", "from-file-app\n"), ("ADMIN", " f-adm-1 , f-adm-2 \n")):
        files[f"SESSIONGATE_{role}_TOKENS_FILE"] = str(tmp_path / role)
        (tmp_path / role).write_text(content)
    settings = Settings.from_env(
        {**files, "SESSIONGATE_GRPC_ADDR": "127.0.0.1:0", "SESSIONGATE_REDIS_URL": redis_url,
         "SESSIONGATE_METRICS_ADDR": "", "SESSIONGATE_HTTP_ADDR": "", "SESSIONGATE_ACCESS_LOG": "0",
         "SESSIONGATE_SCHEDULER": "0"})
    assert settings.tokens("admin") == ("f-adm-1", "f-adm-2")
    srv = ServerThread(settings).start()
    try:
        assert upsert(srv, bearer("f-adm-2")).version == 1
        assert check(srv, bearer("from-file-app")).decision == cpb.DECISION_ALLOW
        assert code_of(lambda: check(srv, [])) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        srv.stop()


def test_the_variable_wins_over_its_file(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("from-file")
    s = Settings.from_env({"SESSIONGATE_APP_TOKENS": "direct",
                           "SESSIONGATE_APP_TOKENS_FILE": str(tmp_path / "t")})
    assert s.tokens("app") == ("direct",)


def test_authenticator_rules() -> None:
    auth = Authenticator({"app": ["a"], "billing": ["b"], "admin": ["a", "z"]})
    assert auth.roles_of("a") == {"app", "admin"}
    assert auth.roles_of("q") == frozenset()
    assert auth.check([("authorization", b"Bearer b")], "billing") == "billing"
    with pytest.raises(PermissionDenied):
        auth.check(bearer("z"), "billing")
    with pytest.raises(Unauthenticated):
        auth.check(None, "app")
    # A role without tokens is closed, not open, once any token is configured.
    only_app = Authenticator({"app": ["a"]})
    with pytest.raises(PermissionDenied):
        only_app.check(bearer("a"), "admin")
    assert Authenticator({}).check(None, "admin") == "admin"  # no tokens: loopback dev mode
