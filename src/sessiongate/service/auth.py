"""Bearer-token roles: `app` (SessionControl), `billing` (Billing), `admin` (Accounts).

Least privilege, no superuser: a token may call only the services of the roles it is listed
under, so a leaked app token cannot change accounts and a leaked admin token cannot open
sessions. A caller that needs several roles (the CLI of an operator, say) lists the same
token under each role. A right token of the wrong role is PERMISSION_DENIED; a missing or
unknown token is UNAUTHENTICATED. A role with no tokens is closed to everyone.

Tokens are compared in constant time. With no tokens configured at all, every caller is
trusted, which `app.py` allows only on a loopback address. Health and reflection are not
wrapped by `rpc()` and stay open, so probes need no secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from sessiongate.domain.errors import PermissionDenied, Unauthenticated

ROLES = ("app", "billing", "admin")


class Authenticator:
    def __init__(self, tokens_by_role: Mapping[str, Iterable[str]]) -> None:
        self._tokens = [(t.encode(), role) for role in ROLES for t in tokens_by_role.get(role, ())]
        self.enabled = bool(self._tokens)

    def roles_of(self, token: str) -> frozenset[str]:
        """Every role `token` is listed under (empty: unknown token)."""
        given = token.encode()
        found = set()
        for candidate, role in self._tokens:  # no early exit: constant time in the token list
            if hmac.compare_digest(candidate, given):
                found.add(role)
        return frozenset(found)

    def check(self, metadata: Iterable[tuple[str, str | bytes]] | None, role: str) -> str:
        """Raise unless the caller's bearer token is listed under `role`; return the role."""
        if not self.enabled:
            return role
        header = ""
        for key, value in metadata or ():
            if key == "authorization":
                header = value.decode() if isinstance(value, bytes) else value
                break
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("missing bearer token in the authorization metadata")
        roles = self.roles_of(token)
        if not roles:
            raise Unauthenticated("invalid bearer token")
        if role not in roles:
            have = ", ".join(sorted(roles))
            raise PermissionDenied(f"a token of role {have} may not call {role} methods")
        return role
