"""Bearer-token roles: `app` (SessionControl), `billing` (Billing), `admin` (Accounts).

Least privilege, no superuser: a token may call only the services of the roles it is listed
under, so a leaked app token cannot change accounts and a leaked admin token cannot open
sessions. A caller that needs several roles (the CLI of an operator, say) lists the same
token under each role. A right token of the wrong role is PERMISSION_DENIED; a missing or
unknown token is UNAUTHENTICATED. A role with no tokens is closed to everyone.

Tokens are compared in constant time: `roles_of` compares with every configured token. The
per-RPC check (`check_header`) remembers the verdict per presented header (a handful of
distinct headers: the tokens in use), so a repeated header costs one dict lookup. That lookup
leaks nothing about a configured token: a dict compares two strings' characters only after
their 64-bit hashes (SipHash, keyed at random per process) are equal, which a wrong guess
cannot arrange, so its timing does not depend on how much of a guess is right. (A SHA-256
digest as the key would say the same, at a hashlib call per RPC.) With no tokens configured
at all, every caller is trusted, which `app.py` allows only on a loopback address. Health and
reflection are not wrapped by `rpc()` and stay open, so probes need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from sessiongate.domain.errors import PermissionDenied, Unauthenticated

# Remembered headers (verified ones only, so random tokens cannot fill the table): beyond
# it, a header is compared with every token anew, in constant time.
MAX_REMEMBERED = 64

ROLES = ("app", "billing", "admin")


class Authenticator:
    def __init__(self, tokens_by_role: Mapping[str, Iterable[str]]) -> None:
        self._tokens = [(t.encode(), role) for role in ROLES for t in tokens_by_role.get(role, ())]
        self.enabled = bool(self._tokens)
        # Verified header -> its roles (read by the per-RPC wrapper before `check_header`).
        self.verified: dict[str, frozenset[str]] = {}
        self._verified_tokens: dict[str, frozenset[str]] = {}  # `token_roles`'

    def roles_of(self, token: str) -> frozenset[str]:
        """Every role `token` is listed under (empty: unknown token)."""
        given = token.encode()
        found = set()
        for candidate, role in self._tokens:  # no early exit: constant time in the token list
            if hmac.compare_digest(candidate, given):
                found.add(role)
        return frozenset(found)

    def token_roles(self, token: str) -> frozenset[str]:
        """`roles_of` a token given alone (surrounding whitespace ignored: /authz's proxy
        token header), remembered for valid tokens as `check_header` remembers headers."""
        roles = self._verified_tokens.get(token)
        if roles is None:
            roles = self.roles_of(token.strip())
            if roles and len(self._verified_tokens) < MAX_REMEMBERED:
                self._verified_tokens[token] = roles
        return roles

    def check(self, metadata: Iterable[tuple[str, str | bytes]] | None, role: str) -> str:
        """Raise unless the caller's bearer token is listed under `role`; return the role."""
        header: str | bytes | None = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value
                break
        return self.check_header(header, role)

    def check_header(self, header: str | bytes | None, role: str) -> str:
        """`check` given the `authorization` metadata value already found (None: absent)."""
        if not self.enabled:
            return role
        if header is None:
            header = ""
        elif isinstance(header, bytes):
            header = header.decode(errors="replace")
        roles = self.verified.get(header)
        if roles is None:
            roles = self._roles_of_header(header)
            if roles and len(self.verified) < MAX_REMEMBERED:  # valid tokens only
                self.verified[header] = roles
        if role in roles:
            return role
        if not roles:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("missing bearer token in the authorization metadata")
            raise Unauthenticated("invalid bearer token")
        have = ", ".join(sorted(roles))
        raise PermissionDenied(f"a token of role {have} may not call {role} methods")

    def _roles_of_header(self, header: str) -> frozenset[str]:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return frozenset()
        return self.roles_of(token)
