"""The notifications put in the outbox: one dataclass per kind, one wire schema each, encoded
in one place (`encode`).

The wire schema (what the outbox stores and the webhook receives, byte for byte) is documented
in docs/architecture.md ("Outbox notification schema") and docs/notifications.md. Each record
also reads as its wire mapping (`n["state"] == "GRACE"`), so code and tests that look at a
body see exactly what a receiver gets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sessiongate.domain.model import AccountState

_encode = json.JSONEncoder(separators=(",", ":")).encode
_quote = json.JSONEncoder().encode  # a str's JSON text: answered at once, no encoder built


class NotificationKind(StrEnum):
    TRANSITION = "transition"  # the account's state changed
    REMINDER = "reminder"  # still overdue, same state: the policy's reminder interval came
    MONTHLY_REPORT = "monthly_report"
    DIGEST = "digest"  # the vendor's daily digest


DUNNING_KINDS = frozenset({NotificationKind.TRANSITION, NotificationKind.REMINDER})


class _Wire(Mapping[str, Any]):
    """Read-only mapping view of `wire()`, the body as it is sent."""

    __slots__ = ()

    def wire(self) -> dict[str, Any]:
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.wire()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.wire())

    def __len__(self) -> int:
        return len(self.wire())


@dataclass(slots=True, unsafe_hash=True)
class DunningNotice(_Wire):
    """A transition or a reminder, as `dunning.reconsider` makes it. Times go out as ISO text;
    `ordinal` (the reminder's number for this due date) and `standing_url` (added at
    delivery) only when set.
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    id: str
    kind: NotificationKind
    account_id: str
    state: AccountState
    previous_state: AccountState
    amount_due_minor: int
    currency: str
    suspends_at: datetime | None
    reason: str
    at: datetime
    admin_emails: tuple[str, ...] = ()
    ordinal: int = 0
    standing_url: str = ""

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind.value,
            "account_id": self.account_id,
            "state": self.state.value,
            "previous_state": self.previous_state.value,
            "amount_due_minor": self.amount_due_minor,
            "currency": self.currency,
            "suspends_at": None if self.suspends_at is None else self.suspends_at.isoformat(),
            "reason": self.reason,
            "at": self.at.isoformat(),
            "admin_emails": list(self.admin_emails),
        }
        if self.ordinal:
            body["ordinal"] = self.ordinal
        if self.standing_url:
            body["standing_url"] = self.standing_url
        return body


@dataclass(frozen=True, slots=True, eq=True)
class MonthlyReport(_Wire):
    """An account's monthly value report. `sections` are the report's content as
    reporting/content.py builds it (period, logins, seats, features, days, ...; see
    docs/reports.md), in that order after `kind` and `account_id`."""

    id: str
    account_id: str
    at: datetime
    sections: Mapping[str, Any]
    report_emails: tuple[str, ...] = ()
    standing_url: str = ""
    children: tuple[Mapping[str, Any], ...] | None = None  # a channel partner's accounts

    @classmethod
    def of(cls, content: Mapping[str, Any], *, id: str, at: datetime,
           report_emails: Sequence[str] = (), standing_url: str = "",
           children: Sequence[Mapping[str, Any]] | None = None) -> MonthlyReport:
        """From `content.build`'s dict (which carries `kind` and `account_id` first)."""
        sections = {k: v for k, v in content.items() if k not in ("kind", "account_id")}
        return cls(id, str(content["account_id"]), at, sections, tuple(report_emails),
                   standing_url, None if children is None else tuple(children))

    @property
    def kind(self) -> NotificationKind:
        return NotificationKind.MONTHLY_REPORT

    def wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": self.kind.value, "account_id": self.account_id,
                                **self.sections, "id": self.id, "at": self.at.isoformat(),
                                "report_emails": list(self.report_emails)}
        if self.standing_url:
            body["standing_url"] = self.standing_url
        if self.children:
            body["children"] = list(self.children)
        return body


@dataclass(frozen=True, slots=True, eq=True)
class Digest(_Wire):
    """The vendor's daily digest (reporting/digest.py)."""

    id: str
    day: str  # the local day it covers, ISO date
    at: datetime
    digest_emails: tuple[str, ...]
    changed: Mapping[str, list[str]]  # state -> accounts that entered it in the last day
    reinstated: tuple[str, ...]
    suspending: tuple[Mapping[str, Any], ...]  # account_id, amount_due_minor, currency, ...
    overdue: Mapping[str, int]  # currency -> overdue minor units
    dead_letters: Mapping[str, int] = field(default_factory=dict)  # stream -> length

    @property
    def kind(self) -> NotificationKind:
        return NotificationKind.DIGEST

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "day": self.day,
            "at": self.at.isoformat(),
            "digest_emails": list(self.digest_emails),
            "changed": dict(self.changed),
            "reinstated": list(self.reinstated),
            "suspending": [dict(s) for s in self.suspending],
            "overdue": dict(self.overdue),
            "dead_letters": dict(self.dead_letters),
        }


Notice = DunningNotice | MonthlyReport | Digest


def encode(notice: Notice | Mapping[str, Any]) -> str:
    """The outbox body: compact JSON of the wire schema. The one serialiser of notifications
    (a plain mapping is a body already on the wire, e.g. one re-sent with a field added)."""
    if type(notice) is DunningNotice:
        return _dunning_text(notice)
    return _encode(notice.wire() if isinstance(notice, _Wire) else dict(notice))


def _dunning_text(n: DunningNotice) -> str:
    """`_encode(n.wire())`, written out byte for byte (text through `_quote`, numbers as `int`
    prints them; tests/unit/test_notification_records.py compares): `JSONEncoder.encode` of
    a dict builds its C encoder anew, ~8k of a notice's ~38k instructions, and the sweep
    encodes one per account it moves (docs/performance.md, row "Sweep: account and notice
    JSON written out")."""
    q = _quote
    suspends = "null" if n.suspends_at is None else f'"{n.suspends_at.isoformat()}"'
    out = [f'{{"id":{q(n.id)},"kind":"{n.kind.value}","account_id":{q(n.account_id)}'
           f',"state":"{n.state.value}","previous_state":"{n.previous_state.value}"'
           f',"amount_due_minor":{int(n.amount_due_minor)},"currency":{q(n.currency)}'
           f',"suspends_at":{suspends},"reason":{q(n.reason)},"at":"{n.at.isoformat()}"'
           f',"admin_emails":[{",".join([q(e) for e in n.admin_emails])}]']
    if n.ordinal:
        out.append(f',"ordinal":{int(n.ordinal)}')
    if n.standing_url:
        out.append(f',"standing_url":{q(n.standing_url)}')
    out.append("}")
    return "".join(out)


def kind_of(body: Mapping[str, Any]) -> NotificationKind | None:
    """The kind of a body read back from the outbox; None for one this release does not know
    (it is still delivered: the webhook posts it as it is)."""
    try:
        return NotificationKind(str(body.get("kind")))
    except ValueError:
        return None
