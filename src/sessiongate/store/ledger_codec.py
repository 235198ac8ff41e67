"""Ledger <-> JSON, as stored at `keys.ledger(account)`. Times are integer Unix milliseconds.

Compact (issue #5, Redis memory): short names, the event type as its proto enum number, an
event's currency only when it differs from the ledger's, no `null`s. The former format (long
names, type names) still decodes: ledgers written before it keep working.
"""

from __future__ import annotations

import json
from typing import Any

from sessiongate.domain.ledger import Ledger
from sessiongate.domain.payment_event import PaymentEvent, PaymentEventType
from sessiongate.store.codec import from_ms, to_ms


def _event_to_dict(e: PaymentEvent, currency: str) -> dict[str, Any]:
    d: dict[str, Any] = {"t": e.type.value}
    for key, value in (("inv", e.invoice_id), ("amt", e.amount_minor),
                       ("at", to_ms(e.occurred_at)), ("due", to_ms(e.due_at)),
                       ("pay", e.payment_id)):
        if value:
            d[key] = value
    if e.currency != currency:
        d["cur"] = e.currency
    return d


def _event_from_dict(event_id: str, account_id: str, d: dict[str, Any],
                     currency: str) -> PaymentEvent:
    t = d["t"]
    return PaymentEvent(
        event_id=event_id,
        account_id=account_id,
        type=PaymentEventType(t) if isinstance(t, int) else PaymentEventType[t],
        invoice_id=d.get("inv", ""),
        amount_minor=int(d.get("amt", 0)),
        currency=d.get("cur", currency),
        occurred_at=from_ms(d.get("at")),
        due_at=from_ms(d.get("due")),
        payment_id=d.get("pay", ""),
    )


def encode_ledger(ledger: Ledger) -> str:
    d: dict[str, Any] = {"c": ledger.currency, "e": {
        eid: _event_to_dict(e, ledger.currency) for eid, e in sorted(ledger.events.items())}}
    mark = ledger.last_reminder
    if mark is not None:
        d["r"] = [to_ms(mark[0]), mark[1]]
    return json.dumps(d, separators=(",", ":"))


def decode_ledger(raw: str | bytes | None, account_id: str = "") -> Ledger:
    if not raw:
        return Ledger()
    d = json.loads(raw)
    if "events" in d or "cur" in d:  # the former format: every event names its currency
        currency = d.get("cur", "")
        events = {eid: _event_from_dict(eid, account_id, {"cur": "", **e}, currency)
                  for eid, e in d.get("events", {}).items()}
        mark = d.get("reminded")
    else:
        currency = d.get("c", "")
        events = {eid: _event_from_dict(eid, account_id, e, currency)
                  for eid, e in d.get("e", {}).items()}
        mark = d.get("r")
    due = None if mark is None else from_ms(mark[0])
    return Ledger(
        currency=currency,
        events=events,
        last_reminder=None if due is None else (due, int(mark[1])),
    )
