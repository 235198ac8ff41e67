"""A payment event from the billing system, validated once whatever the edge it came through.

gRPC (`Billing.PushPaymentEvent`) and the Redis Stream (`sessiongate:payments`) both end in
`new_payment_event`, so the two paths accept and reject exactly the same events with the same
field-naming messages. `event_from_fields` parses the stream's string fields first.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.validation import check_id

TYPE_PREFIX = "PAYMENT_EVENT_TYPE_"
# Timestamps beyond these are certainly typos (and beyond what a proto Timestamp holds).
MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
MAX_AMOUNT = 10**15  # minor units; far above any invoice, far below int64


class PaymentEventType(enum.Enum):
    """The value is the proto enum number."""

    INVOICE_ISSUED = 1
    PAYMENT_SUCCEEDED = 2
    PAYMENT_FAILED = 3
    INVOICE_VOIDED = 4
    PAYMENT_REVERSED = 5
    CREDIT_APPLIED = 6


# Events that name an invoice, and events whose amount must be positive.
_NEEDS_INVOICE = {PaymentEventType.INVOICE_ISSUED, PaymentEventType.INVOICE_VOIDED}
_POSITIVE_AMOUNT = {
    PaymentEventType.INVOICE_ISSUED,
    PaymentEventType.PAYMENT_SUCCEEDED,
    PaymentEventType.CREDIT_APPLIED,
}
STREAM_FIELDS = frozenset(
    {"event_id", "account_id", "type", "invoice_id", "amount_minor", "currency", "occurred_at",
     "due_at", "payment_id"}
)


@dataclass(slots=True, unsafe_hash=True)
class PaymentEvent:
    """One event, as `new_payment_event` validated it (or the ledger decoded it).
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    event_id: str
    account_id: str
    type: PaymentEventType
    invoice_id: str = ""
    amount_minor: int = 0
    currency: str = ""  # "" means the account's currency
    occurred_at: datetime | None = None
    due_at: datetime | None = None
    payment_id: str = ""  # PAYMENT_REVERSED: the event id of the payment it reverses


def parse_type(value: int | str) -> PaymentEventType:
    """A proto enum number, or a name with or without the `PAYMENT_EVENT_TYPE_` prefix."""
    if isinstance(value, int):
        try:
            return PaymentEventType(value)
        except ValueError:
            what = "PAYMENT_EVENT_TYPE_UNSPECIFIED" if value == 0 else f"unknown value {value}"
            raise InvalidArgument("type", f"{what}: must be one of {_names()}") from None
    text = value.strip().upper()
    if text.isascii() and text.isdigit():  # not "²": a digit to isdigit, not to int
        if len(text) > 3:  # every type number has one digit; no 5,000-digit int() either
            raise InvalidArgument("type", f"unknown value {_shown(text)}: must be one of "
                                  f"{_names()}")
        return parse_type(int(text))
    name = text.removeprefix(TYPE_PREFIX)
    try:
        return PaymentEventType[name]
    except KeyError:
        raise InvalidArgument("type", f"unknown event type {_shown(value)}: must be one of "
                              f"{_names()}") from None


def _names() -> str:
    return ", ".join(t.name for t in PaymentEventType)


def _shown(text: str) -> str:
    """`text` quoted for an error message, cut short: a dead letter need not repeat 5,000
    digits."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def check_time(field: str, when: datetime | None) -> datetime | None:
    if when is None:
        return None
    if when.tzinfo is None:
        raise InvalidArgument(field, "must carry a time zone")
    try:
        when = when.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise InvalidArgument(field, "out of range (1970 to 9999)") from None
    if not MIN_TIME <= when <= MAX_TIME:
        raise InvalidArgument(field, "out of range (1970 to 9999)")
    return when


def new_payment_event(
    *,
    event_id: str,
    account_id: str,
    type: int | str | PaymentEventType,
    invoice_id: str = "",
    amount_minor: int = 0,
    currency: str = "",
    occurred_at: datetime | None = None,
    due_at: datetime | None = None,
    payment_id: str = "",
) -> PaymentEvent:
    """Validate every field; the first problem raises `InvalidArgument` naming its field."""
    check_id("event_id", event_id)
    check_id("account_id", account_id)
    kind = type if isinstance(type, PaymentEventType) else parse_type(type)
    check_id("invoice_id", invoice_id, required=kind in _NEEDS_INVOICE)
    check_id("payment_id", payment_id, required=False)
    if amount_minor < 0:
        raise InvalidArgument("amount_minor", "must not be negative")
    if amount_minor > MAX_AMOUNT:
        raise InvalidArgument("amount_minor", f"larger than {MAX_AMOUNT}")
    if kind in _POSITIVE_AMOUNT and amount_minor == 0:
        raise InvalidArgument("amount_minor", f"must be positive for {kind.name}")
    if kind is PaymentEventType.PAYMENT_REVERSED and not payment_id and amount_minor == 0:
        raise InvalidArgument(
            "amount_minor", "PAYMENT_REVERSED needs payment_id or a positive amount_minor")
    if currency and (len(currency) != 3 or not currency.isascii() or not currency.isalpha()):
        raise InvalidArgument("currency", "must be a 3-letter ISO 4217 code")
    occurred = check_time("occurred_at", occurred_at)
    due = check_time("due_at", due_at)
    if kind is PaymentEventType.INVOICE_ISSUED and due is None:
        raise InvalidArgument("due_at", "required for INVOICE_ISSUED")
    return PaymentEvent(
        event_id=event_id,
        account_id=account_id,
        type=kind,
        invoice_id=invoice_id,
        amount_minor=amount_minor,
        currency=currency.upper(),
        occurred_at=occurred,
        due_at=due,
        payment_id=payment_id,
    )


def parse_time(field: str, text: str) -> datetime | None:
    """RFC 3339 (`2026-01-31T00:00:00Z`, with an offset) or Unix seconds (`1769817600`)."""
    text = text.strip()
    if not text:
        return None
    try:
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(text), UTC)
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(field, f"{_shown(text)} is neither RFC 3339 nor Unix seconds"
                              ) from None
    if when.tzinfo is None:
        raise InvalidArgument(field, f"{_shown(text)} has no time zone offset (use Z for UTC)")
    return when


def parse_amount(field: str, text: str) -> int:
    text = text.strip()
    if not text:
        return 0
    body = text[1:] if text[0] in "+-" else text
    if not body.isascii() or not body.isdigit() or len(body) > 19:
        raise InvalidArgument(field, f"{_shown(text)} is not a decimal integer")
    return int(text)


def event_from_fields(fields: Mapping[str, str]) -> PaymentEvent:
    """A stream entry (field names = proto field names, all values strings) -> event."""
    unknown = sorted(set(fields) - STREAM_FIELDS)
    if unknown:
        raise InvalidArgument(unknown[0], "unknown field")
    if not fields.get("type", "").strip():
        raise InvalidArgument("type", "must not be empty")
    return new_payment_event(
        event_id=fields.get("event_id", ""),
        account_id=fields.get("account_id", ""),
        type=fields["type"],
        invoice_id=fields.get("invoice_id", ""),
        amount_minor=parse_amount("amount_minor", fields.get("amount_minor", "")),
        currency=fields.get("currency", ""),
        occurred_at=parse_time("occurred_at", fields.get("occurred_at", "")),
        due_at=parse_time("due_at", fields.get("due_at", "")),
        payment_id=fields.get("payment_id", ""),
    )
