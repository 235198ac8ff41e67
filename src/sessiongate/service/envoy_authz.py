"""Envoy external authorization: `envoy.service.auth.v3.Authorization/Check` as a login check.

Envoy (or Istio, or an Envoy-based gateway) asks before forwarding each HTTP request. The
answer comes from the same lookup, failure mode and `decide` as CheckSession
(usecases/login.py), so an app behind Envoy gets session control from configuration alone.
Each HTTP request is one read-only check: it never opens a session or takes a seat.

What a request gets (the login verdict, then an open path or feature, then the method
rule of a READ_ONLY answer) is `proxy_check.py`'s, shared with the HTTP forward-auth
endpoint. The mapping (which headers or JWT claims name the account and user, which path
names the feature) and every HTTP status are documented in docs/proxies.md.

An answer the answer memo may keep (service/answer_memo.py, `proxy_key`) is kept as bytes
without the state's age, and a request that finds one is answered before the method's
coroutine (`rpc`'s fast path): those bytes plus the age (service/wire.py, `envoy_age`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.auth.v3 import external_auth_pb2 as ext
from google.protobuf import json_format
from google.protobuf.struct_pb2 import Struct
from google.rpc import status_pb2

from sessiongate.config import Settings
from sessiongate.domain.decision import Verdict
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.validation import check_id
from sessiongate.service.answer_memo import Kept
from sessiongate.service.proxy_check import (
    ACCESS_VALUE,
    HEADER_SUSPENDS_AT,
    Identity,
    ProxyCheck,
)
from sessiongate.service.rpc import Servicer, rpc
from sessiongate.service.runtime import Runtime
from sessiongate.service.wire import envoy_age
from sessiongate.usecases.login import LoginCheck

SERVICE_NAME: str = ext.DESCRIPTOR.services_by_name["Authorization"].full_name
# Served with responses as bytes (app.py, `MethodTable.raw`; service/wire.py).
CHECK_METHOD = f"/{SERVICE_NAME}/Check"
JWT_AUTHN_NAMESPACE = "envoy.filters.http.jwt_authn"
_MISSING = "missing"

# The google.rpc code in CheckResponse.status; Envoy only tells OK from not-OK.
_OK = grpc.StatusCode.OK.value[0]
_RPC_CODE = {
    400: grpc.StatusCode.INVALID_ARGUMENT.value[0],
    429: grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
    503: grpc.StatusCode.UNAVAILABLE.value[0],
}
_PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED.value[0]
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


class RequestMapper:
    """Reads account, user and feature from a CheckRequest as the settings say.

    When a JWT source is configured (jwt_authn metadata or a payload header), a field whose
    claim is named comes from the verified claims only, never from a header the client could
    forge; a field with an empty claim name comes from its header.
    """

    def __init__(self, settings: Settings) -> None:
        self.account_header = settings.envoy_account_header.strip().lower()
        self.user_header = settings.envoy_user_header.strip().lower()
        self.jwt_metadata_key = settings.envoy_jwt_metadata_key.strip()
        self.jwt_payload_header = settings.envoy_jwt_payload_header.strip().lower()
        self.jwt = bool(self.jwt_metadata_key or self.jwt_payload_header)
        self.account_claim = settings.envoy_account_claim.strip() if self.jwt else ""
        self.user_claim = settings.envoy_user_claim.strip() if self.jwt else ""
        pattern = settings.envoy_feature_pattern
        try:
            self.feature_re = re.compile(pattern) if pattern else None
        except re.error as exc:
            raise InvalidArgument(
                "SESSIONGATE_ENVOY_FEATURE_PATTERN", f"not a regular expression: {exc}"
            ) from None
        self.feature_group: int | str = 0
        if self.feature_re is not None:
            if "feature" in self.feature_re.groupindex:
                self.feature_group = "feature"
            elif self.feature_re.groups:
                self.feature_group = 1
        for what, header, claim in (("ACCOUNT", self.account_header, self.account_claim),
                                    ("USER", self.user_header, self.user_claim)):
            if not (header or claim):
                raise InvalidArgument(f"SESSIONGATE_ENVOY_{what}_HEADER",
                                      "empty, and no JWT claim is configured instead")

    def identity(self, request: Any) -> Identity:
        """The login of `request`; InvalidArgument names the header, claim or path at fault."""
        http = request.attributes.request.http
        payload = self._jwt_payload(request, http) if self.jwt else None
        account = self._field(http, payload, self.account_claim, self.account_header)
        user = self._field(http, payload, self.user_claim, self.user_header)
        return Identity(account, user, self.feature(http.path))

    def given(self, headers: Mapping[str, str], path: str) -> tuple[str, str, str] | None:
        """(account, user, feature) as the headers and path give them, unvalidated, to look
        up a remembered answer (remembered under validated ids only, so bad ones find
        none); None when a header is absent or the feature malformed. Only for identities
        read from headers: a caller with a JWT source reads `identity`."""
        account = headers.get(self.account_header)
        user = headers.get(self.user_header)
        if account is None or user is None:
            return None
        if self.feature_re is None:  # no feature from paths: no call (every proxied request)
            return account, user, ""
        try:
            return account, user, self.feature(path)
        except InvalidArgument:
            return None

    def _field(self, http: Any, payload: dict[str, Any] | None, claim: str, header: str) -> str:
        if claim:
            if payload is None:
                raise InvalidArgument("JWT payload", _MISSING)
            return check_id(f"claim {claim}", claim_value(payload, claim))
        value = header_value(http, header)
        if value is None:
            raise InvalidArgument(f"header {header}", _MISSING)
        return check_id(f"header {header}", value)

    def _jwt_payload(self, request: Any, http: Any) -> dict[str, Any] | None:
        if self.jwt_metadata_key:
            ns = request.attributes.metadata_context.filter_metadata.get(JWT_AUTHN_NAMESPACE)
            if ns is not None and self.jwt_metadata_key in ns.fields:
                value = ns.fields[self.jwt_metadata_key]
                if value.WhichOneof("kind") == "struct_value":
                    found: dict[str, Any] = json_format.MessageToDict(value.struct_value)
                    return found
        if self.jwt_payload_header:
            raw = header_value(http, self.jwt_payload_header)
            if raw is not None:
                return decode_jwt_payload(f"header {self.jwt_payload_header}", raw)
        return None

    def feature(self, path: str) -> str:
        """The feature a request path names ("" for none); InvalidArgument when malformed."""
        if self.feature_re is None:
            return ""
        path = path.split("?", 1)[0].split("#", 1)[0]
        match = self.feature_re.search(path)
        if match is None or not match.group(self.feature_group):
            return ""
        return check_id("path", unquote(match.group(self.feature_group)))


def header_value(http: Any, name: str) -> str | None:
    """A request header by lower-case name, from `headers` or (encode_raw_headers) `header_map`."""
    value: str | None = http.headers.get(name)
    if value is None:
        for h in http.header_map.headers:
            if h.key.lower() == name:
                return str(h.value) or bytes(h.raw_value).decode("utf-8", "replace")
    return value


def decode_jwt_payload(field: str, raw: str) -> dict[str, Any]:
    """jwt_authn's `forward_payload_header`: the payload as base64url JSON, unpadded."""
    raw = raw.strip()
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidArgument(field, "not a base64url-encoded JSON object") from None
    if not isinstance(data, dict):
        raise InvalidArgument(field, "not a base64url-encoded JSON object")
    return data


def claim_value(payload: Mapping[str, Any], claim: str) -> str:
    """A claim by dotted path (`org.id`); strings and integral numbers only."""
    node: Any = payload
    for part in claim.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise InvalidArgument(f"claim {claim}", _MISSING)
        node = node[part]
    if isinstance(node, str):
        return node
    if isinstance(node, int | float) and not isinstance(node, bool) and float(node).is_integer():
        return str(int(node))  # a Struct carries every number as a double
    raise InvalidArgument(f"claim {claim}", "not a string")


def _header(key: str, value: str) -> Any:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
    )


def _denied(http_status: int, body: dict[str, Any], headers: list[Any], meta: Struct | None,
            message: str) -> Any:
    code = _RPC_CODE.get(http_status, _PERMISSION_DENIED)
    resp = ext.CheckResponse(
        status=status_pb2.Status(code=code, message=message),
        denied_response=ext.DeniedHttpResponse(
            status={"code": http_status},
            headers=[_header("content-type", "application/json"), *headers],
            body=json.dumps(body, separators=(",", ":")),
        ),
    )
    if meta is not None:
        resp.dynamic_metadata.CopyFrom(meta)
    return resp


def bad_request(exc: InvalidArgument) -> Any:
    """Missing or malformed identity: HTTP 400, no lookup made (docs/envoy.md says why)."""
    kind = "missing_identity" if exc.problem in (_MISSING, "must not be empty") else "bad_request"
    body = {"allowed": False, "error": kind, "field": exc.field, "message": str(exc)}
    return _denied(400, body, [], None, str(exc))


class EnvoyAuthzServicer(Servicer):
    """`envoy.service.auth.v3.Authorization`; callers need the `app` role like CheckSession.

    Not a subclass of the generated servicer: xds-protos ships no type stubs, and gRPC only
    needs the `Check` attribute.
    """

    def __init__(self, rt: Runtime, proxy: ProxyCheck) -> None:
        super().__init__(rt.auth, rt.observer)
        self.rt = rt
        self.mapper = RequestMapper(rt.settings)
        self.proxy = proxy
        self.answers = proxy.answers

    def _remembered(self, request: Any) -> tuple[bytes, bytes] | None:
        """Check's hot path, tried by the wrapper before the method (no coroutine): the
        remembered answer's bytes with the state's age; None when there is none, or the
        identity is bad (the method then answers)."""
        http = request.attributes.request.http
        path = http.path
        if self.mapper.jwt:
            try:
                who = self.mapper.identity(request)
            except InvalidArgument:
                return None
            given: tuple[str, str, str] | None = (who.account_id, who.user_id, who.feature)
        else:
            given = self.mapper.given(http.headers, path)
        if given is None:
            return None
        got = self.answers.proxied(given[0], given[1], Kept.ENVOY, given[2],
                                   http.method or "GET", path)
        if got is None or not isinstance(got[0], bytes):
            return None
        wire = got[0] + envoy_age(got[1])
        return wire, wire

    @rpc("app", fast=_remembered)
    async def Check(self, request: Any, context: Any) -> Any:
        try:
            who = self.mapper.identity(request)
        except InvalidArgument as exc:  # an HTTP 400, not a gRPC error Envoy could fail open on
            return bad_request(exc)
        http = request.attributes.request.http
        method, path = http.method or "GET", http.path
        verdict, result = await self.proxy.check(who, method, path)
        wire: bytes = self.respond(who, verdict, result).SerializeToString()
        self.proxy.remember(Kept.ENVOY, who, method, path, result, wire)
        return wire + envoy_age(result.lookup.age_ms)

    def respond(self, who: Identity, verdict: Verdict, result: LoginCheck) -> Any:
        """The CheckResponse of `verdict`, but for its metadata's `state_age_ms`
        (`wire.envoy_age` appends it)."""
        found = result.lookup
        account = found.account
        state = verdict.state.value if verdict.state is not None else "UNKNOWN"
        meta = Struct()
        meta.update({
            "decision": verdict.decision.value, "reason": verdict.reason.value, "state": state,
            "access": ACCESS_VALUE[verdict.access], "source": found.source.value,
            "account_id": who.account_id, "user_id": who.user_id, "feature": who.feature,
            "account_version": account.version if account is not None else 0,
        })
        values = self.proxy.headers(verdict, account)
        headers = [_header(k, v) for k, v in values.items()]
        if verdict.allowed:
            ok = ext.OkHttpResponse(headers=headers)
            if HEADER_SUSPENDS_AT not in values:  # never pass a client's own copy upstream
                ok.headers_to_remove.append(HEADER_SUSPENDS_AT)
            return ext.CheckResponse(
                status=status_pb2.Status(code=_OK), ok_response=ok, dynamic_metadata=meta
            )
        return _denied(self.proxy.status(verdict), self.proxy.deny_body(who, verdict, account),
                       headers, meta, verdict.message)


def check_request(
    account_id: str, user_id: str, path: str = "/", *, method: str = "GET",
    host: str = "app.example", account_header: str = "x-account-id",
    user_header: str = "x-user-id", headers: Mapping[str, str] | None = None,
) -> Any:
    """A CheckRequest shaped like the one Envoy sends: for tests, benchmarks and smoke checks."""
    all_headers = {":method": method, ":path": path, ":authority": host,
                   account_header: account_id, user_header: user_id, **(headers or {})}
    return ext.CheckRequest(attributes={"request": {"http": {
        "id": "1", "method": method, "path": path, "host": host, "scheme": "http",
        "protocol": "HTTP/1.1", "headers": all_headers,
    }}})
