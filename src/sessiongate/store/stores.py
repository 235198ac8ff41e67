"""`Stores`: the Redis side of the process, built once by app.py and shared by its parts.

What the billing loop needs (and the servicers' `Runtime` extends with its gRPC parts), so that
billing depends on the stores and the domain only, never on the gRPC layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from sessiongate.domain.clock import Clock
from sessiongate.store.accounts import AccountStore
from sessiongate.store.nearcache import NearCache
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport


@dataclass
class Stores:
    clock: Clock
    # The stores' transport (`client.transport`), and redis-py's client for the billing
    # workers' stream commands (`client.connect`).
    transport: Transport
    redis: Redis
    scripts: Scripts
    accounts: AccountStore
    cache: NearCache
    # Bulk writes' own transport (`client.transport(bulk=True)`); None: they use `transport`.
    bulk_transport: Transport | None = None
