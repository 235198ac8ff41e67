"""`sessiongate serve` in a child process against the test's redis-server, and what the tests
read of it from outside (its RSS from /proc, call latencies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.store.embedded import free_port
from tests.e2e.test_process import wait_serving

SG = [sys.executable, "-m", "sessiongate.cli", "serve"]


@contextmanager
def sidecar(redis_url: str, tmp: Path, **env_extra: str) -> Iterator[tuple[int, str]]:
    """(pid, address) of a serving sidecar; SIGTERM and a clean exit when the block ends."""
    addr = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSIONGATE_GRPC_ADDR": addr, "SESSIONGATE_LOG_FORMAT": "json",
           "SESSIONGATE_SCHEDULER": "0", "SESSIONGATE_DATA_DIR": str(tmp / "sidecar"),
           "SESSIONGATE_REDIS_URL": redis_url, "SESSIONGATE_METRICS_ADDR": "",
           "SESSIONGATE_ACCESS_LOG": "0", **env_extra}
    with (tmp / "sidecar.log").open("w") as log:
        proc = subprocess.Popen(SG, env=env, stderr=log, stdout=subprocess.DEVNULL)
        try:
            wait_serving(addr)
            yield proc.pid, addr
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, (tmp / "sidecar.log").read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def poll(what: str, cond: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until `cond()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def rss_bytes(pid: int) -> int:
    """Resident set size of a process now (VmRSS in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def login(ch: grpc.Channel, account: str, user: str = "alice") -> spb.CheckSessionResponse:
    """A login of `user` of `account` through `ch` (a session opened when allowed)."""
    answer: spb.CheckSessionResponse = spb_grpc.SessionControlStub(ch).CheckSession(
        spb.CheckSessionRequest(account_id=account, user_id=user), timeout=10)
    return answer


def stamp(when: datetime) -> Timestamp:
    t = Timestamp()
    t.FromDatetime(when)
    return t
