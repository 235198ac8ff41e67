"""`serve --workers 2`: two processes share the gRPC port (SO_REUSEPORT), each with metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.store.embedded import free_port
from tests.e2e.test_process import wait_serving


def metrics_up(port: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def free_pair(exclude: int) -> int:
    """A port p such that p and p + 1 are both free now (each worker's metrics endpoint)."""
    while True:
        port = free_port()
        if exclude in (port, port + 1):
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port


def test_two_workers_share_the_port_and_drain_on_sigterm(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    mport = free_pair(exclude=int(addr.rsplit(":", 1)[1]))
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_DATA_DIR": str(tmp_path),
           "SESSIONGATE_METRICS_ADDR": f"127.0.0.1:{mport}", "SESSIONGATE_LOG_FORMAT": "json",
           "SESSIONGATE_HTTP_ADDR": ""}
    env.pop("SESSIONGATE_REDIS_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "sessiongate.cli", "serve", "--workers", "2"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(addr, timeout=40)
        # Each worker has its own metrics endpoint: port and port + 1.
        assert "sessiongate" in metrics_up(mport)
        assert "sessiongate" in metrics_up(mport + 1)
        with grpc.insecure_channel(addr) as ch:
            apb_grpc.AccountsStub(ch).UpsertAccount(
                apb.UpsertAccountRequest(account=apb.Account(account_id="acme")), timeout=10)
        # New connections spread over both workers; all answer from the same Redis.
        for _ in range(24):  # all on one worker: odds 2 in 2^24
            with grpc.insecure_channel(addr) as ch:
                r = spb_grpc.SessionControlStub(ch).CheckSession(
                    spb.CheckSessionRequest(account_id="acme", user_id="u"), timeout=10)
                assert r.decision == cpb.DECISION_ALLOW
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert err.count('"event": "stopped"') == 2
    served_by = {json.loads(line).get("worker") for line in err.splitlines()
                 if '"method": "CheckSession"' in line}
    assert served_by == {0, 1}
