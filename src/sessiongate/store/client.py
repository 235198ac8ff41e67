"""The Redis transports (`transport`), one server or a Redis Cluster: the one place that picks
the implementation.

Cluster mode is chosen by `SESSIONGATE_REDIS_CLUSTER=1` or by a `redis+cluster://` (or
`rediss+cluster://`) URL naming any one node; the client discovers the others. The same code
runs on both because every multi-key command and Lua script touches one slot (`slots.py`).
"""

from __future__ import annotations

from typing import Any

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


def transport(url: str, *, cluster: bool = False, bulk: bool = False, block: float = 0.0,
              timeout: float | None = None) -> Transport:
    """A transport for `url`. Each call makes one with connections of its own, so that what
    it carries never shares fate with the logins':
    - `bulk`: bulk writes, with `BULK_SOCKET_TIMEOUT`;
    - `block`: one stream worker's blocking reads (XREADGROUP ... BLOCK) of up to `block`
      seconds: the usual timeout on top of that (on one server, a blocking read holds its
      connection: none other may share it);
    - `timeout`: that reply timeout instead of the usual one (the metrics scrape's)."""
    url, by_scheme = cluster_url(url)
    seconds = BULK_SOCKET_TIMEOUT if bulk else timeout or OPTIONS["socket_timeout"] + block
    options = {**OPTIONS, "socket_timeout": seconds}
    if cluster or by_scheme:
        return ClusterTransport(url, **options)
    return Mux(url, **options)
