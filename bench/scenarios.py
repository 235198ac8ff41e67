"""The latency scenarios: what each server is, what it is asked, and how to check its answer."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from bench import procs
from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc

CHECK_PATH = "/sessiongate.api.v1.SessionControl/CheckSession"
ENVOY_PATH = "/envoy.service.auth.v3.Authorization/Check"
ACCOUNT = "bench-acme"
SEAT_ACCOUNT = "bench-seats"
USERS = [f"user-{i}" for i in range(10)]


def app_md() -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {procs.APP_TOKEN}")]


def admin_md() -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {procs.ADMIN_TOKEN}")]


def seats_present() -> bool:
    """Seat-limited logins (issue #4) have landed when their store module exists."""
    return importlib.util.find_spec("sessiongate.store.sessions") is not None


def envoy_present() -> bool:
    return importlib.util.find_spec("sessiongate.service.envoy_authz") is not None


@dataclass
class Scenario:
    name: str
    title: str
    path: str
    request: Callable[[], Message]
    settings: dict[str, str] = field(default_factory=dict)
    floor: bool = False
    present: Callable[[], bool] = lambda: True
    # (channel) -> None, raises if the server's answer is not the expected one.
    verify: Callable[[grpc.Channel], None] = lambda ch: None

    def start(self, redis_url: str, workdir: Path) -> procs.Proc:
        if self.floor:
            return procs.floor(workdir)
        return procs.serve(redis_url, workdir, name=self.name, **self.settings)


def upsert(ch: grpc.Channel, **fields: Any) -> None:
    apb_grpc.AccountsStub(ch).UpsertAccount(
        apb.UpsertAccountRequest(account=apb.Account(**fields)), metadata=admin_md(), timeout=10)


def check_request(seat: bool = False) -> spb.CheckSessionRequest:
    if seat:
        return spb.CheckSessionRequest(account_id=SEAT_ACCOUNT, user_id=USERS[0])
    return spb.CheckSessionRequest(account_id=ACCOUNT, user_id=USERS[0], no_session=True)


def _verify_check(source: int, seat: bool = False) -> Callable[[grpc.Channel], None]:
    def verify(ch: grpc.Channel) -> None:
        if seat:
            upsert(ch, account_id=SEAT_ACCOUNT, users=USERS, seat_limit=len(USERS))
        else:
            upsert(ch, account_id=ACCOUNT, users=USERS)
        stub = spb_grpc.SessionControlStub(ch)
        for _ in range(3):
            resp = stub.CheckSession(check_request(seat), metadata=app_md(), timeout=10)
        if resp.decision != cpb.DECISION_ALLOW or (source and resp.source != source):
            raise RuntimeError(f"unexpected answer: {resp}")
        if seat and not resp.session_id:
            raise RuntimeError(f"a seat-limited login opened no session: {resp}")
    return verify


def _envoy_request() -> Message:
    from sessiongate.service.envoy_authz import check_request as envoy_check

    return envoy_check(ACCOUNT, USERS[0], "/app")  # type: ignore[no-any-return]


def _verify_envoy(ch: grpc.Channel) -> None:
    from envoy.service.auth.v3 import external_auth_pb2_grpc

    upsert(ch, account_id=ACCOUNT, users=USERS)
    stub = external_auth_pb2_grpc.AuthorizationStub(ch)
    for _ in range(3):
        resp = stub.Check(_envoy_request(), metadata=app_md(), timeout=10)
    if resp.status.code != 0 or not resp.HasField("ok_response"):
        raise RuntimeError(f"unexpected ext_authz answer: {resp}")


SCENARIOS = [
    Scenario("floor", "floor: empty CheckSession handler", CHECK_PATH, check_request,
             floor=True),
    Scenario("near_cache", "CheckSession, near-cache hit (default config)", CHECK_PATH,
             check_request, verify=_verify_check(cpb.STATE_SOURCE_NEAR_CACHE)),
    Scenario("near_cache_no_log", "CheckSession, near-cache hit, access log off", CHECK_PATH,
             check_request, settings={"access_log": "false"},
             verify=_verify_check(cpb.STATE_SOURCE_NEAR_CACHE)),
    Scenario("redis", "CheckSession from Redis (near-cache off)", CHECK_PATH, check_request,
             settings={"near_cache": "false"}, verify=_verify_check(cpb.STATE_SOURCE_REDIS)),
    Scenario("seat_login", "seat-limited login (one Lua call)", CHECK_PATH,
             lambda: check_request(seat=True), present=seats_present,
             verify=_verify_check(0, seat=True)),
    Scenario("envoy_check", "Envoy ext_authz Check (near-cache)", ENVOY_PATH, _envoy_request,
             present=envoy_present, verify=_verify_envoy),
]

# Targets of issue #5 (reported against, never asserted): scenario -> (throughput ratio at
# least, p99 ratio at most).
TARGETS: dict[str, tuple[float, float | None]] = {
    "near_cache": (0.9, 1.25),
    "seat_login": (0.65, None),
}
