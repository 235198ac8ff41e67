"""The billing loop's long-running parts, as app components (started after the server)."""

from __future__ import annotations

from typing import Any

from sessiongate.billing.consumer import PaymentConsumer
from sessiongate.billing.engine import DunningEngine
from sessiongate.billing.scheduler import DunningScheduler, Sweeper
from sessiongate.service.runtime import Runtime
from sessiongate.store.policies import PolicyStore


def billing_components(rt: Runtime) -> list[Any]:
    """The dunning scheduler and the payment-stream consumer (`settings.scheduler`)."""
    engine = DunningEngine(rt.accounts, PolicyStore(rt.transport), rt.clock.now)
    s = rt.settings
    return [
        DunningScheduler(Sweeper(rt.redis, engine, rt.clock,
                                 share=(s.worker_index, s.workers)), s.sweep_interval),
        PaymentConsumer(rt.redis, engine, consumer=s.consumer_name,
                        claim_idle_ms=int(s.payment_claim_idle * 1000)),
    ]
