"""`/authz`: forward auth for nginx (`auth_request`), Traefik (`ForwardAuth`) and Caddy
(`forward_auth`), answering what Envoy's Check answers (service/proxy_check.py).

The proxy asks before forwarding each request; the original method and URI come from
`X-Forwarded-Method` / `X-Forwarded-Uri` (Traefik, Caddy) or `X-Original-Method` /
`X-Original-URI` (set in the nginx configuration). Statuses: 200 (with x-sessiongate-*
headers for the proxy to copy upstream), 402 for non-payment with a JSON body saying what is
owed and where to pay, 403 for a user off the roster, an unknown or closed account, 401 when
no identity (or an unverifiable JWT) is given, 503 when Redis is down and the failure mode
denies. nginx turns anything but 2xx, 401 and 403 into a 500, so a request carrying
`x-sessiongate-deny-as-403` gets its other denials as 403, with the real status in
`x-sessiongate-status` and the JSON body in `x-sessiongate-body` for its `error_page` to
answer with (deploy/nginx). docs/proxies.md has the tables.

An answer the answer memo may keep (service/answer_memo.py, `proxy_key`) is kept as its
status, headers and body, and a request that finds one is sent them without a check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from time import perf_counter
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.validation import check_id
from sessiongate.http.verified_jwt import InvalidToken, JwtVerifier
from sessiongate.service.answer_memo import HttpAnswer, Kept
from sessiongate.service.envoy_authz import RequestMapper, claim_value
from sessiongate.service.proxy_check import HEADER_SUSPENDS_AT, Identity, ProxyCheck
from sessiongate.service.runtime import Runtime

PATH = "/authz"
TOKEN_HEADER = "x-sessiongate-token"
DENY_AS_403 = "x-sessiongate-deny-as-403"
HEADER_STATUS = "x-sessiongate-status"
HEADER_BODY = "x-sessiongate-body"


METHOD = "HTTP /authz"  # its name in the access log and the RPC metrics
_CODES = {code: str(code) for code in (200, 400, 401, 402, 403, 503)}  # the `code` label


class AuthzHandler:
    def __init__(self, rt: Runtime, proxy: ProxyCheck) -> None:
        self.rt = rt
        s = rt.settings
        self.mapper = RequestMapper(s)  # header names and the feature pattern, as Envoy's
        self.proxy = proxy
        self.answers = proxy.answers
        self.verifier = JwtVerifier.from_settings(s)
        self.cookie = s.jwt_cookie.strip()
        self.account_claim = s.envoy_account_claim.strip() if self.verifier else ""
        self.user_claim = s.envoy_user_claim.strip() if self.verifier else ""
        self.cache_control = f"private, max-age={int(s.near_cache_ttl)}"

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", PATH, self.handle)]

    async def handle(self, request: web.Request) -> web.Response:
        """One forward-auth request, reported like an RPC (`Observer`): the access log and
        the latency metric `sessiongate_rpc_duration_seconds{method="HTTP /authz"}`, its
        `code` the HTTP status."""
        started = perf_counter()
        h = request.headers
        response = self._proxy_refused(h.get(TOKEN_HEADER))
        if response is None:
            method = (h.get("x-forwarded-method") or h.get("x-original-method")
                      or request.method)
            uri = h.get("x-forwarded-uri") or h.get("x-original-uri") or "/"
            answer = self._remembered(h, method, uri)
            # A remembered answer is sent without a coroutine of its own (docs/performance.md,
            # "/authz: a remembered answer without a coroutine").
            response = (self._send(request, answer) if answer is not None
                        else await self._answer(request, method, uri))
        observer = self.rt.observer
        if observer.active:
            status = response.status
            observer.record(METHOD, _CODES.get(status) or str(status), perf_counter() - started,
                            request.remote or "", None, h.get("x-request-id"))
        return response

    async def _answer(self, request: web.Request, method: str, uri: str) -> web.Response:
        """A request with no remembered answer: its identity read and checked."""
        try:
            who = self._identity(request, uri)
        except InvalidToken as exc:
            return self._error(request, 401, "invalid_token", "JWT", f"JWT: {exc}")
        except InvalidArgument as exc:
            kind = ("missing_identity" if exc.problem in ("missing", "must not be empty")
                    else "bad_request")
            return self._error(request, 401 if exc.field != "path" else 400, kind,
                               exc.field, str(exc))
        return self._send(request, await self._check(who, method, uri))

    def _send(self, request: web.Request, answer: HttpAnswer) -> web.Response:
        """The response of `answer` (remembered or just checked)."""
        headers = answer.headers
        if answer.status == 200:
            # A copy of the kept (read-only) multidict: aiohttp adds its own to the one given.
            return web.Response(status=200, headers=headers.copy()
                                if isinstance(headers, CIMultiDictProxy) else headers)
        return self._deny(request, answer.status, answer.body, headers)

    def _remembered(self, headers: Mapping[str, str], method: str, uri: str
                    ) -> HttpAnswer | None:
        """The answer remembered for this request (identity from headers only: a JWT is
        verified on every request), or None."""
        given = self.mapper.given(headers, uri) if self.verifier is None else None
        if given is None:
            return None
        got = self.answers.proxied(given[0], given[1], Kept.AUTHZ, given[2], method, uri)
        return got[0] if got is not None and isinstance(got[0], HttpAnswer) else None

    async def _check(self, who: Identity, method: str, uri: str) -> HttpAnswer:
        """The answer checked anew, and remembered if `proxy_key` allows."""
        proxy = self.proxy
        verdict, checked = await proxy.check(who, method, uri)
        account = checked.lookup.account
        headers = proxy.headers(verdict, account)
        headers["cache-control"] = self.cache_control
        if verdict.allowed:
            headers.setdefault(HEADER_SUSPENDS_AT, "")  # the proxy overwrites a client's copy
            # Kept as aiohttp keeps headers: copied per response at C speed.
            answer = HttpAnswer(200, CIMultiDictProxy(CIMultiDict(headers)), "")
        else:
            body = json.dumps(proxy.deny_body(who, verdict, account), separators=(",", ":"))
            answer = HttpAnswer(proxy.status(verdict), headers, body)
        proxy.remember(Kept.AUTHZ, who, method, uri, checked, answer)
        return answer

    def _proxy_refused(self, token: str | None) -> web.Response | None:
        """With tokens configured, the proxy must send an `app` token (as a gRPC caller)."""
        auth = self.rt.auth
        if not auth.enabled:
            return None
        roles = auth.token_roles(token) if token else frozenset()
        if "app" in roles:
            return None
        status, error = (403, "proxy_forbidden") if roles else (401, "proxy_unauthenticated")
        message = (f"{TOKEN_HEADER}: not an app token" if roles
                   else f"{TOKEN_HEADER}: missing or unknown token")
        body = {"allowed": False, "error": error, "field": TOKEN_HEADER, "message": message}
        return web.json_response(body, status=status,
                                 headers={"cache-control": "no-store"})

    def _identity(self, request: web.Request, uri: str) -> Identity:
        claims: dict[str, Any] | None = None
        if self.verifier is not None:
            token = self._token(request)
            if token is None:
                raise InvalidArgument("JWT", "missing")
            claims = self.verifier.claims(token)
        m = self.mapper
        account = self._field(request.headers, claims, self.account_claim, m.account_header)
        user = self._field(request.headers, claims, self.user_claim, m.user_header)
        return Identity(account, user, m.feature(uri))

    def _token(self, request: web.Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        if self.cookie:
            return request.cookies.get(self.cookie) or None
        return None

    @staticmethod
    def _field(headers: Mapping[str, str], claims: dict[str, Any] | None, claim: str,
               header: str) -> str:
        if claim and claims is not None:
            return check_id(f"claim {claim}", claim_value(claims, claim))
        value = headers.get(header) if header else None
        if value is None:
            raise InvalidArgument(f"header {header}", "missing")
        return check_id(f"header {header}", value)

    def _error(self, request: web.Request, status: int, error: str, field: str,
               message: str) -> web.Response:
        body = {"allowed": False, "error": error, "field": field, "message": message}
        return self._deny(request, status, json.dumps(body, separators=(",", ":")),
                          {"cache-control": self.cache_control})

    @staticmethod
    def _deny(request: web.Request, status: int, text: str,
              headers: Mapping[str, str]) -> web.Response:
        """A denial with its JSON `text` (nginx's mode: as a 403, said in headers)."""
        if request.headers.get(DENY_AS_403):
            headers = {**headers, HEADER_STATUS: str(status), HEADER_BODY: text}
            if status != 401:
                status = 403
        return web.Response(status=status, text=text, content_type="application/json",
                            headers=headers)
