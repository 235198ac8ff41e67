"""Issue #5, Redis memory per account: compact encodings, and the former ones still read."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

from sessiongate.domain.model import Account, AccountKind, AccountState, StateOverride
from sessiongate.store.activity import (
    decode_seat_change,
    encode_seat_change,
    split_month,
)
from sessiongate.store.codec import decode_account, encode_account

T = datetime(2026, 10, 5, 9, 30, 15, 250000, tzinfo=UTC)
USERS = frozenset(f"user-{i}" for i in range(10))


def test_a_typical_account_takes_less_than_half_the_former_bytes() -> None:
    a = Account("mem-00000", users=USERS, seat_limit=10, state_since=T, balance_minor=12000,
                oldest_due_at=T, suspends_at=T, next_evaluation_at=T, version=2)
    data = encode_account(a)
    assert decode_account(data, 2) == a
    assert len(data) <= 210  # the former format: 450 bytes
    assert set(json.loads(data)) == {"i", "u", "s", "si", "b", "d", "su", "n"}  # no defaults


def test_every_field_round_trips_including_empty_and_non_default_values() -> None:
    over = StateOverride(AccountState.CLOSED, "chargeback", "ops", T, T)
    full = Account("a", kind=AccountKind.CONSUMER, users=frozenset({"u"}), policy_id="fast",
                   plan_id="pro", exempt=True, seat_limit=3, parent_id="p",
                   admin_emails=("x@y.test",), time_zone="Europe/Paris", currency="",
                   derived_state=AccountState.GRACE, state_since=T, override=over,
                   balance_minor=-5, oldest_due_at=T, suspends_at=T, next_evaluation_at=T,
                   extra={"k": "v"})
    assert decode_account(encode_account(full), 9) == replace(full, version=9)
    bare = Account("b", override=StateOverride(AccountState.SUSPENDED, "", "", T))
    assert decode_account(encode_account(bare), 0) == bare


def test_the_former_account_json_still_decodes() -> None:
    """Exactly what the release before the compact format wrote."""
    legacy = (
        '{"id":"acme","kind":"CONSUMER","users":["alice","bob"],"policy":"fast","plan":"",'
        '"exempt":false,"seats":2,"parent":"","admins":["b@acme.test"],"tz":"UTC",'
        '"cur":"EUR","state":"GRACE","since":1790000000000,"override":{"state":"SUSPENDED",'
        '"reason":"chargeback","actor":"ops","set_at":1790000000000,"expires_at":null},'
        '"balance":12000,"due":1790000000000,"suspends":null,"next_eval":1790000001000,'
        '"extra":{"crm":"42"}}'
    )
    at = datetime.fromtimestamp(1_790_000_000, UTC)
    a = decode_account(legacy, 7)
    assert a == Account(
        "acme", kind=AccountKind.CONSUMER, users=frozenset({"alice", "bob"}), policy_id="fast",
        seat_limit=2, admin_emails=("b@acme.test",), currency="EUR",
        derived_state=AccountState.GRACE, state_since=at,
        override=StateOverride(AccountState.SUSPENDED, "chargeback", "ops", at),
        balance_minor=12000, oldest_due_at=at,
        next_evaluation_at=datetime.fromtimestamp(1_790_000_001, UTC), version=7,
        extra={"crm": "42"})
    assert decode_account(encode_account(a), 7) == a
    assert len(encode_account(a)) < len(legacy)


def test_month_fields_split_by_kind() -> None:
    got = split_month("2026-10", {
        "t:exports": "5", "n:exports": "2", "d:2026-10-05:exports": "5",
        "l:05:n1": "1", "l:05:n2": "1", "l:06:n3": "1",
        "a:05:alice": "1", "a:05:bob:x": "1", "p:05": "2",
    })
    assert got.usage == {"t:exports": 5, "n:exports": 2, "d:2026-10-05:exports": 5}
    assert got.logins == {"2026-10-05": 2, "2026-10-06": 1}
    assert got.active == {("2026-10-05", "alice"), ("2026-10-05", "bob:x")}
    assert got.peaks == {"2026-10-05": 2}


def test_seat_changes_round_trip() -> None:
    entry = encode_seat_change(3, 1_790_000_000_123, ["bob", "alice", "#1"])
    assert len(entry) < len('{"v":3,"seats":["#1","alice","bob"]}') + 13
    assert decode_seat_change(entry.encode()) == (3, 1_790_000_000_123,
                                                  frozenset({"alice", "bob", "#1"}))
    assert decode_seat_change(encode_seat_change(4, 5, [])) == (4, 5, frozenset())


def test_the_former_ledger_json_still_decodes_and_the_compact_one_round_trips() -> None:
    from sessiongate.domain.ledger import Ledger
    from sessiongate.domain.payment_event import PaymentEvent, PaymentEventType
    from sessiongate.store.ledger_codec import decode_ledger, encode_ledger

    legacy = (
        '{"cur":"USD","events":{"inv-1-issued":{"t":"INVOICE_ISSUED","inv":"inv-1",'
        '"amt":12000,"cur":"USD","due":1790000000000},"pay-1":{"t":"PAYMENT_SUCCEEDED",'
        '"amt":500,"at":1790000001000},"rev-1":{"t":"PAYMENT_REVERSED","pay":"pay-1",'
        '"cur":"EUR"}},"reminded":[1790000000000,2]}'
    )
    at = datetime.fromtimestamp(1_790_000_000, UTC)
    ledger = decode_ledger(legacy, "acme")
    assert ledger == Ledger(currency="USD", events={
        "inv-1-issued": PaymentEvent("inv-1-issued", "acme", PaymentEventType.INVOICE_ISSUED,
                                     invoice_id="inv-1", amount_minor=12000, currency="USD",
                                     due_at=at),
        "pay-1": PaymentEvent("pay-1", "acme", PaymentEventType.PAYMENT_SUCCEEDED,
                              amount_minor=500,
                              occurred_at=datetime.fromtimestamp(1_790_000_001, UTC)),
        "rev-1": PaymentEvent("rev-1", "acme", PaymentEventType.PAYMENT_REVERSED,
                              payment_id="pay-1", currency="EUR"),
    }, last_reminder=(at, 2))
    compact = encode_ledger(ledger)
    assert decode_ledger(compact, "acme") == ledger  # "" and "EUR" currencies kept apart
    assert len(compact) < len(legacy) - 40
    assert decode_ledger(encode_ledger(Ledger()), "acme") == Ledger()
