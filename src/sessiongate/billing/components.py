"""The billing loop's long-running parts, as app components (started after the server)."""

from __future__ import annotations

from typing import Any

from sessiongate.billing.consumer import BLOCK_MS, PaymentConsumer
from sessiongate.billing.scheduler import DunningScheduler, Sweeper
from sessiongate.config import Settings
from sessiongate.store.stores import Stores
from sessiongate.usecases.dunning import DunningEngine


def billing_components(s: Settings, stores: Stores, engine: DunningEngine) -> list[Any]:
    """The dunning scheduler and the payment-stream consumer (`settings.scheduler`), on the
    process's one dunning engine."""
    return [
        DunningScheduler(Sweeper(stores.transport, engine, stores.clock,
                                 share=(s.worker_index, s.workers)), s.sweep_interval),
        PaymentConsumer(stores.stream_transport(BLOCK_MS / 1000), engine,
                        consumer=s.consumer_name, claim_idle_ms=int(s.payment_claim_idle * 1000)),
    ]
