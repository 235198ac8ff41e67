"""Session ids: opaque to callers, but they carry the account and user they belong to.

A Heartbeat or EndSession names only the session; embedding the account id lets the server find
the account's keys (one slot) without an index lookup. The random nonce makes ids unguessable.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.validation import check_id

_SEP = "\x1f"  # unit separator: check_id forbids control characters in ids, so it cannot clash
MAX_SESSION_ID_LENGTH = 512


class SessionRef(NamedTuple):
    """Made on every login: a named tuple, immutable at half a frozen dataclass's
    construction (docs/performance.md, "Session opened with fewer objects")."""

    account_id: str
    user_id: str
    nonce: str

    @property
    def member(self) -> str:
        """How the session is stored in the account's session set: the user, then the nonce."""
        return f"{self.user_id}{_SEP}{self.nonce}"

    @property
    def session_id(self) -> str:
        raw = f"{self.account_id}{_SEP}{self.user_id}{_SEP}{self.nonce}".encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class SeatResult:
    """A lease opened or renewed (`admitted`), or refused: every seat is taken."""

    admitted: bool
    seats_held: int


def new_session(account_id: str, user_id: str) -> SessionRef:
    """A new session of `user_id`: a nonce of 12 random bytes, URL-safe base64 (16 characters,
    no padding: `secrets.token_urlsafe(12)`'s text)."""
    try:
        nonce = _nonces.popleft()
    except IndexError:
        nonce = _refill()
    return SessionRef(account_id, user_id, nonce)


# Nonces cut from one `os.urandom` read of NONCES_PER_READ: a getrandom(2) call and a base64
# encoding per login were ~2 us of its time in the server (docs/performance.md, "Nonces cut
# from one read"). 12 bytes are 16 base64 characters, so the read's text is cut, not each
# nonce encoded. A deque: `popleft` is atomic, so threads never share a nonce (two that
# refill at once both add fresh ones). A forked child draws its own.
NONCES_PER_READ = 256
_NONCE_TEXT = 16
_nonces: deque[str] = deque()


def _refill() -> str:
    text = base64.urlsafe_b64encode(os.urandom(12 * NONCES_PER_READ)).decode()
    _nonces.extend([text[i:i + _NONCE_TEXT] for i in range(_NONCE_TEXT, len(text), _NONCE_TEXT)])
    return text[:_NONCE_TEXT]


os.register_at_fork(after_in_child=_nonces.clear)


def parse_session_id(field: str, value: str) -> SessionRef:
    """Decode and validate; anything malformed is INVALID_ARGUMENT naming `field`."""
    if not value:
        raise InvalidArgument(field, "must not be empty")
    if len(value) > MAX_SESSION_ID_LENGTH:
        raise InvalidArgument(field, f"longer than {MAX_SESSION_ID_LENGTH} characters")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, ValueError):
        raise InvalidArgument(field, "is not a session id") from None
    parts = raw.split(_SEP)
    if len(parts) != 3 or not parts[2] or not parts[2].isascii():
        raise InvalidArgument(field, "is not a session id")
    try:
        check_id(field, parts[0])
        check_id(field, parts[1])
    except InvalidArgument:
        raise InvalidArgument(field, "is not a session id") from None
    return SessionRef(parts[0], parts[1], parts[2])
