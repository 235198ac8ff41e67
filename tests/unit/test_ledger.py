"""The ledger derives balances from the set of events: arrival order never matters."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.ledger import Ledger
from sessiongate.domain.payment_event import (
    PaymentEvent,
    PaymentEventType,
    event_from_fields,
    new_payment_event,
    parse_type,
)
from sessiongate.store.ledger_codec import decode_ledger, encode_ledger

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def ev(eid: str, kind: str, amount: int = 0, invoice: str = "", due: datetime | None = None,
       payment: str = "", currency: str = "") -> PaymentEvent:
    return new_payment_event(event_id=eid, account_id="acme", type=kind, invoice_id=invoice,
                             amount_minor=amount, due_at=due, payment_id=payment,
                             currency=currency, occurred_at=T0)


def fold(*events: PaymentEvent) -> Ledger:
    ledger = Ledger()
    for e in events:
        ledger = ledger.add(e, "USD")
    return ledger


def test_payments_settle_the_oldest_invoice_first_and_partially() -> None:
    snap = fold(
        ev("i2", "INVOICE_ISSUED", 5000, "inv-2", T0 + 30 * DAY),
        ev("i1", "INVOICE_ISSUED", 3000, "inv-1", T0),
        ev("p1", "PAYMENT_SUCCEEDED", 4000),
    ).snapshot()
    assert snap.balance_minor == 4000
    assert [(i.invoice_id, i.open_minor) for i in snap.invoices] == [("inv-1", 0), ("inv-2", 4000)]
    assert snap.oldest_due_at == T0 + 30 * DAY


def test_partial_payment_keeps_the_oldest_open() -> None:
    snap = fold(ev("i1", "INVOICE_ISSUED", 3000, "inv-1", T0),
                ev("p1", "PAYMENT_SUCCEEDED", 1000)).snapshot()
    assert (snap.balance_minor, snap.oldest_due_at) == (2000, T0)


def test_void_reversal_credit_and_failed_payment() -> None:
    base = [ev("i1", "INVOICE_ISSUED", 3000, "inv-1", T0),
            ev("i2", "INVOICE_ISSUED", 1000, "inv-2", T0 + DAY)]
    assert fold(*base, ev("v1", "INVOICE_VOIDED", invoice="inv-1")).snapshot().balance_minor == 1000
    paid = [*base, ev("p1", "PAYMENT_SUCCEEDED", 4000)]
    assert fold(*paid).snapshot().balance_minor == 0
    reopened = fold(*paid, ev("r1", "PAYMENT_REVERSED", payment="p1")).snapshot()
    assert (reopened.balance_minor, reopened.oldest_due_at) == (4000, T0)
    part = fold(*paid, ev("r1", "PAYMENT_REVERSED", 500, payment="p1")).snapshot()
    assert part.balance_minor == 500
    credited = fold(*base, ev("c1", "CREDIT_APPLIED", 5000)).snapshot()
    assert (credited.balance_minor, credited.credit_minor) == (0, 1000)
    failed = fold(*base, ev("f1", "PAYMENT_FAILED", invoice="inv-1")).snapshot()
    assert (failed.balance_minor, failed.failed_payments) == (4000, 1)


def test_every_arrival_order_ends_in_the_same_snapshot() -> None:
    events = [
        ev("i1", "INVOICE_ISSUED", 3000, "inv-1", T0),
        ev("i2", "INVOICE_ISSUED", 2000, "inv-2", T0 + DAY),
        ev("p1", "PAYMENT_SUCCEEDED", 3000),
        ev("r1", "PAYMENT_REVERSED", 1000, payment="p1"),
        ev("v2", "INVOICE_VOIDED", invoice="inv-2"),
    ]
    snaps = {fold(*perm).snapshot() for perm in itertools.permutations(events)}
    assert len(snaps) == 1
    (snap,) = snaps
    assert (snap.balance_minor, snap.oldest_due_at) == (1000, T0)


def test_a_repeated_event_changes_nothing() -> None:
    once = fold(ev("p1", "PAYMENT_SUCCEEDED", 100))
    assert once.add(ev("p1", "PAYMENT_SUCCEEDED", 100), "USD") is once


def test_a_foreign_currency_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as err:
        fold(ev("i1", "INVOICE_ISSUED", 3000, "inv-1", T0, currency="EUR"))
    assert err.value.field == "currency"


def test_codec_round_trip() -> None:
    ledger = fold(ev("i1", "INVOICE_ISSUED", 3000, "inv-1", T0),
                  ev("r1", "PAYMENT_REVERSED", 10, payment="x")).with_reminder((T0, 3))
    again = decode_ledger(encode_ledger(ledger), "acme")
    assert again == ledger
    assert decode_ledger(None) == Ledger()


@pytest.mark.parametrize("name", ["INVOICE_ISSUED", "PAYMENT_EVENT_TYPE_INVOICE_ISSUED",
                                  "invoice_issued", "1"])
def test_type_names_with_or_without_prefix(name: str) -> None:
    assert parse_type(name) is PaymentEventType.INVOICE_ISSUED


BAD = [
    (dict(event_id=""), "event_id"),
    (dict(account_id="a\x00"), "account_id"),
    (dict(type=0), "type"),
    (dict(type=42), "type"),
    (dict(type="REFUND"), "type"),
    (dict(invoice_id=""), "invoice_id"),
    (dict(amount_minor=-1), "amount_minor"),
    (dict(amount_minor=0), "amount_minor"),
    (dict(currency="dollars"), "currency"),
    (dict(due_at=None), "due_at"),
    (dict(due_at=datetime(2026, 1, 1)), "due_at"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_each_bad_field_is_named(change: dict[str, object], field: str) -> None:
    fields: dict[str, object] = dict(event_id="e1", account_id="acme", type="INVOICE_ISSUED",
                                     invoice_id="inv-1", amount_minor=100, due_at=T0)
    fields.update(change)
    with pytest.raises(InvalidArgument) as err:
        new_payment_event(**fields)  # type: ignore[arg-type]
    assert err.value.field == field


def test_stream_fields_parse_rfc3339_and_unix_seconds() -> None:
    a = event_from_fields({"event_id": "e1", "account_id": "acme", "type": "INVOICE_ISSUED",
                           "invoice_id": "inv-1", "amount_minor": "12000",
                           "due_at": "2026-01-01T00:00:00Z"})
    b = event_from_fields({"event_id": "e1", "account_id": "acme",
                           "type": "PAYMENT_EVENT_TYPE_INVOICE_ISSUED", "invoice_id": "inv-1",
                           "amount_minor": "12000", "due_at": str(int(T0.timestamp()))})
    assert a == b
    assert a.due_at == T0 and a.amount_minor == 12000


@pytest.mark.parametrize(("fields", "field"), [
    ({"amount_minor": "12.5"}, "amount_minor"),
    ({"amount_minor": "1e3"}, "amount_minor"),
    ({"due_at": "yesterday"}, "due_at"),
    ({"due_at": "2026-01-01T00:00:00"}, "due_at"),
    ({"colour": "red"}, "colour"),
    ({"type": ""}, "type"),
])
def test_bad_stream_fields_are_named(fields: dict[str, str], field: str) -> None:
    entry = {"event_id": "e1", "account_id": "acme", "type": "INVOICE_ISSUED",
             "invoice_id": "inv-1", "amount_minor": "100", "due_at": "1767225600"}
    entry.update(fields)
    with pytest.raises(InvalidArgument) as err:
        event_from_fields(entry)
    assert err.value.field == field


def test_a_new_reminder_mark_keeps_the_rest_of_the_ledger() -> None:
    """`with_reminder` builds the ledger field by field (quicker than `replace`): it must name
    every field there is."""
    from dataclasses import fields, replace

    assert {f.name for f in fields(Ledger)} == {"currency", "events", "last_reminder"}, (
        "Ledger has a new field: copy it in Ledger.with_reminder")
    ledger = Ledger().add(ev("inv-1", "INVOICE_ISSUED", 100, "inv-1", T0), "EUR")
    marked = ledger.with_reminder((T0, 2))
    assert marked == replace(ledger, last_reminder=(T0, 2))
    assert marked.events is ledger.events and marked.with_reminder((T0, 2)) is marked
