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


@dataclass
class Stores:
    clock: Clock
    redis: Redis
    scripts: Scripts
    accounts: AccountStore
    cache: NearCache
    # Bulk writes' own client (`client.connect(bulk=True)`); None: they use `redis`.
    bulk_redis: Redis | None = None
