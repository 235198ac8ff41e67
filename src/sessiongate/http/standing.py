"""`GET /standing/<token>`: the page a customer opens from a dunning email to see what is due
and pay. Rendered on the server (no JavaScript), from the `standing.html` template.

The token is a signed, expiring link (`links.py`). A forged, expired or unknown token, or an
account that no longer exists, gets the same bare 404: nothing says which it was.
"""

from __future__ import annotations

from aiohttp import web

from sessiongate.billing.notify.links import LinkSigner, pay_url
from sessiongate.domain.clock import Clock
from sessiongate.domain.model import AccountState
from sessiongate.rendering import Renderer
from sessiongate.store.accounts import AccountStore

_LABELS = {
    AccountState.ACTIVE: "Active",
    AccountState.REMINDER: "Payment overdue",
    AccountState.GRACE: "Final notice: payment overdue",
    AccountState.SUSPENDED: "Suspended until paid",
    AccountState.CLOSED: "Closed",
}
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}


def _not_found() -> web.Response:
    return web.Response(status=404, text="Not Found", headers={"Cache-Control": "no-store"})


def add_standing_routes(app: web.Application, *, accounts: AccountStore, links: LinkSigner,
                        renderer: Renderer, clock: Clock, pay_url_template: str = "") -> None:
    async def standing(request: web.Request) -> web.Response:
        account_id = links.account_of(request.match_info["token"])
        if account_id is None:
            return _not_found()
        account = await accounts.get(account_id)
        if account is None:
            return _not_found()
        now = clock.now()
        state = account.state_at(now)
        ends = ""
        if account.suspends_at is not None and state is not AccountState.SUSPENDED:
            ends = account.suspends_at.strftime("%Y-%m-%d %H:%M UTC")
        html = renderer.page(
            "standing.html", a=account, state_label=_LABELS.get(state, state.value),
            due_minor=max(account.balance_minor, 0), ends=ends,
            pay_url=pay_url(pay_url_template, account_id) if pay_url_template else "")
        return web.Response(text=html, content_type="text/html", charset="utf-8",
                            headers=_HEADERS)

    app.router.add_get("/standing/{token}", standing)
