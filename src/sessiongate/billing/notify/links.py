"""Signed, expiring links to an account's standing page (`GET /standing/<token>`).

itsdangerous's timestamped HMAC (SESSIONGATE_LINK_SECRET): the token names the account and
when it was issued; the page refuses it once older than the link's lifetime. A link made for
a notification is dated by the notification, so every retry of it carries the same link.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

SALT = "sessiongate-standing-v1"


def _signer(now: Callable[[], float]) -> type[TimestampSigner]:
    class ClockSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(now())

    return ClockSigner


class LinkSigner:
    def __init__(self, secret: str, base_url: str, ttl: timedelta,
                 now: Callable[[], datetime]) -> None:
        if not secret:
            raise ValueError("a link signer needs a secret")
        self._secret = secret
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self._now = now

    def _serializer(self, at: datetime) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._secret, salt=SALT,
                                      signer=_signer(lambda: at.timestamp()))

    def token(self, account_id: str, issued_at: datetime | None = None) -> str:
        return str(self._serializer(issued_at or self._now()).dumps({"a": account_id}))

    def url(self, account_id: str, issued_at: datetime | None = None) -> str:
        return f"{self.base_url}/standing/{self.token(account_id, issued_at)}"

    def account_of(self, token: str) -> str | None:
        """The account a valid, unexpired token names; None for anything else."""
        try:
            data: Any = self._serializer(self._now()).loads(
                token, max_age=int(self.ttl.total_seconds()))
        except BadData:
            return None
        account = data.get("a") if isinstance(data, dict) else None
        return account if isinstance(account, str) and account else None


def pay_url(template: str, account_id: str) -> str:
    """SESSIONGATE_PAY_URL_TEMPLATE with `{account_id}` replaced, URL-quoted."""
    return template.replace("{account_id}", urllib.parse.quote(account_id, safe=""))
