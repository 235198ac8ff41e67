"""The typed notifications: each kind's wire body, byte for byte as the outbox stores it and the
webhook receives it (docs/architecture.md, "Outbox notification schema")."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sessiongate.domain.dunning import reconsider
from sessiongate.domain.ledger import Ledger
from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.notifications import (
    Digest,
    DunningNotice,
    MonthlyReport,
    NotificationKind,
    encode,
    kind_of,
)
from sessiongate.domain.payment_event import new_payment_event
from sessiongate.domain.policy import DEFAULT_POLICY

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def compact(body: dict[str, object]) -> str:
    return json.dumps(body, separators=(",", ":"))


def test_a_transition_notice_goes_out_in_the_documented_schema() -> None:
    ledger = Ledger().add(new_payment_event(
        event_id="issue-inv-1", account_id="acme", type="INVOICE_ISSUED", invoice_id="inv-1",
        amount_minor=12000, due_at=T0 - timedelta(days=15)), "USD")
    account = Account("acme", admin_emails=("billing@acme.test",), version=6)
    out = reconsider(account, ledger, DEFAULT_POLICY, T0)
    (n,) = out.notifications
    assert isinstance(n, DunningNotice) and n.kind is NotificationKind.TRANSITION
    assert encode(n) == compact({
        "id": "acme:7:transition", "kind": "transition", "account_id": "acme",
        "state": "GRACE", "previous_state": "ACTIVE", "amount_due_minor": 12000,
        "currency": "USD", "suspends_at": (T0 + timedelta(days=16)).isoformat(),
        "reason": n.reason, "at": T0.isoformat(), "admin_emails": ["billing@acme.test"]})
    assert dict(n) == json.loads(encode(n))  # the mapping view is the wire body


def test_a_reminder_carries_its_ordinal_and_a_delivered_notice_its_link() -> None:
    n = DunningNotice("a:2:reminder", NotificationKind.REMINDER, "a", AccountState.REMINDER,
                      AccountState.REMINDER, 500, "EUR", None, "r", T0, (), ordinal=3,
                      standing_url="https://x.test/s")
    assert encode(n) == compact({
        "id": "a:2:reminder", "kind": "reminder", "account_id": "a", "state": "REMINDER",
        "previous_state": "REMINDER", "amount_due_minor": 500, "currency": "EUR",
        "suspends_at": None, "reason": "r", "at": T0.isoformat(), "admin_emails": [],
        "ordinal": 3, "standing_url": "https://x.test/s"})


def test_the_report_keeps_its_content_order_then_id_at_and_recipients() -> None:
    content = {"kind": "monthly_report", "account_id": "acme", "period": "2026-11",
               "logins": {"this": 2, "previous": 0}}
    r = MonthlyReport.of(content, id="acme:monthly_report:2026-11", at=T0,
                         report_emails=["c@acme.test"], children=[{"account_id": "kid"}])
    assert r.kind is NotificationKind.MONTHLY_REPORT
    assert encode(r) == compact({
        **content, "id": "acme:monthly_report:2026-11", "at": T0.isoformat(),
        "report_emails": ["c@acme.test"], "children": [{"account_id": "kid"}]})
    assert "standing_url" not in r and "children" not in MonthlyReport.of(
        content, id="x", at=T0)


def test_the_digest_schema() -> None:
    d = Digest("digest:2026-01-01", "2026-01-01", T0, ("ops@v.test",), {"GRACE": ["late"]},
               ("payer",), ({"account_id": "late", "amount_due_minor": 1},), {"USD": 1},
               {"payments": 0, "notifications": 2})
    assert encode(d) == compact({
        "id": "digest:2026-01-01", "kind": "digest", "day": "2026-01-01",
        "at": T0.isoformat(), "digest_emails": ["ops@v.test"], "changed": {"GRACE": ["late"]},
        "reinstated": ["payer"], "suspending": [{"account_id": "late", "amount_due_minor": 1}],
        "overdue": {"USD": 1}, "dead_letters": {"payments": 0, "notifications": 2}})


def test_kinds_read_back_and_unknown_kinds_pass_through() -> None:
    assert [kind_of({"kind": k.value}) for k in NotificationKind] == list(NotificationKind)
    assert kind_of({"kind": "something_new"}) is None and kind_of({}) is None
    body = {"id": "x", "kind": "something_new", "extra": [1]}
    assert encode(body) == compact(body)  # a foreign body is sent as it is


def test_a_dunning_notice_is_jsons_own_text_of_its_wire_body() -> None:
    """`encode` writes a dunning notice out field by field: byte for byte `json`'s text of
    `wire()`, whatever the text (quotes, control characters, non-ASCII) and the times."""
    odd = ["", "a\"b", "back\\slash", "\x00\x1e\x1f\x7f", "ünï ✓ \u2028 😀", "%25"]
    at = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
    notices = [
        DunningNotice("a:1:transition", NotificationKind.TRANSITION, "a", AccountState.GRACE,
                      AccountState.ACTIVE, 0, "USD", None, "", T0),
        DunningNotice(odd[1], NotificationKind.REMINDER, odd[4], AccountState.REMINDER,
                      AccountState.REMINDER, -12000, odd[3], at, odd[2], at, tuple(odd), 3,
                      odd[4]),
        DunningNotice("b", NotificationKind.TRANSITION, "b", AccountState.ACTIVE,
                      AccountState.SUSPENDED, 10**15, "JPY",
                      datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=9999), "paid", at,
                      ("x@y.test",), 0, "https://s.test/?a=\"1\""),
    ]
    for n in notices:
        assert encode(n) == compact(n.wire())
        assert json.loads(encode(n)) == dict(n)
