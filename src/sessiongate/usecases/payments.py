"""A payment event pushed by the billing system over gRPC (Billing.PushPaymentEvent): the
dunning engine applies it; the account it leaves is what the answer reports."""

from __future__ import annotations

from dataclasses import dataclass

from sessiongate.domain.model import Account
from sessiongate.domain.payment_event import PaymentEvent
from sessiongate.ports import Accounts, CacheSeeds
from sessiongate.usecases.dunning import DunningEngine


@dataclass(frozen=True, slots=True)
class Pushed:
    duplicate: bool  # already applied: nothing was written
    account: Account | None  # as committed, else as stored now (None: not found)


class PaymentPushes:
    """Built once by app.py. The stream consumer (billing/consumer.py) calls the engine
    itself: it answers no one, so it neither seeds the near-cache nor reads the account."""

    def __init__(self, engine: DunningEngine, accounts: Accounts, cache: CacheSeeds) -> None:
        self.engine = engine
        self.accounts = accounts
        self.cache = cache

    async def push(self, event: PaymentEvent) -> Pushed:
        """Apply `event` (idempotent by its id); a committed account seeds the near-cache,
        so that this replica's next login sees it at once."""
        applied = await self.engine.apply_event(event)
        account = applied.account
        if account is None:
            account = await self.accounts.get(event.account_id)
        else:
            self.cache.put(account)
        return Pushed(applied.duplicate, account)
