"""The processes a benchmark drives: a redis-server, `sessiongate serve`, the floor server."""

from __future__ import annotations

import os
import signal
import socket
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


def wait_http(port: int, timeout: float = 30.0) -> None:
    """Until an HTTP server answers on `port` (any status will do)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on port {port} never became ready") from None
            time.sleep(0.1)


def _stat(pid: int, thread: int | None = None) -> list[str] | None:
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    try:
        return Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_of(pid: int | None, thread: int | None = None) -> float:
    """User + system CPU seconds of process `pid` (0 if gone or unknown); of one of its
    threads with `thread` (its id; the process's own id: its main thread)."""
    stat = None if pid is None else _stat(pid, thread)
    if stat is None:
        return 0.0
    return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")


class Proc:
    """A child process on its own port (gRPC; `http_port`: its HTTP endpoint, if any),
    stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, args: list[str], port: int, env: Mapping[str, str], log: Path,
                 http_port: int = 0) -> None:
        self.port = port
        self.http_port = http_port
        self.log = log
        self._out = log.open("ab")
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process, all threads (Linux /proc), 0 elsewhere."""
        return cpu_of(self.pid)

    def loop_cpu_seconds(self) -> float:
        """CPU of the main thread alone: the event loop's, where every handler, the access
        log and the batch writer run; saturated, it is what bounds the throughput (grpc's
        own threads add CPU beside it, not to its time)."""
        return cpu_of(self.pid, self.pid)

    def tree_cpu_seconds(self) -> dict[int, float]:
        """CPU seconds of the process and of each of its children (`serve --workers N`'
        worker processes), by pid."""
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            stat = _stat(int(entry.name))
            if stat is not None and (int(entry.name) == self.pid or int(stat[1]) == self.pid):
                out[int(entry.name)] = (int(stat[11]) + int(stat[12])) / tick
        return out

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
          prefix: Sequence[str] = (), http: bool = False, **settings: str) -> Proc:
    """`sessiongate serve` with the default configuration (tokens, access log, metrics on),
    overridden by `settings` (env names without the SESSIONGATE_ prefix); `http`: with its
    HTTP endpoint (/authz) on a port of its own (`Proc.http_port`)."""
    port = free_port()
    http_port = free_port() if http else 0
    env = {
        "SESSIONGATE_REDIS_URL": redis_url,
        "SESSIONGATE_GRPC_ADDR": f"127.0.0.1:{port}",
        "SESSIONGATE_METRICS_ADDR": f"127.0.0.1:{free_port()}",
        "SESSIONGATE_HTTP_ADDR": f"127.0.0.1:{http_port}" if http else "",
        "SESSIONGATE_LOG_FORMAT": "json",
        "SESSIONGATE_APP_TOKENS": APP_TOKEN,
        "SESSIONGATE_BILLING_TOKENS": BILLING_TOKEN,
        "SESSIONGATE_ADMIN_TOKENS": ADMIN_TOKEN,
        "SESSIONGATE_WORKERS": str(workers),
        **{f"SESSIONGATE_{k.upper()}": v for k, v in settings.items()},
    }
    exe = str(Path(sys.executable).with_name("sessiongate"))
    proc = Proc([*prefix, exe, "serve"], port, env, workdir / f"{name}.log", http_port)
    try:
        wait_serving(port, timeout=180 if prefix else 30)
        if http:
            wait_http(http_port)
    except Exception:
        proc.stop()
        raise
    return proc


def floor(workdir: Path, prefix: Sequence[str] = (), http: bool = False) -> Proc:
    """The floor server (bench/floor.py); `prefix`: a command to run it under (valgrind);
    `http`: the HTTP floor (an empty /authz handler) instead of the gRPC one."""
    port = free_port()
    args = [*prefix, sys.executable, "-m", "bench.floor", "--port", str(port)]
    if http:
        proc = Proc([*args, "--http"], port, {}, workdir / "floor-http.log", http_port=port)
        wait_http(port, timeout=180 if prefix else 30)
        return proc
    proc = Proc(args, port, {}, workdir / "floor.log")
    wait_serving(port, timeout=180 if prefix else 30)
    return proc
