"""The Redis client: one server, or a Redis Cluster.

Cluster mode is chosen by `SESSIONGATE_REDIS_CLUSTER=1` or by a `redis+cluster://` (or
`rediss+cluster://`) URL naming any one node; the client discovers the others. The same code
runs on both because every multi-key command and Lua script touches one slot (`slots.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sessiongate.store.mux import Mux
from sessiongate.store.mux_pipeline import MuxPipeline

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

OPTIONS: dict[str, Any] = dict(
    socket_connect_timeout=1.0, socket_timeout=2.0, health_check_interval=10
)
# The bulk client's (usage streams, `connect(..., bulk=True)`): a bulk write may wait behind
# others' for longer than a login may, and its timeout must not drop the logins' connection.
BULK_SOCKET_TIMEOUT = 30.0


class Client(Redis):
    """redis-py's client, whose hot paths go over one multiplexed connection (`mux.py`): Lua
    calls (`scripts.py`) and non-transactional pipelines (`mux_pipeline.py`); that connection
    closes with the client (`on_close`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_close: list[Callable[[], Awaitable[None]]] = []

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        mux = None if transaction else Mux.of(self)
        if mux is None:
            return super().pipeline(transaction, shard_hint)
        return MuxPipeline(mux, self.connection_pool, self.response_callbacks, transaction,
                           shard_hint)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        closers, self.on_close = self.on_close, []
        for close in closers:
            await close()
        await super().aclose(close_connection_pool)


def cluster_url(url: str) -> tuple[str, bool]:
    """(URL with a plain scheme, whether it asked for cluster mode)."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    if sep and plain is not None:
        return f"{plain}://{rest}", True
    return url, False


def connect(url: str, *, cluster: bool = False, bulk: bool = False) -> Redis:
    """A client for `url`. A RedisCluster is returned typed as `Redis`: the commands that
    sessiongate uses (single-slot commands, EVALSHA, non-transactional pipelines, pub/sub)
    have the same signatures on both, and the servicers need not know which one they hold.
    `bulk`: a client of its own for bulk writes (its own connections and multiplexed
    connection, `BULK_SOCKET_TIMEOUT`), so that they never share fate with logins."""
    url, by_scheme = cluster_url(url)
    options = {**OPTIONS, "socket_timeout": BULK_SOCKET_TIMEOUT} if bulk else OPTIONS
    if cluster or by_scheme:
        return cast(Redis, RedisCluster.from_url(url, **options))
    # After a Redis restart the pool still holds dead connections: the first command on one
    # fails with ConnectionError before anything was executed, so one immediate retry on a
    # fresh connection is safe even for non-idempotent commands. Timeouts are not retried
    # (the command may have run).
    return Client.from_url(
        url, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError], **options
    )


def is_cluster(redis: object) -> bool:
    return isinstance(redis, RedisCluster)
