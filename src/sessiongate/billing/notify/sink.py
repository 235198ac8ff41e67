"""What every sink receives (`Notification`), what it must do (`Sink`), and how it fails."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from sessiongate.domain.notifications import NotificationKind, kind_of


class DeliveryError(Exception):
    """A sink could not deliver; the subclass says whether trying again can help."""


class RetryLater(DeliveryError):
    """Transient (receiver down, timeout, 5xx, 408/429): keep the entry pending, retry."""


class PermanentFailure(DeliveryError):
    """The receiver refused this notification for good: dead-letter it, do not retry."""


class MalformedEntry(ValueError):
    """An outbox entry that is no notification (no JSON object with a string `id`)."""


@dataclass(frozen=True, slots=True)
class Notification:
    """One outbox entry as delivered. `raw` is the body exactly as stored: what the webhook
    posts and signs; `body` is it parsed (the schema of its kind: domain/notifications.py)."""

    id: str
    account: str
    version: int
    raw: bytes
    body: Mapping[str, Any]

    @property
    def kind(self) -> NotificationKind | None:
        """None for a kind this release does not know: delivered all the same."""
        return kind_of(self.body)

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> Notification:
        raw = fields.get(b"body")
        if raw is None:
            raise MalformedEntry("no body field")
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise MalformedEntry(f"body is not JSON: {e}") from None
        if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
            raise MalformedEntry("body is not a JSON object with a string id")
        try:
            version = int(fields.get(b"version", b"0"))
        except ValueError:
            version = 0
        account = fields.get(b"account", b"").decode(errors="replace")
        return cls(body["id"], account or str(body.get("account_id", "")), version, raw, body)


class Sink(Protocol):
    """A receiver of notifications. `name` keys its delivery record: keep it stable."""

    name: str

    async def deliver(self, notification: Notification) -> None:
        """Return when delivered; raise `PermanentFailure`, or anything else to retry."""
        ...
