"""Notifications that are not account transitions (the monthly report, the digest), put in
the same outbox as dunning's: delivery, retries and signatures are the existing ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sessiongate.domain.notifications import Notice, encode
from sessiongate.store import keys
from sessiongate.store.scripts import Scripts
from sessiongate.store.transport import Transport

MARKER_TTL_S = 400 * 24 * 3600  # longer than any run that could still be made up


async def enqueue(redis: Transport, account_id: str, body: Notice | Mapping[str, Any]
                  ) -> None:
    """Always: a resend (`SendReport`, `digest --send`)."""
    await redis.call("XADD", keys.outbox_of(account_id), "*",
                     "account", account_id, "version", 0, "body", encode(body))


async def enqueue_once(scripts: Scripts, marker: str, account_id: str,
                       body: Notice | Mapping[str, Any]) -> bool:
    """Put `body` in the outbox unless `marker` is set; sets it. True if this call did."""
    res = await scripts["enqueue_once"](
        keys=[marker, keys.outbox_of(account_id)],
        args=[MARKER_TTL_S, account_id, encode(body)])
    return int(res) == 1
