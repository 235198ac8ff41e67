"""Ledger <-> JSON, as stored at `keys.ledger(account)`. Times are integer Unix milliseconds.

Absent values are left out, `reminded` included (issue #5, Redis memory); the names stay those
the former release reads, so both releases can share a Redis during a rolling upgrade.
"""

from __future__ import annotations

import json
from typing import Any

from sessiongate.domain.ledger import Ledger
from sessiongate.domain.payment_event import PaymentEvent, PaymentEventType
from sessiongate.store.codec import from_ms, to_ms


def _event_to_dict(e: PaymentEvent) -> dict[str, Any]:
    d: dict[str, Any] = {"t": e.type.name}
    for key, value in (("inv", e.invoice_id), ("amt", e.amount_minor), ("cur", e.currency),
                       ("at", to_ms(e.occurred_at)), ("due", to_ms(e.due_at)),
                       ("pay", e.payment_id)):
        if value:
            d[key] = value
    return d


def _event_from_dict(event_id: str, account_id: str, d: dict[str, Any]) -> PaymentEvent:
    return PaymentEvent(
        event_id=event_id,
        account_id=account_id,
        type=PaymentEventType[d["t"]],
        invoice_id=d.get("inv", ""),
        amount_minor=int(d.get("amt", 0)),
        currency=d.get("cur", ""),
        occurred_at=from_ms(d.get("at")),
        due_at=from_ms(d.get("due")),
        payment_id=d.get("pay", ""),
    )


def encode_ledger(ledger: Ledger) -> str:
    d: dict[str, Any] = {
        "cur": ledger.currency,
        "events": {eid: _event_to_dict(e) for eid, e in sorted(ledger.events.items())},
    }
    mark = ledger.last_reminder
    if mark is not None:
        d["reminded"] = [to_ms(mark[0]), mark[1]]
    return json.dumps(d, separators=(",", ":"))


def decode_ledger(raw: str | bytes | None, account_id: str = "") -> Ledger:
    if not raw:
        return Ledger()
    d = json.loads(raw)
    mark = d.get("reminded")
    due = None if mark is None else from_ms(mark[0])
    return Ledger(
        currency=d.get("cur", ""),
        events={eid: _event_from_dict(eid, account_id, e)
                for eid, e in d.get("events", {}).items()},
        last_reminder=None if due is None else (due, int(mark[1])),
    )
