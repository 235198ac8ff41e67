"""A proxied HTTP request checked (Envoy's ext_authz Check, the forward-auth `/authz`).

The login check, then, for an account restricted for non-payment, what domain/restricted.py
lets through: an open path, a feature that stays available, a read-only stage's reading
methods. A check opens no session and takes no seat: there is no logout in HTTP to give it
back. How the answer is worded for each proxy is the adapters' (service/proxy_check.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from sessiongate.domain.decision import Verdict
from sessiongate.domain.entitlements import Feature
from sessiongate.domain.model import Account
from sessiongate.domain.restricted import proxy_verdict
from sessiongate.usecases.entitlements import Entitlements
from sessiongate.usecases.login import LoginCheck, LoginChecker


class ProxiedRequests:
    def __init__(self, logins: LoginChecker, entitlements: Entitlements,
                 open_paths: Sequence[str]) -> None:
        self.logins = logins
        self.entitlements = entitlements
        self.open_paths = tuple(open_paths)

    async def check(self, account_id: str, user_id: str, feature: str, method: str,
                    path: str) -> tuple[Verdict, LoginCheck]:
        """The verdict on one request, and the login check it was made from."""
        checked = await self.logins.check(account_id, user_id)
        verdict = checked.verdict
        account = checked.lookup.account
        if verdict.restricted_by_payment and account is not None:
            found = await self._feature(account, feature) if feature else None
            verdict = proxy_verdict(verdict, method, path, self.open_paths, found)
        return verdict, checked

    async def _feature(self, account: Account, name: str) -> Feature | None:
        """The plan's feature; None when the plan does not name it or cannot be read (the
        restriction then stands: a proxy must not open more when the backend is away)."""
        try:
            found = await self.entitlements.feature(account, name)
        except self.entitlements.unavailable:
            return None
        return found if isinstance(found, Feature) else None
