"""Issue #5, Redis memory: the account hash's compact fields read back exactly what was written.

The ledger's text decides dunning and idempotency, a history entry is what GetAccountHistory
answers: any value must survive, separators and `%` in ids included.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from sessiongate.domain.ledger import Ledger
from sessiongate.domain.payment_event import PaymentEvent, PaymentEventType
from sessiongate.store.ledger_codec import decode_ledger, encode_ledger, reencode_ledger
from sessiongate.store.record import (
    RS,
    US,
    applied_in,
    decode_history,
    encode_history,
    escape,
    in_compact_ledger,
    unescape,
)

T = datetime(2026, 10, 5, 9, 30, 15, 250000, tzinfo=UTC)
ids = st.text(min_size=1, max_size=12)
# Milliseconds, as stored (to year 2096: codec.from_ms goes through a float).
times = st.none() | st.integers(1, 4 * 10**12).map(
    lambda ms: datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))


@st.composite
def ledgers(draw: st.DrawFn) -> Ledger:
    cur = draw(st.sampled_from(["USD", "EUR", "", "%", "-"]))
    events = {}
    for eid in draw(st.lists(ids, max_size=6, unique=True)):
        events[eid] = PaymentEvent(
            event_id=eid, account_id="acme", type=draw(st.sampled_from(list(PaymentEventType))),
            invoice_id=draw(st.sampled_from(["", eid, "%", "inv-1"]) | ids),
            amount_minor=draw(st.integers(-10**15, 10**15)),
            currency=draw(st.sampled_from([cur, "", "EUR", "%", "-"])),
            occurred_at=draw(times), due_at=draw(times),
            payment_id=draw(st.sampled_from(["", "pay-1"]) | ids))
    mark = draw(st.none() | st.tuples(times.filter(lambda t: t is not None),
                                      st.integers(0, 99)))
    return Ledger(currency=cur, events=events, last_reminder=mark)  # type: ignore[arg-type]


@given(ledgers())
def test_a_ledger_reads_back_the_same(ledger: Ledger) -> None:
    text = encode_ledger(ledger)
    assert text  # "" means "leave the ledger" to commit_account.lua
    assert decode_ledger(text, "acme") == ledger
    for eid in ledger.events:
        assert in_compact_ledger(text, eid)
        assert f"{RS}{escape(eid)}{US}" in text


def test_a_typical_ledger_is_short_and_finds_only_its_events() -> None:
    due = datetime.fromtimestamp(1_796_308_334, UTC)
    ledger = Ledger("USD", {"mem-00000-inv": PaymentEvent(
        "mem-00000-inv", "acme", PaymentEventType.INVOICE_ISSUED, "mem-00000-inv", 12000, "USD",
        due_at=due)})
    text = encode_ledger(ledger)
    assert text == "USD\x1emem-00000-inv\x1f1\x1f%\x1f12000\x1f\x1f\x1f1796308334000"
    assert not in_compact_ledger(text, "mem-00000")
    assert not in_compact_ledger(text, "USD")
    assert encode_ledger(Ledger()) == US


@given(st.text())
def test_escaped_text_has_no_separator_and_reads_back(text: str) -> None:
    assert RS not in escape(text) and US not in escape(text)
    assert unescape(escape(text)) == text


def test_applied_events_are_found_by_whole_id() -> None:
    field = f"{RS}a%25b{US}1{RS}c{US}2"
    assert applied_in(field, "a%b") and applied_in(field, "c")
    assert not applied_in(field, "a") and not applied_in(field, "b") and not applied_in(None, "c")


@given(st.fixed_dictionaries({
    "at": st.integers(0, 2 * 10**17).map(
        lambda us: (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)).isoformat()),
    "from": st.none() | st.sampled_from(["ACTIVE", "GRACE"]),
    "to": st.sampled_from(["ACTIVE", "SUSPENDED"]),
    "cause": st.text(), "actor": st.text(),
}, optional={"event_id": st.text()}))
def test_a_history_entry_reads_back_the_same(entry: dict[str, object]) -> None:
    text = encode_history(entry)
    assert RS not in text
    got = decode_history(text)
    assert {"event_id": "", **got} == {"event_id": "", **entry}  # "" when absent: the same


def test_a_usual_history_entry_is_compact_and_others_stay_json() -> None:
    entry = {"at": T.isoformat(), "from": None, "to": "ACTIVE", "cause": "account created",
             "actor": "admin"}
    assert encode_history(entry) == "1791192615250000\x1f\x1fACTIVE\x1faccount created\x1fadmin"
    odd = {"at": "2026-10-05T11:30:15+02:00", "to": "CLOSED", "note": 1}
    assert json.loads(encode_history(odd)) == odd
    assert decode_history(encode_history(odd)) == odd


def test_every_key_a_script_touches_shares_the_account_slot() -> None:
    """commit_account.lua (5 keys), take_seat.lua / end_session.lua (leases, the month's
    usage), log_seats.lua: one slot each, so they run on Redis Cluster."""
    from sessiongate.store import keys
    from sessiongate.store.slots import key_slot

    for aid in ("acme", "mem-00000", "x" * 128):
        names = (keys.account(aid), keys.applied_events(aid), keys.due_index_of(aid),
                 keys.outbox_of(aid), keys.history_archive(aid), keys.seat_changes(aid),
                 keys.leases(aid), keys.usage(aid, "2026-10"))
        assert len({key_slot(k) for k in names}) == 1
        assert len(set(names)) == len(names)


def test_commit_keys_are_the_keys_of_each_name() -> None:
    """`keys.commit_keys` (the tag computed once) names what each function names."""
    from sessiongate.store import keys

    for aid in ("acme", "mem-00000", "x" * 128, "a:b{c}"):
        assert keys.commit_keys(aid) == [
            keys.account(aid), keys.applied_events(aid), keys.due_index_of(aid),
            keys.outbox_of(aid), keys.history_archive(aid)]


@given(ledgers(), st.none() | st.tuples(times.filter(lambda t: t is not None),
                                        st.integers(0, 99)))
def test_a_ledger_with_a_new_reminder_mark_reencodes_as_encode_ledger(
        ledger: Ledger, mark: tuple[datetime, int] | None) -> None:
    """The sweep's shortcut (the events' text reused from what was read) writes what
    `encode_ledger` writes, and reads back the same."""
    raw = encode_ledger(ledger)
    read = decode_ledger(raw, "acme")
    moved = read.with_reminder(mark)
    assert reencode_ledger(moved, read, raw) == encode_ledger(moved)
    assert decode_ledger(reencode_ledger(moved, read, raw), "acme") == moved


def test_a_ledger_with_other_events_is_encoded_whole() -> None:
    issue = PaymentEvent(event_id="inv-1", account_id="acme",
                         type=PaymentEventType.INVOICE_ISSUED, invoice_id="inv-1",
                         amount_minor=100, due_at=T)
    read = Ledger().add(issue, "USD")
    raw = encode_ledger(read)
    paid = read.add(PaymentEvent(event_id="pay-1", account_id="acme",
                                 type=PaymentEventType.PAYMENT_SUCCEEDED, amount_minor=100),
                    "USD")
    assert reencode_ledger(paid, read, raw) == encode_ledger(paid)
    marked = read.with_reminder((T, 1))
    assert reencode_ledger(marked, Ledger(), None) == encode_ledger(marked)
    empty = Ledger(currency="USD")
    assert reencode_ledger(empty.with_reminder((T, 2)), empty, encode_ledger(empty)) == (
        encode_ledger(empty.with_reminder((T, 2))))


def _former_encode_history(entry: dict[str, object]) -> str:
    """encode_history before the memo of `at` (commit fd742a4), verbatim."""
    keys = ("at", "from", "to", "cause", "actor", "event_id")
    values = [entry.get(k) for k in keys]
    at = values[0]
    us = None
    if isinstance(at, str):
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            epoch = datetime(1970, 1, 1, tzinfo=UTC)
            us = (when - epoch) // timedelta(microseconds=1)
            if (epoch + timedelta(microseconds=us)).isoformat() != at:
                us = None
    plain = (set(entry) <= set(keys) and us is not None
             and all(v is None or (isinstance(v, str) and "%" not in v and RS not in v
                                   and US not in v and not v.startswith("{"))
                     for v in values[1:]))
    if not plain:
        return json.dumps(entry, separators=(",", ":"))
    return US.join([str(us), *("" if v is None else str(v) for v in values[1:])]).rstrip(US)


ats = st.sampled_from([T.isoformat(), (T + timedelta(seconds=1)).isoformat(),
                       "2026-10-05T11:30:15+02:00", "2026-10-05T09:30:15.250+00:00",
                       "2026-10-05T09:30:15", "not a time", ""]) | st.text(max_size=30)


@given(st.lists(st.fixed_dictionaries({"at": ats | st.none() | st.integers()}, optional={
    "from": st.none() | st.sampled_from(["ACTIVE", "{x", "a%b", "GRACE"]),
    "to": st.sampled_from(["ACTIVE", "SUSPENDED", US]), "cause": st.text(),
    "actor": st.text(), "event_id": st.text(), "note": st.integers()}), max_size=6))
def test_history_entries_encode_as_before_whatever_came_before(
        entries: list[dict[str, object]]) -> None:
    """The memo of the last `at` changes nothing, in any sequence of entries."""
    for entry in entries:
        assert encode_history(entry) == _former_encode_history(entry)


@given(ledgers(), ids, st.sampled_from(list(PaymentEventType)), st.sampled_from(["", "USD", "EUR"]),
       st.sampled_from(["USD", "EUR", ""]), st.booleans())
def test_a_ledger_with_one_new_event_reencodes_as_encode_ledger(
        ledger: Ledger, eid: str, kind: PaymentEventType, currency: str, account_currency: str,
        mark: bool) -> None:
    """The payment stream's shortcut (the new event's text put among what was read, by id)
    writes what `encode_ledger` writes."""
    raw = encode_ledger(ledger)
    read = decode_ledger(raw, "acme")
    event = PaymentEvent(event_id=eid, account_id="acme", type=kind, invoice_id=eid,
                         amount_minor=5, currency=currency, occurred_at=T, due_at=T)
    try:
        grown = read.add(event, account_currency)
    except Exception:  # another currency than the ledger's: refused, nothing to write
        return
    if mark:
        grown = grown.with_reminder((T, 3))
    assert reencode_ledger(grown, read, raw) == encode_ledger(grown)
    assert decode_ledger(reencode_ledger(grown, read, raw), "acme") == grown


def test_a_ledger_with_other_changes_than_one_new_event_is_encoded_whole() -> None:
    def issue(eid: str, amount: int = 100) -> PaymentEvent:
        return PaymentEvent(event_id=eid, account_id="acme", type=PaymentEventType.INVOICE_ISSUED,
                            invoice_id=eid, amount_minor=amount, due_at=T)

    read = Ledger().add(issue("b"), "USD").add(issue("d"), "USD")
    raw = encode_ledger(read)
    two = read.add(issue("a"), "USD").add(issue("c"), "USD")
    replaced = Ledger(currency="USD", events={**read.events, "b": issue("b", 7)})
    swapped = Ledger(currency="USD", events={"b": read.events["b"], "e": issue("e")})
    for changed in (two, replaced, swapped, read.add(issue("z"), "USD"),
                    read.add(issue("a"), "USD"), read.add(issue("c"), "USD")):
        assert reencode_ledger(changed, read, raw) == encode_ledger(changed)
