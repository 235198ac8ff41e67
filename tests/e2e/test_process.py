"""The real command: `sessiongate serve` with its embedded Redis, SIGTERM drain, the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sessiongate.store.embedded import free_port

SG = [sys.executable, "-m", "sessiongate.cli"]


def wait_serving(addr: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise AssertionError(f"{addr} never became SERVING")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    addr = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_DATA_DIR": str(tmp_path),
           "SESSIONGATE_LOG_FORMAT": "json", "SESSIONGATE_METRICS_ADDR": "",
           "SESSIONGATE_HTTP_ADDR": ""}
    env.pop("SESSIONGATE_REDIS_URL", None)
    proc = subprocess.Popen([*SG, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(addr)
        yield proc, addr, tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def cli(addr: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SG, *args, "--addr", addr], capture_output=True, text=True, timeout=30)


def test_serve_with_embedded_redis_cli_and_sigterm(
    served: tuple[subprocess.Popen[str], str, Path],
) -> None:
    proc, addr, data_dir = served
    r = cli(addr, "account", "upsert", "acme", "--user", "alice", "--seat-limit", "3")
    assert r.returncode == 0, r.stderr
    assert "acme" in r.stdout and "ACTIVE" in r.stdout
    r = cli(addr, "check", "acme", "alice")
    assert r.returncode == 0 and r.stdout.startswith("ALLOW  ACTIVE  OK")
    r = cli(addr, "check", "acme", "eve", "--json")
    assert r.returncode == 3
    assert json.loads(r.stdout)["reason"] == "REASON_USER_NOT_AUTHORIZED"
    r = cli(addr, "account", "get", "acme", "--json")
    assert json.loads(r.stdout)["seat_limit"] == 3
    r = cli(addr, "check", "acme", "bad\tuser")
    assert r.returncode == 1 and "INVALID_ARGUMENT: user_id" in r.stderr
    # The embedded Redis persists under the data dir (append-only file).
    assert any(data_dir.rglob("*.aof*"))

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert "draining" in events and events[-1] == "stopped"
    access = [json.loads(line) for line in err.splitlines() if '"event": "rpc"' in line]
    assert {a["method"] for a in access} >= {"UpsertAccount", "CheckSession", "GetAccount"}
    assert all("ms" in a and "code" in a for a in access)


def test_state_survives_a_restart_of_the_embedded_redis(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_DATA_DIR": str(tmp_path),
           "SESSIONGATE_METRICS_ADDR": "", "SESSIONGATE_HTTP_ADDR": ""}
    env.pop("SESSIONGATE_REDIS_URL", None)
    for round_ in range(2):
        proc = subprocess.Popen([*SG, "serve"], env=env, stderr=subprocess.DEVNULL)
        try:
            wait_serving(addr)
            if round_ == 0:
                assert cli(addr, "account", "upsert", "acme", "--user", "a").returncode == 0
            else:
                assert cli(addr, "check", "acme", "a").returncode == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0


def test_refuses_non_loopback_without_tokens(tmp_path: Path) -> None:
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": f"0.0.0.0:{free_port()}",
           "SESSIONGATE_DATA_DIR": str(tmp_path), "SESSIONGATE_METRICS_ADDR": "",
           "SESSIONGATE_HTTP_ADDR": ""}
    r = subprocess.run([*SG, "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "refusing to listen" in r.stderr


def test_serve_help_documents_every_setting() -> None:
    import dataclasses

    from sessiongate.config import Settings

    out = subprocess.run([*SG, "serve", "--help"], capture_output=True, text=True).stdout
    flat = " ".join(out.split())
    for f in dataclasses.fields(Settings):
        assert f.metadata["env"] in flat, f.name
        assert "--" + f.name.replace("_", "-") in flat
