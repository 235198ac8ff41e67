"""What the servicers share: settings, clock, Redis (the stores' transport, and redis-py's
client for the billing workers' streams), stores, near-cache, auth, observer."""

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
from sessiongate.store.transport import Transport


@dataclass
class Runtime:
    settings: Settings
    clock: Clock
    redis: Redis
    transport: Transport
    scripts: Scripts
    accounts: AccountStore
    cache: NearCache
    auth: Authenticator
    observer: Observer
