"""Bearer-token roles: `app` (SessionControl), `billing` (Billing), `admin` (Accounts).

Tokens are compared in constant time. With no tokens configured at all, every caller is
trusted, which `app.py` allows only on a loopback address.
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

    def role_of(self, token: str) -> str | None:
        given = token.encode()
        found = None
        for candidate, role in self._tokens:  # no early exit: constant time in the token list
            if hmac.compare_digest(candidate, given) and found is None:
                found = role
        return found

    def check(self, metadata: Iterable[tuple[str, str | bytes]] | None, role: str) -> str:
        """The caller's role, if it may act as `role`; admin may do everything."""
        if not self.enabled:
            return role
        header = ""
        for key, value in metadata or ():
            if key == "authorization":
                header = value.decode() if isinstance(value, bytes) else value
                break
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("missing bearer token in the authorization metadata")
        found = self.role_of(token.strip())
        if found is None:
            raise Unauthenticated("invalid bearer token")
        if found != role and found != "admin":
            raise PermissionDenied(f"the {found} role may not call {role} methods")
        return found
