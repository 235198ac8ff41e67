"""What the servicers share: settings, clock, Redis, stores, near-cache, auth, observer."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from sessiongate.config import Settings
from sessiongate.domain.clock import Clock
from sessiongate.service.auth import Authenticator
from sessiongate.service.rpc import Observer
from sessiongate.store.accounts import AccountStore
from sessiongate.store.nearcache import NearCache
from sessiongate.store.scripts import Scripts


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    redis: Redis
    scripts: Scripts
    accounts: AccountStore
    cache: NearCache
    auth: Authenticator
    observer: Observer
    # Bulk writes' own client (`client.connect(bulk=True)`); None: they use `redis`.
    bulk_redis: Redis | None = None
