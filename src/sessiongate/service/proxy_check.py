"""One proxied HTTP request, checked: what Envoy's ext_authz and the HTTP forward-auth
endpoint share (the login check, the rules of domain/restricted.py, the HTTP status, the
headers copied upstream and the JSON body of a denial), so both answer alike.

The check itself is a use-case (usecases/proxied.py): it opens no session and takes no seat.
Both remember their answers in the one answer memo (service/answer_memo.py, `proxy_key`)
through `remember`, and look them up there (`AnswerMemo.proxied`) before checking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sessiongate.billing.notify.links import pay_url
from sessiongate.billing.notify.standing import link_signer
from sessiongate.domain.access import AccessLevel
from sessiongate.domain.decision import Reason, Verdict
from sessiongate.domain.model import Account, AccountState
from sessiongate.domain.money import format_money
from sessiongate.service.answer_memo import AnswerMemo, Kept, ProxyAnswer, proxy_key
from sessiongate.service.runtime import Runtime
from sessiongate.usecases.login import LoginCheck
from sessiongate.usecases.proxied import ProxiedRequests

HEADER_STATE = "x-sessiongate-state"
HEADER_REASON = "x-sessiongate-reason"
HEADER_ACCESS = "x-sessiongate-access"
HEADER_SUSPENDS_AT = "x-sessiongate-suspends-at"
ACCESS_VALUE = {AccessLevel.FULL: "full", AccessLevel.READ_ONLY: "read-only",
                AccessLevel.NONE: "none"}
_OVERDUE = (AccountState.REMINDER, AccountState.GRACE)
_PAYMENT = (Reason.ACCOUNT_SUSPENDED, Reason.PAYMENT_OVERDUE)

# HTTP status of each denial (docs/proxies.md has the table).
HTTP_STATUS: dict[Reason, int] = {
    Reason.PAYMENT_OVERDUE: 402,  # a write refused by a READ_ONLY stage, or a NONE one
    Reason.ACCOUNT_SUSPENDED: 402,
    Reason.ACCOUNT_CLOSED: 403,
    Reason.UNKNOWN_ACCOUNT: 403,
    Reason.USER_NOT_AUTHORIZED: 403,
    Reason.SEAT_LIMIT_REACHED: 403,
    Reason.FEATURE_NOT_ENTITLED: 403,
    Reason.QUOTA_EXHAUSTED: 429,
    Reason.BACKEND_UNAVAILABLE: 503,
}


@dataclass(frozen=True, slots=True)
class Identity:
    """Who asks for what: the login that one HTTP request stands for."""

    account_id: str
    user_id: str
    feature: str


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ProxyCheck:
    """What Envoy's Check and `/authz` share around the use-case (usecases/proxied.py):
    the memo of their answers, the HTTP status, headers and denial body, as the settings
    say (payment URL, standing links). Built once by app.py for both."""

    def __init__(self, rt: Runtime, answers: AnswerMemo, requests: ProxiedRequests) -> None:
        self.answers = answers
        self.requests = requests
        self.payment_url = rt.settings.envoy_payment_url
        self.pay_url_template = rt.settings.pay_url_template
        # The account's standing page (amount, date, "Pay now"): in every 402 body when
        # SESSIONGATE_LINK_SECRET is set.
        self.links = link_signer(rt.settings, rt.clock.now)

    async def check(self, who: Identity, method: str, path: str) -> tuple[Verdict, LoginCheck]:
        """The answer to one request (usecases/proxied.py)."""
        return await self.requests.check(who.account_id, who.user_id, who.feature, method,
                                         path)

    def remember(self, kind: Kept, who: Identity, method: str, path: str,
                 checked: LoginCheck, answer: ProxyAnswer) -> None:
        """Keep `answer`, made for this request from `checked`, if `proxy_key` allows."""
        key = proxy_key(checked, kind, who.user_id, who.feature, method, path,
                        signed_links=self.links is not None)
        if key is not None and checked.snapshot is not None:
            self.answers.keep_proxied(checked.snapshot, who.account_id, key, answer)

    @staticmethod
    def status(verdict: Verdict) -> int:
        return 200 if verdict.allowed else HTTP_STATUS.get(verdict.reason, 403)

    @staticmethod
    def headers(verdict: Verdict, account: Account | None) -> dict[str, str]:
        """The x-sessiongate-* headers of the answer, for the proxy to copy upstream;
        suspends-at only while overdue (callers remove a client's own copy otherwise)."""
        out = {
            HEADER_STATE: verdict.state.value if verdict.state is not None else "UNKNOWN",
            HEADER_REASON: verdict.reason.value,
            HEADER_ACCESS: ACCESS_VALUE[verdict.access],
        }
        if (verdict.allowed and account is not None and verdict.state in _OVERDUE
                and account.suspends_at is not None):
            out[HEADER_SUSPENDS_AT] = rfc3339(account.suspends_at)
        return out

    def deny_body(self, who: Identity, verdict: Verdict,
                  account: Account | None) -> dict[str, Any]:
        """Why, and for non-payment what is owed and where to pay."""
        body: dict[str, Any] = {
            "allowed": False, "error": verdict.reason.value.lower(),
            "reason": verdict.reason.value,
            "state": verdict.state.value if verdict.state is not None else "UNKNOWN",
            "access": ACCESS_VALUE[verdict.access], "message": verdict.message,
            "account_id": who.account_id, "user_id": who.user_id,
        }
        if verdict.reason in _PAYMENT and account is not None:
            owed = format_money(account.balance_minor, account.currency)
            body.update(amount_due_minor=account.balance_minor, currency=account.currency,
                        amount_due=owed)
            how = f"pay the open balance of {owed}"
            where = (pay_url(self.pay_url_template, who.account_id) if self.pay_url_template
                     else self.payment_url)
            if where:
                body["payment_url"] = where
                how += f" at {where}"
            if self.links is not None:
                body["standing_url"] = self.links.url(who.account_id)
            body["how_to_pay"] = how + "; access returns as soon as the payment is recorded"
        return body
