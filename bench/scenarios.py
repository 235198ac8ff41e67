"""The latency scenarios: what each server is, what it is asked, and how to check its answer.

The first after the floor is the login applications send (a session opened, no seat limit,
the default configuration): the headline of `make bench` and of docs/performance.md.
"""

from __future__ import annotations

import importlib.util
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from bench import h2load, procs
from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc

CHECK_PATH = "/sessiongate.api.v1.SessionControl/CheckSession"
ENVOY_PATH = "/envoy.service.auth.v3.Authorization/Check"
AUTHZ_PATH = "/authz"
TOKEN_HEADER = "x-sessiongate-token"
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
    # The request message (gRPC); None: an HTTP/1.1 GET (`http`).
    request: Callable[[], Message] | None
    settings: dict[str, str] = field(default_factory=dict)
    floor: bool = False
    present: Callable[[], bool] = lambda: True
    # (server) -> None, raises if the server's answer is not the expected one.
    verify: Callable[[procs.Proc], None] = lambda proc: None
    http: bool = False  # the HTTP endpoint, driven by h2load --h1
    floor_of: str = "floor"  # the floor scenario it is paired with

    def start(self, redis_url: str, workdir: Path) -> procs.Proc:
        if self.floor:
            return procs.floor(workdir, http=self.http)
        return procs.serve(redis_url, workdir, name=self.name, http=self.http, **self.settings)

    def url(self, proc: procs.Proc) -> str:
        return f"http://127.0.0.1:{proc.http_port if self.http else proc.port}{self.path}"

    def body(self, workdir: Path) -> Path | None:
        if self.request is None:
            return None
        return h2load.write_request(workdir / f"{self.name}.bin", self.request())

    def headers(self) -> list[tuple[str, str]]:
        if self.http:  # a proxy's forward-auth request (http/authz.py)
            return [(TOKEN_HEADER, procs.APP_TOKEN), ("x-account-id", ACCOUNT),
                    ("x-user-id", USERS[0])]
        return app_md()


def upsert(ch: grpc.Channel, **fields: Any) -> None:
    apb_grpc.AccountsStub(ch).UpsertAccount(
        apb.UpsertAccountRequest(account=apb.Account(**fields)), metadata=admin_md(), timeout=10)


def check_request(seat: bool = False, no_session: bool = False) -> spb.CheckSessionRequest:
    """A login (opens a session: what applications send), seat-limited or not; with
    `no_session`, a check that opens none (a proxy's per-request check)."""
    if seat:
        return spb.CheckSessionRequest(account_id=SEAT_ACCOUNT, user_id=USERS[0])
    return spb.CheckSessionRequest(account_id=ACCOUNT, user_id=USERS[0], no_session=no_session)


def _verify_check(source: int, seat: bool = False, no_session: bool = False
                  ) -> Callable[[procs.Proc], None]:
    def verify(proc: procs.Proc) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{proc.port}") as ch:
            if seat:
                upsert(ch, account_id=SEAT_ACCOUNT, users=USERS, seat_limit=len(USERS))
            else:
                upsert(ch, account_id=ACCOUNT, users=USERS)
            stub = spb_grpc.SessionControlStub(ch)
            for _ in range(3):
                resp = stub.CheckSession(check_request(seat, no_session), metadata=app_md(),
                                         timeout=10)
        if resp.decision != cpb.DECISION_ALLOW or (source and resp.source != source):
            raise RuntimeError(f"unexpected answer: {resp}")
        if no_session == bool(resp.session_id):
            raise RuntimeError(f"session opened or not opened against the request: {resp}")
    return verify


def _envoy_request() -> Message:
    from sessiongate.service.envoy_authz import check_request as envoy_check

    return envoy_check(ACCOUNT, USERS[0], "/app")  # type: ignore[no-any-return]


def _verify_envoy(proc: procs.Proc) -> None:
    from envoy.service.auth.v3 import external_auth_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{proc.port}") as ch:
        upsert(ch, account_id=ACCOUNT, users=USERS)
        stub = external_auth_pb2_grpc.AuthorizationStub(ch)
        for _ in range(3):
            resp = stub.Check(_envoy_request(), metadata=app_md(), timeout=10)
    if resp.status.code != 0 or not resp.HasField("ok_response"):
        raise RuntimeError(f"unexpected ext_authz answer: {resp}")


def _verify_http(proc: procs.Proc) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{proc.port}") as ch:
        upsert(ch, account_id=ACCOUNT, users=USERS)
    sc = next(s for s in SCENARIOS if s.name == "http_authz")
    for _ in range(3):
        req = urllib.request.Request(sc.url(proc), headers=dict(sc.headers()))
        with urllib.request.urlopen(req, timeout=10) as resp:
            status = resp.status
    if status != 200:
        raise RuntimeError(f"unexpected /authz status {status}")


SCENARIOS = [
    Scenario("floor", "floor: empty CheckSession handler", CHECK_PATH, check_request,
             floor=True),
    Scenario("login", "CheckSession, default login (session opened, no seat limit)",
             CHECK_PATH, check_request, verify=_verify_check(cpb.STATE_SOURCE_NEAR_CACHE)),
    Scenario("no_session", "CheckSession without session (a proxy's per-request check)",
             CHECK_PATH, lambda: check_request(no_session=True),
             verify=_verify_check(cpb.STATE_SOURCE_NEAR_CACHE, no_session=True)),
    Scenario("envoy_check", "Envoy ext_authz Check (near-cache)", ENVOY_PATH, _envoy_request,
             present=envoy_present, verify=_verify_envoy),
    Scenario("seat_login", "seat-limited login (one Lua call)", CHECK_PATH,
             lambda: check_request(seat=True), present=seats_present,
             verify=_verify_check(0, seat=True)),
    Scenario("login_no_log", "default login, access log off", CHECK_PATH, check_request,
             settings={"access_log": "false"},
             verify=_verify_check(cpb.STATE_SOURCE_NEAR_CACHE)),
    Scenario("redis", "default login from Redis (near-cache off)", CHECK_PATH, check_request,
             settings={"near_cache": "false"}, verify=_verify_check(cpb.STATE_SOURCE_REDIS)),
    Scenario("http_floor", "floor: empty /authz handler (aiohttp)", AUTHZ_PATH, None,
             floor=True, http=True),
    Scenario("http_authz", "HTTP forward auth /authz (near-cache)", AUTHZ_PATH, None,
             verify=_verify_http, http=True, floor_of="http_floor"),
]

# Targets of issue #30 (reported against, never asserted): scenario -> (throughput ratio at
# least, p99 ratio at most at 1000 and 2000 req/s), each against its own floor.
TARGETS: dict[str, tuple[float, float | None]] = {
    "login": (0.9, 1.25),
    "no_session": (0.95, None),
    "envoy_check": (0.95, None),
    "seat_login": (0.75, None),
    "http_authz": (0.8, None),
}
