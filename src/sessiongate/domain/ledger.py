"""An account's ledger: the set of payment events received, and the balances derived from it.

The ledger stores events, not running totals, and derives everything from the whole set on
every read. So the order of arrival never matters: a payment before its invoice, a void
before the issue, a reversal before the payment all end in the same snapshot as the
orderly sequence. Amounts are integer minor units in one currency.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.payment_event import PaymentEvent, PaymentEventType

T = PaymentEventType
_EPOCH_KEY = ""  # sorts before any event id


@dataclass(slots=True, unsafe_hash=True)
class Invoice:
    """A live invoice in a snapshot.
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    invoice_id: str
    amount_minor: int
    due_at: datetime
    open_minor: int  # what is left to pay after payments were allocated oldest first


@dataclass(slots=True, unsafe_hash=True)
class Snapshot:
    """What dunning needs: how much is owed, and since when.
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    currency: str
    balance_minor: int  # owed; 0 when settled (never negative)
    credit_minor: int  # paid beyond every invoice, kept for the next one
    invoices: tuple[Invoice, ...]  # live (not voided) invoices, oldest due first
    failed_payments: int

    @property
    def oldest_open(self) -> Invoice | None:
        return next((i for i in self.invoices if i.open_minor > 0), None)

    @property
    def oldest_due_at(self) -> datetime | None:
        inv = self.oldest_open
        return None if inv is None else inv.due_at


@dataclass(slots=True, unsafe_hash=True)
class Ledger:
    """The events received, by id; a change is a new ledger (`add`, `with_reminder`).
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    currency: str = ""
    events: dict[str, PaymentEvent] = field(default_factory=dict)
    # The last reminder sent: (due date it was about, ordinal). Stored with the ledger so a
    # replayed evaluation finds it and does not remind twice.
    last_reminder: tuple[datetime, int] | None = None

    def __contains__(self, event_id: str) -> bool:
        return event_id in self.events

    def add(self, event: PaymentEvent, account_currency: str) -> Ledger:
        """The ledger with `event` in it. A known event id returns the ledger unchanged."""
        if event.event_id in self.events:
            return self
        currency = self.currency or account_currency
        event_currency = event.currency or currency
        if event_currency != currency:
            raise InvalidArgument(
                "currency", f"{event_currency} differs from the account's currency {currency}")
        events = dict(self.events)
        events[event.event_id] = replace(event, currency=event_currency)
        return replace(self, currency=currency, events=events)

    def differs(self, event: PaymentEvent) -> bool:
        """Whether the ledger holds `event`'s id with other content: a reused event id,
        not a redelivery. Compared as stored: no currency is the ledger's, times to the ms."""
        held = self.events.get(event.event_id)
        return held is not None and _content(held, self.currency) != _content(event,
                                                                              self.currency)

    def with_reminder(self, mark: tuple[datetime, int] | None) -> Ledger:
        if mark == self.last_reminder:
            return self
        # Every field by hand (a sweep marks each account's ledger; `replace` costs ~1 us more).
        return Ledger(currency=self.currency, events=self.events, last_reminder=mark)

    def snapshot(self) -> Snapshot:
        issued: dict[str, PaymentEvent] = {}
        voided: set[str] = set()
        paid = 0
        failed = 0
        payments: dict[str, int] = {}
        reversals: list[PaymentEvent] = []
        for ev in self.events.values():
            if ev.type is T.INVOICE_ISSUED:
                # A re-issued invoice (same invoice id, new event) replaces the older issue.
                prev = issued.get(ev.invoice_id)
                if prev is None or _order(ev) > _order(prev):
                    issued[ev.invoice_id] = ev
            elif ev.type is T.INVOICE_VOIDED:
                voided.add(ev.invoice_id)
            elif ev.type in (T.PAYMENT_SUCCEEDED, T.CREDIT_APPLIED):
                paid += ev.amount_minor
                payments[ev.event_id] = ev.amount_minor
            elif ev.type is T.PAYMENT_REVERSED:
                reversals.append(ev)
            elif ev.type is T.PAYMENT_FAILED:
                failed += 1
        if reversals:
            paid -= _reversed_total(reversals, payments)
        live = [ev for iid, ev in issued.items() if iid not in voided]
        if len(live) > 1:
            live.sort(key=_due_order)
        pool = paid
        billed = 0
        invoices = []
        for ev in live:
            assert ev.due_at is not None  # validated on the way in
            amount = ev.amount_minor
            billed += amount
            take = max(0, min(pool, amount))
            pool -= take
            invoices.append(Invoice(ev.invoice_id, amount, ev.due_at, amount - take))
        return Snapshot(
            currency=self.currency,
            balance_minor=max(0, billed - paid),
            credit_minor=max(0, paid - billed),
            invoices=tuple(invoices),
            failed_payments=failed,
        )


def _content(ev: PaymentEvent, currency: str) -> tuple[object, ...]:
    return (ev.type, ev.invoice_id, ev.amount_minor, ev.currency or currency,
            _to_ms(ev.occurred_at), _to_ms(ev.due_at), ev.payment_id)


def _to_ms(when: datetime | None) -> datetime | None:
    return None if when is None else when.replace(microsecond=when.microsecond // 1000 * 1000)


def _due_order(ev: PaymentEvent) -> tuple[datetime | None, str]:
    return (ev.due_at, ev.invoice_id)


def _order(ev: PaymentEvent) -> tuple[str, str]:
    return (ev.occurred_at.isoformat() if ev.occurred_at else _EPOCH_KEY, ev.event_id)


def _reversed_total(reversals: list[PaymentEvent], payments: dict[str, int]) -> int:
    """A reversal naming a payment takes back at most that payment (all of it by default);
    one naming a payment not received yet waits for it. One without a payment id is a debit."""
    total = 0
    taken: dict[str, int] = {}
    for ev in sorted(reversals, key=lambda e: e.event_id):
        if not ev.payment_id:
            total += ev.amount_minor
            continue
        amount = payments.get(ev.payment_id)
        if amount is None:
            continue
        left = amount - taken.get(ev.payment_id, 0)
        take = min(left, ev.amount_minor or amount)
        taken[ev.payment_id] = taken.get(ev.payment_id, 0) + take
        total += take
    return total
