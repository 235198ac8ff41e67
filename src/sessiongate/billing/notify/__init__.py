"""Notification delivery: the outbox deliverer and its sinks (webhook, email)."""

from sessiongate.billing.notify.email import EmailSink
from sessiongate.billing.notify.outbox import Deliverer, build_deliverer
from sessiongate.billing.notify.sink import (
    Notification,
    PermanentFailure,
    RetryLater,
    Sink,
)
from sessiongate.billing.notify.webhook import WebhookSink

__all__ = [
    "Deliverer",
    "EmailSink",
    "Notification",
    "PermanentFailure",
    "RetryLater",
    "Sink",
    "WebhookSink",
    "build_deliverer",
]
