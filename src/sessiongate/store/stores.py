"""`Stores`: the Redis side of the process, built once by app.py and shared by its parts.

What the billing loop needs (and the servicers' `Runtime` extends with its gRPC parts), so that
billing depends on the stores and the domain only, never on the gRPC layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sessiongate.domain.clock import Clock
from sessiongate.store.accounts import AccountStore
from sessiongate.store.nearcache import NearCache
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport
from sessiongate.store.usage import UsageStore


@dataclass
class Stores:
    clock: Clock
    transport: Transport  # the stores' (`client.transport`)
    # A new transport for one stream worker, its blocking reads of up to the given seconds
    # on connections of their own (`client.transport(block=...)`); app.py closes it at stop.
    stream_transport: Callable[[float], Transport]
    scripts: Scripts
    accounts: AccountStore
    cache: NearCache
    usage: UsageStore  # the usage log, seat logs and month records
    # Bulk writes' own transport (`client.transport(bulk=True)`); None: they use `transport`.
    bulk_transport: Transport | None = None
