"""JWTs verified by sessiongate itself (PyJWT): an HS256 secret or the public keys of a JWKS.

nginx, Caddy and Traefik pass a token along without checking it, so /authz must not
believe a payload it has not verified: a forged or expired token is no identity at all.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jwt

from sessiongate.config import Settings
from sessiongate.domain.errors import InvalidArgument

# Asymmetric algorithms a JWKS key may name; "none" and HMAC with a public key never pass.
_ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
               "ES512", "EdDSA")


class InvalidToken(Exception):
    """The token does not verify (signature, expiry, audience, issuer, format)."""


class JwtVerifier:
    def __init__(self, settings: Settings) -> None:
        self.secret = settings.jwt_secret
        self.audience = settings.jwt_audience or None
        self.issuer = settings.jwt_issuer or None
        self.keys: dict[str, jwt.PyJWK] = {}
        if settings.jwt_jwks_file:
            self.keys = load_jwks(settings.jwt_jwks_file)

    @classmethod
    def from_settings(cls, settings: Settings) -> JwtVerifier | None:
        """None when no secret and no JWKS is configured (identity then comes from headers)."""
        if not (settings.jwt_secret or settings.jwt_jwks_file):
            return None
        return cls(settings)

    def claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            alg = header.get("alg")
            if alg == "HS256" and self.secret:
                key: Any = self.secret
            elif alg in _ASYMMETRIC and self.keys:
                key = self._key(header)
            else:
                raise InvalidToken(f"algorithm {alg!r} is not accepted")
            found: dict[str, Any] = jwt.decode(
                token, key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                options={"verify_aud": self.audience is not None})
            return found
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from None

    def _key(self, header: dict[str, Any]) -> Any:
        kid = header.get("kid")
        if kid is not None:
            jwk = self.keys.get(kid)
        elif len(self.keys) == 1:
            jwk = next(iter(self.keys.values()))
        else:
            raise InvalidToken("no kid, and the JWKS holds more than one key")
        if jwk is None:
            raise InvalidToken(f"no key {kid!r} in the JWKS")
        return jwk.key


def load_jwks(path: str) -> dict[str, jwt.PyJWK]:
    """The public keys of a JWKS file by kid (a key without one under "")."""
    field = "SESSIONGATE_JWT_JWKS_FILE"
    try:
        data = json.loads(pathlib.Path(path).read_text())
        jwks = jwt.PyJWKSet.from_dict(data)
    except (OSError, ValueError, jwt.PyJWTError) as exc:
        raise InvalidArgument(field, f"not a readable JWKS: {exc}") from None
    return {k.key_id or "": k for k in jwks.keys}
