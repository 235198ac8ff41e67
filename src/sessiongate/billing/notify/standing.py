"""The standing page's link in every dunning notification (`standing_url`).

Added when the notification is delivered, not when the dunning engine commits it (the
engine stays free of secrets); the link is dated by the notification's `at`, so every retry
posts the same body."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from sessiongate.billing.notify.links import LinkSigner
from sessiongate.billing.notify.sink import Notification
from sessiongate.config import Settings

DUNNING_KINDS = frozenset({"transition", "reminder"})


def link_signer(settings: Settings, now: Callable[[], datetime] | None = None
                ) -> LinkSigner | None:
    """None without SESSIONGATE_LINK_SECRET: no links are made, the page serves nothing."""
    if not settings.link_secret:
        return None
    return LinkSigner(settings.link_secret, settings.public_url,
                      timedelta(days=settings.link_ttl_days),
                      now or (lambda: datetime.now(UTC)))


def with_standing_url(links: LinkSigner) -> Callable[[Notification], Notification]:
    def enrich(n: Notification) -> Notification:
        body = n.body
        if body.get("kind") not in DUNNING_KINDS or "standing_url" in body:
            return n
        try:
            at = datetime.fromisoformat(str(body.get("at")))
        except ValueError:
            return n
        new = {**body, "standing_url": links.url(n.account, issued_at=at)}
        return replace(n, body=new, raw=json.dumps(new, separators=(",", ":")).encode())

    return enrich
