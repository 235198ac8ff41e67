"""The processes a benchmark drives: a redis-server, `sessiongate serve`, the floor server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sessiongate.store.embedded import free_port

APP_TOKEN = "bench-app-token"
BILLING_TOKEN = "bench-billing-token"
ADMIN_TOKEN = "bench-admin-token"


def wait_serving(port: int, timeout: float = 30.0, service: str = "") -> None:
    """Until the health service says SERVING (the floor has none: any answer will do)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while True:
            try:
                resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if resp.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNIMPLEMENTED:  # the floor: it is up
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"server on port {port} never became ready")
            time.sleep(0.1)


class Proc:
    """A child process on its own port, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, args: list[str], port: int, env: Mapping[str, str], log: Path) -> None:
        self.port = port
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process, all threads (Linux /proc), 0 elsewhere."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


def serve(redis_url: str, workdir: Path, *, name: str = "serve", workers: int = 1,
          prefix: Sequence[str] = (), **settings: str) -> Proc:
    """`sessiongate serve` with the default configuration (tokens, access log, metrics on),
    overridden by `settings` (env names without the SESSIONGATE_ prefix)."""
    port = free_port()
    env = {
        "SESSIONGATE_REDIS_URL": redis_url,
        "SESSIONGATE_GRPC_ADDR": f"127.0.0.1:{port}",
        "SESSIONGATE_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "SESSIONGATE_HTTP_ADDR": "",
        "SESSIONGATE_LOG_FORMAT": "json",
        "SESSIONGATE_APP_TOKENS": APP_TOKEN,
        "SESSIONGATE_BILLING_TOKENS": BILLING_TOKEN,
        "SESSIONGATE_ADMIN_TOKENS": ADMIN_TOKEN,
        "SESSIONGATE_WORKERS": str(workers),
        **{f"SESSIONGATE_{k.upper()}": v for k, v in settings.items()},
    }
    exe = str(Path(sys.executable).with_name("sessiongate"))
    proc = Proc([*prefix, exe, "serve"], port, env, workdir / f"{name}.log")
    try:
        wait_serving(port, timeout=180 if prefix else 30)
    except Exception:
        proc.stop()
        raise
    return proc


def floor(workdir: Path, prefix: Sequence[str] = ()) -> Proc:
    """The floor server (bench/floor.py); `prefix`: a command to run it under (valgrind)."""
    port = free_port()
    proc = Proc([*prefix, sys.executable, "-m", "bench.floor", "--port", str(port)], port, {},
                workdir / "floor.log")
    wait_serving(port, timeout=180 if prefix else 30)
    return proc
