"""The Redis clients: the stores' transport (`transport`), and redis-py's for the billing
workers' stream commands (`connect`); one server, or a Redis Cluster.

Cluster mode is chosen by `SESSIONGATE_REDIS_CLUSTER=1` or by a `redis+cluster://` (or
`rediss+cluster://`) URL naming any one node; the client discovers the others. The same code
runs on both because every multi-key command and Lua script touches one slot (`slots.py`).
"""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from sessiongate.store.cluster import ClusterTransport
from sessiongate.store.mux import Mux
from sessiongate.store.transport import Transport

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

OPTIONS: dict[str, Any] = dict(
    socket_connect_timeout=1.0, socket_timeout=2.0, health_check_interval=10
)
# The bulk transport's (usage streams, `transport(..., bulk=True)`): a bulk write may wait
# behind others' for longer than a login may, and its timeout must not drop the logins'
# connection.
BULK_SOCKET_TIMEOUT = 30.0


def cluster_url(url: str) -> tuple[str, bool]:
    """(URL with a plain scheme, whether it asked for cluster mode)."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    if sep and plain is not None:
        return f"{plain}://{rest}", True
    return url, False


def connect(url: str, *, cluster: bool = False) -> Redis:
    """A client for `url`. A RedisCluster is returned typed as `Redis`: the commands that
    sessiongate uses (single-slot commands, EVALSHA, non-transactional pipelines, pub/sub)
    have the same signatures on both, and the servicers need not know which one they hold."""
    url, by_scheme = cluster_url(url)
    if cluster or by_scheme:
        return cast(Redis, RedisCluster.from_url(url, **OPTIONS))
    # After a Redis restart the pool still holds dead connections: the first command on one
    # fails with ConnectionError before anything was executed, so one immediate retry on a
    # fresh connection is safe even for non-idempotent commands. Timeouts are not retried
    # (the command may have run).
    return Redis.from_url(
        url, retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError], **OPTIONS
    )


def transport(url: str, *, cluster: bool = False, bulk: bool = False) -> Transport:
    """The stores' transport for `url`: the one place that picks it. `bulk`: one of its own
    for bulk writes (its own connections, `BULK_SOCKET_TIMEOUT`), so that they never share
    fate with logins."""
    url, by_scheme = cluster_url(url)
    options = {**OPTIONS, "socket_timeout": BULK_SOCKET_TIMEOUT} if bulk else OPTIONS
    if cluster or by_scheme:
        return ClusterTransport(url, **options)
    return Mux(url, **options)
