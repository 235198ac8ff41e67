"""gRPC TLS and mutual TLS with certificates made at test time (trustme), and Redis AUTH.

Redis TLS (`rediss://`) is tested elsewhere: the transport's TLS with the URL's CA in
test_transport_single.py, the whole sidecar on a redis-server listening on TLS only (with and
without client certificates, and a CA it does not trust) in tests/e2e/test_redis_tls.py, on a
Redis Cluster on TLS in tests/cluster/test_cluster_tls.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
import trustme

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.app import redacted
from sessiongate.domain.errors import InvalidArgument
from sessiongate.store.embedded import EmbeddedRedis
from tests.support import ServerThread, make_settings


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server = server_ca.issue_cert("localhost", "127.0.0.1")
    client = client_ca.issue_cert("app.example")
    rogue = rogue_ca.issue_cert("app.example")
    out = {"server_ca": d / "server_ca.pem", "client_ca": d / "client_ca.pem",
           "server_key": d / "server.key", "server_cert": d / "server.pem",
           "client_key": d / "client.key", "client_cert": d / "client.pem",
           "rogue_key": d / "rogue.key", "rogue_cert": d / "rogue.pem"}
    server_ca.cert_pem.write_to_path(str(out["server_ca"]))
    client_ca.cert_pem.write_to_path(str(out["client_ca"]))
    for name, cert in (("server", server), ("client", client), ("rogue", rogue)):
        cert.private_key_pem.write_to_path(str(out[f"{name}_key"]))
        # The chain: leaf first, then any intermediates.
        out[f"{name}_cert"].write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    return out


def _serve(redis_url: str, **tls: str) -> ServerThread:
    srv = ServerThread(make_settings(redis_url, scheduler=False, **tls))
    srv.thread.start()
    srv.port = srv.call(srv.app.start())
    return srv  # no insecure channel: each test dials its own


def _check(channel: grpc.Channel) -> spb.CheckSessionResponse:
    return spb_grpc.SessionControlStub(channel).CheckSession(
        spb.CheckSessionRequest(account_id="nobody", user_id="u"), timeout=5)


def _creds(pki: dict[str, Path], client: str | None = None) -> grpc.ChannelCredentials:
    ca = pki["server_ca"].read_bytes()
    if client is None:
        return grpc.ssl_channel_credentials(ca)
    return grpc.ssl_channel_credentials(
        ca, pki[f"{client}_key"].read_bytes(), pki[f"{client}_cert"].read_bytes())


@pytest.fixture
def tls_server(pki: dict[str, Path], redis_client: redis.Redis,
               redis_url: str) -> Iterator[ServerThread]:
    srv = _serve(redis_url, tls_cert=str(pki["server_cert"]), tls_key=str(pki["server_key"]))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def mtls_server(pki: dict[str, Path], redis_client: redis.Redis,
                redis_url: str) -> Iterator[ServerThread]:
    srv = _serve(redis_url, tls_cert=str(pki["server_cert"]), tls_key=str(pki["server_key"]),
                 tls_client_ca=str(pki["client_ca"]))
    try:
        yield srv
    finally:
        srv.stop()


def test_tls_serves_a_verified_client(tls_server: ServerThread, pki: dict[str, Path]) -> None:
    with grpc.secure_channel(f"localhost:{tls_server.port}", _creds(pki)) as ch:
        assert _check(ch).reason == cpb.REASON_UNKNOWN_ACCOUNT


def test_tls_refuses_plaintext_and_untrusted_clients(
    tls_server: ServerThread, pki: dict[str, Path]
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{tls_server.port}") as ch, \
            pytest.raises(grpc.RpcError) as info:
        _check(ch)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # A client that trusts another CA rejects the server's certificate.
    wrong = grpc.ssl_channel_credentials(pki["client_ca"].read_bytes())
    with grpc.secure_channel(f"localhost:{tls_server.port}", wrong) as ch, \
            pytest.raises(grpc.RpcError) as info:
        _check(ch)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate_of_the_client_ca(
    mtls_server: ServerThread, pki: dict[str, Path]
) -> None:
    target = f"localhost:{mtls_server.port}"
    with grpc.secure_channel(target, _creds(pki, "client")) as ch:
        assert _check(ch).reason == cpb.REASON_UNKNOWN_ACCOUNT
    for creds in (_creds(pki), _creds(pki, "rogue")):
        with grpc.secure_channel(target, creds) as ch, pytest.raises(grpc.RpcError) as info:
            _check(ch)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_tls_settings_must_be_complete(pki: dict[str, Path], redis_url: str) -> None:
    with pytest.raises(InvalidArgument, match="TLS_KEY"):
        make_settings(redis_url, scheduler=False, tls_cert=str(pki["server_cert"]))
    with pytest.raises(InvalidArgument, match="TLS_CLIENT_CA"):
        make_settings(redis_url, scheduler=False, tls_client_ca=str(pki["client_ca"]))


def test_redis_auth_through_the_url(tmp_path: Path) -> None:
    """A password-protected Redis: the sidecar authenticates with redis://:password@host."""
    with EmbeddedRedis(tmp_path, persistent=False) as embedded:
        # Set after start: EmbeddedRedis's readiness probe is an unauthenticated PING.
        admin = redis.Redis(port=embedded.port)
        admin.config_set("requirepass", "s3cret-pw")
        admin.close()
        with socket.create_connection(("127.0.0.1", embedded.port), timeout=5) as anonymous:
            anonymous.sendall(b"DBSIZE\r\n")
            assert anonymous.recv(64).startswith(b"-NOAUTH")
        url = f"redis://:s3cret-pw@127.0.0.1:{embedded.port}/0"
        srv = ServerThread(make_settings(url, scheduler=False, near_cache_ttl=300.0)).start()
        try:
            srv.accounts.UpsertAccount(apb.UpsertAccountRequest(
                account=apb.Account(account_id="acme", users=["alice"])))
            r = srv.sessions.CheckSession(
                spb.CheckSessionRequest(account_id="acme", user_id="alice"))
            assert (r.decision, r.source) == (cpb.DECISION_ALLOW, cpb.STATE_SOURCE_NEAR_CACHE)
        finally:
            srv.stop()
        with redis.Redis(port=embedded.port, password="s3cret-pw") as authed:
            assert authed.dbsize() > 0


def test_the_redis_password_is_not_logged() -> None:
    assert redacted("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redacted("rediss://user:pw@h:1/0") == "rediss://user:***@h:1/0"
    assert redacted("redis://h:1/0") == "redis://h:1/0"
