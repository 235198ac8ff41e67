"""Ledger <-> text, as stored in the account hash's `l` field. Times are integer Unix ms.

Compact (issue #5, Redis memory; ~50 bytes for one invoice, the JSON ~120): a header
`<currency> US <reminded due ms> US <reminded ordinal>`, then per event, sorted by id,
`RS <id> US <type number> US <invoice> US <amount> US <currency> US <occurred ms> US <due ms>
US <payment id>`, empty trailing fields left out, the invoice `%` when it is the event id, the
currency left out when it is the ledger's (`%` when none). Text fields are escaped
(`record.escape`), so `RS <id> US` finds an event: `commit_account.lua` reads a payment event's
id in the ledger as applied, and records it no second time.
"""

from __future__ import annotations

from sessiongate.domain.ledger import Ledger
from sessiongate.domain.payment_event import PaymentEvent, PaymentEventType
from sessiongate.store.codec import from_ms, to_ms
from sessiongate.store.record import RS, US, escape, unescape

_TYPES = {t.value: t for t in PaymentEventType}


def _ms(text: str) -> int | None:
    return int(text) if text else None


# `%` alone is never the escape of a text (a `%` in a text is escaped to `%25`), so it marks
# "the same as the event id" (invoice) or "none" (currency, where "" means the ledger's).
SAME = "%"


def _event_text(e: PaymentEvent, currency: str) -> str:
    inv = SAME if e.invoice_id and e.invoice_id == e.event_id else escape(e.invoice_id)
    cur = "" if e.currency == currency else escape(e.currency) or SAME
    fields = [escape(e.event_id), str(e.type.value), inv,
              str(e.amount_minor) if e.amount_minor else "", cur,
              str(to_ms(e.occurred_at) or ""), str(to_ms(e.due_at) or ""),
              escape(e.payment_id)]
    return US.join(fields).rstrip(US)


def _event_from_text(raw: str, account_id: str, currency: str) -> PaymentEvent:
    parts = raw.split(US)
    if len(parts) != 8:
        parts = [*parts, *[""] * 8][:8]
    eid, kind, inv, amt, cur, at, due, pay = parts
    event_id = unescape(eid)
    return PaymentEvent(
        event_id=event_id,
        account_id=account_id,
        type=_TYPES[int(kind)],
        invoice_id=event_id if inv == SAME else unescape(inv),
        amount_minor=int(amt or 0),
        currency=currency if cur == "" else "" if cur == SAME else unescape(cur),
        occurred_at=from_ms(_ms(at)),
        due_at=from_ms(_ms(due)),
        payment_id=unescape(pay),
    )


def _head(ledger: Ledger) -> str:
    mark = ledger.last_reminder
    return US.join([escape(ledger.currency), "" if mark is None else str(to_ms(mark[0])),
                    "" if mark is None else str(mark[1])]).rstrip(US) or US  # never ""


def encode_ledger(ledger: Ledger) -> str:
    cur = ledger.currency
    return _head(ledger) + "".join(RS + _event_text(e, cur)
                                   for _, e in sorted(ledger.events.items()))


def reencode_ledger(ledger: Ledger, read: Ledger, raw: str | None) -> str:
    """`encode_ledger(ledger)`, where `read` is `decode_ledger(raw)`. Where `ledger` has the
    currency of `read` and its very events, the events' text is `raw`'s, not encoded again:
    all of it when they are the same (a scheduled evaluation moves the reminder mark only),
    all but one new event's, put in its place by id, when that is the difference (a payment
    event). The header is made anew."""
    if not raw or ledger.currency != read.currency:
        return encode_ledger(ledger)
    if ledger.events is read.events:
        cut = raw.find(RS)
        return _head(ledger) + ("" if cut < 0 else raw[cut:])
    added = _one_added(ledger, read)
    if added is None:
        return encode_ledger(ledger)
    texts = raw.split(RS)[1:]
    at = len(texts)
    for i, text in enumerate(texts):  # sorted by id, as encode_ledger writes them
        end = text.find(US)
        if unescape(text if end < 0 else text[:end]) > added.event_id:
            at = i
            break
    texts.insert(at, _event_text(added, ledger.currency))
    return _head(ledger) + RS + RS.join(texts)


def _one_added(ledger: Ledger, read: Ledger) -> PaymentEvent | None:
    """The one event `ledger` has beyond `read`'s, if the rest are `read`'s very events."""
    events, before = ledger.events, read.events
    if len(events) != len(before) + 1:
        return None
    added = None
    for eid, e in events.items():
        if before.get(eid) is not e:
            if added is not None or eid in before:
                return None
            added = e
    return added


def decode_ledger(raw: str | bytes | None, account_id: str = "") -> Ledger:
    if not raw:
        return Ledger()
    text = raw.decode() if isinstance(raw, bytes) else raw
    head, *events = text.split(RS)
    cur_text, mark_ms, mark_n = [*head.split(US), "", ""][:3]
    cur = unescape(cur_text)
    due = from_ms(_ms(mark_ms))
    by_id: dict[str, PaymentEvent] = {}
    for item in events:
        e = _event_from_text(item, account_id, cur)
        by_id[e.event_id] = e
    return Ledger(currency=cur, events=by_id,
                  last_reminder=None if due is None else (due, int(mark_n)))
