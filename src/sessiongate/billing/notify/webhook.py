"""The webhook sink: POST the notification JSON, signed with HMAC-SHA256 (docs/notifications.md).

stdlib `urllib` in a worker thread: one small POST per notification needs no connection pool,
so no HTTP client dependency. Redirects are not followed (a POST must not turn into a GET).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from sessiongate.billing.notify.sink import Notification, PermanentFailure, RetryLater
from sessiongate.domain.errors import InvalidArgument

SIGNATURE_HEADER = "X-Sessiongate-Signature"
TIMESTAMP_HEADER = "X-Sessiongate-Timestamp"
ID_HEADER = "X-Sessiongate-Notification-Id"
RETRYABLE_4XX = frozenset({408, 429})


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: `sha256=<hex HMAC-SHA256 of the raw body>`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, secret: str, *, timeout: float = 10.0,
                 now: Callable[[], float] = time.time) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgument("SESSIONGATE_WEBHOOK_URL", "must be an http:// or https:// URL")
        self.url = url
        self._secret = secret
        self._timeout = timeout
        self._now = now
        self._opener = urllib.request.build_opener(_NoRedirect)

    def headers(self, n: Notification) -> dict[str, str]:
        h = {
            "Content-Type": "application/json",
            "User-Agent": "sessiongate-notify/1",
            ID_HEADER: n.id,
            TIMESTAMP_HEADER: str(int(self._now())),
        }
        if self._secret:
            h[SIGNATURE_HEADER] = sign(self._secret, n.raw)
        return h

    async def deliver(self, notification: Notification) -> None:
        status = await asyncio.to_thread(self._post, notification.raw, self.headers(notification))
        if 200 <= status < 300:
            return
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            raise PermanentFailure(f"webhook answered HTTP {status}")
        raise RetryLater(f"webhook answered HTTP {status}")

    def _post(self, body: bytes, headers: dict[str, str]) -> int:
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(req, timeout=self._timeout) as resp:
                resp.read(65536)
                return int(resp.status)
        except urllib.error.HTTPError as e:
            e.close()
            return int(e.code)
        except (urllib.error.URLError, OSError) as e:  # refused, DNS, TLS, timeout
            raise RetryLater(f"webhook unreachable: {e}") from None
