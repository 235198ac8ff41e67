"""Issue #5, Redis memory per account: compact encodings, read by this release and the former.

The former release's decoders are copied here verbatim (commit 70e5fb2): replicas of both
releases share one Redis during a rolling upgrade, so each must read what the other writes.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from sessiongate.domain.model import Account, AccountKind, AccountState, StateOverride
from sessiongate.domain.proration import Seats
from sessiongate.store.activity import (
    decode_seat_change,
    encode_seat_change,
    split_month,
)
from sessiongate.store.codec import decode_account, encode_account, from_ms

T = datetime(2026, 10, 5, 9, 30, 15, 250000, tzinfo=UTC)
USERS = frozenset(f"user-{i}" for i in range(10))


# --- the former release's decoders, verbatim ----------------------------------------------

def _former_override(d: dict[str, Any] | None) -> StateOverride | None:
    if not d:
        return None
    set_at = from_ms(d["set_at"])
    assert set_at is not None
    return StateOverride(state=AccountState(d["state"]), reason=d.get("reason", ""),
                         actor=d.get("actor", ""), set_at=set_at,
                         expires_at=from_ms(d.get("expires_at")))


def former_decode_account(data: str | bytes, version: int) -> Account:
    d = json.loads(data)
    return Account(
        account_id=d["id"], kind=AccountKind(d.get("kind", "ENTERPRISE")),
        users=frozenset(d.get("users", ())), policy_id=d.get("policy", ""),
        plan_id=d.get("plan", ""), exempt=bool(d.get("exempt", False)),
        seat_limit=int(d.get("seats", 0)), parent_id=d.get("parent", ""),
        admin_emails=tuple(d.get("admins", ())), time_zone=d.get("tz", "UTC"),
        currency=d.get("cur", "USD"), derived_state=AccountState(d.get("state", "ACTIVE")),
        state_since=from_ms(d.get("since")), override=_former_override(d.get("override")),
        balance_minor=int(d.get("balance", 0)), oldest_due_at=from_ms(d.get("due")),
        suspends_at=from_ms(d.get("suspends")), next_evaluation_at=from_ms(d.get("next_eval")),
        version=version, extra=dict(d.get("extra", {})),
    )


# --- accounts ------------------------------------------------------------------------------

TYPICAL = Account("mem-00000", users=USERS, seat_limit=10, state_since=T, balance_minor=12000,
                  oldest_due_at=T, suspends_at=T, next_evaluation_at=T, version=2)
FULL = Account("a", kind=AccountKind.CONSUMER, users=frozenset({"u"}), policy_id="fast",
               plan_id="pro", exempt=True, seat_limit=3, parent_id="p",
               admin_emails=("x@y.test",), time_zone="Europe/Paris", currency="",
               derived_state=AccountState.GRACE, state_since=T,
               override=StateOverride(AccountState.CLOSED, "chargeback", "ops", T, T),
               balance_minor=-5, oldest_due_at=T, suspends_at=T, next_evaluation_at=T,
               extra={"k": "v"}, version=9)
BARE = Account("b", override=StateOverride(AccountState.SUSPENDED, "", "", T))


def test_a_typical_account_leaves_its_defaults_out() -> None:
    data = encode_account(TYPICAL)
    assert set(json.loads(data)) == {"id", "users", "seats", "since", "balance", "due",
                                     "suspends", "next_eval"}
    assert len(data) <= 240  # the former format: 450 bytes


def test_both_releases_read_every_account_the_same() -> None:
    for a in (TYPICAL, FULL, BARE):
        data = encode_account(a)
        assert decode_account(data, a.version) == a
        assert former_decode_account(data, a.version) == a


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
    assert decode_account(encode_account(FULL), 3) == replace(FULL, version=3)


# --- month records and seat changes --------------------------------------------------------

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
    roster = Seats(frozenset({"bob", "alice", "#1"}))
    entry = encode_seat_change(3, 1_790_000_000_123, roster)
    assert entry == "3\x1f1790000000123\x1f#1\x1falice\x1fbob"
    assert decode_seat_change(entry.encode()) == (3, 1_790_000_000_123, roster)
    assert decode_seat_change(encode_seat_change(4, 5, Seats())) == (4, 5, Seats())


def test_anonymous_seats_are_one_token_however_many() -> None:
    entry = encode_seat_change(7, 9, Seats(anonymous=1_000_000))
    assert entry == "7\x1f9\x1f\x1d1000000"
    assert decode_seat_change(entry) == (7, 9, Seats(anonymous=1_000_000))


def test_the_new_keys_share_their_account_slot() -> None:
    """take_seat.lua and record_usage.lua touch the month hash with the lease sets / events."""
    from sessiongate.store import keys
    from sessiongate.store.slots import key_slot

    for aid in ("acme", "mem-00000", "x" * 128):
        slots = {key_slot(k) for k in (keys.account(aid), keys.seats(aid), keys.sessions(aid),
                                       keys.usage(aid, "2026-10"), keys.seat_changes(aid),
                                       keys.usage_events(aid))}
        assert len(slots) == 1


def _former_encode_account(a: Account) -> str:
    """encode_account before it was written out field by field (commit fd742a4), verbatim."""
    from sessiongate.store.codec import _override_to_dict, to_ms

    d: dict[str, Any] = {"id": a.account_id}
    for key, value, default in (
        ("kind", a.kind.value, AccountKind.ENTERPRISE.value),
        ("users", sorted(a.users), []),
        ("policy", a.policy_id, ""),
        ("plan", a.plan_id, ""),
        ("exempt", a.exempt, False),
        ("seats", a.seat_limit, 0),
        ("parent", a.parent_id, ""),
        ("admins", list(a.admin_emails), []),
        ("tz", a.time_zone, "UTC"),
        ("cur", a.currency, "USD"),
        ("state", a.derived_state.value, AccountState.ACTIVE.value),
        ("since", to_ms(a.state_since), None),
        ("override", None if a.override is None else _override_to_dict(a.override), None),
        ("balance", a.balance_minor, 0),
        ("due", to_ms(a.oldest_due_at), None),
        ("suspends", to_ms(a.suspends_at), None),
        ("next_eval", to_ms(a.next_evaluation_at), None),
        ("extra", a.extra, {}),
    ):
        if value != default:
            d[key] = value
    return json.dumps(d, separators=(",", ":"))


def test_accounts_encode_byte_for_byte_as_before() -> None:
    """Every field alone away from its default, and all of them: the same text as the
    former encoder's, and it reads back (with the enums' lookups) as written."""
    changes: list[dict[str, Any]] = [
        {"kind": AccountKind.CONSUMER}, {"users": frozenset({"b", "a"})}, {"policy_id": "p"},
        {"plan_id": "q"}, {"exempt": True}, {"seat_limit": 4}, {"seat_limit": -1},
        {"parent_id": "x"}, {"admin_emails": ("a@b.test",)}, {"time_zone": "Asia/Tokyo"},
        {"currency": ""}, {"currency": "EUR"}, {"derived_state": AccountState.SUSPENDED},
        {"state_since": T}, {"override": StateOverride(AccountState.CLOSED, "", "", T)},
        {"balance_minor": 1}, {"balance_minor": -1}, {"oldest_due_at": T},
        {"suspends_at": T}, {"next_evaluation_at": T}, {"extra": {"k": "v"}},
        {"state_since": T.replace(tzinfo=None)},
    ]
    for a in (TYPICAL, FULL, BARE, Account("z"), *(replace(BARE, **c) for c in changes)):
        assert encode_account(a) == _former_encode_account(a), a
        assert decode_account(encode_account(a), a.version) == former_decode_account(
            encode_account(a), a.version)
    for a in (TYPICAL, FULL, BARE, *(replace(Account("z"), **c) for c in changes[:-1])):
        assert decode_account(encode_account(a), a.version) == a


def test_an_unknown_kind_or_state_is_refused_as_before() -> None:
    for data in ('{"id":"a","kind":"BOGUS"}', '{"id":"a","state":"BOGUS"}',
                 '{"id":"a","kind":["x"]}', '{"id":"a","state":null}'):
        try:
            former_decode_account(data, 1)
        except Exception as exc:
            expected: type[Exception] = type(exc)
        with pytest.raises(expected):
            decode_account(data, 1)
