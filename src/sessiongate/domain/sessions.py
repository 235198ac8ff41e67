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
    session_id: str  # base64url, no padding, of `account US user US nonce`

    @property
    def member(self) -> str:
        """How the session is stored in the account's session set: the user, then the nonce."""
        return f"{self.user_id}{_SEP}{self.nonce}"


@dataclass(frozen=True, slots=True)
class SeatResult:
    """A lease opened or renewed (`admitted`), or refused: every seat is taken."""

    admitted: bool
    seats_held: int


def new_session(account_id: str, user_id: str) -> SessionRef:
    """A new session of `user_id`: its nonce a fixed filler of 0-2 characters, then 15
    random URL-safe base64 characters (90 bits), and its id made without encoding on each
    login (below)."""
    prefix = _prefixes.get((account_id, user_id))
    if prefix is None:
        prefix = _prefix(account_id, user_id)
    try:
        core, encoded = _nonces.popleft()
    except IndexError:
        core, encoded = _refill()
    return SessionRef(account_id, user_id, prefix[1] + core, prefix[0] + encoded)


# A session id is base64 of `account US user US nonce`: encoding it on each login was ~4 us
# of it in the loaded server (docs/performance.md, "Session ids from encoded parts"). base64
# of text whose first part is a multiple of 3 bytes long is the two parts' base64 joined; so
# the nonce starts with a filler that makes `account US user US filler` such a part, whose
# base64 is kept per account and user (`_prefixes`), and its random rest (15 characters, a
# multiple of 3 too: as long on average as the 16 before, so the session set and the usage
# hash keep their size) comes with its base64 made at once for NONCES_PER_READ nonces
# (`_nonces`). The id is the same text as the whole encoded at once, so ids made before
# parse alike.
_FILLER = "_"
_PREFIX_SEP = _SEP.encode()
# (account, user) pairs kept (callers choose user ids: ~0.7 KB each at most, so ~7 MB);
# beyond, the table is emptied and refills with the users logging in (a miss encodes once).
MAX_PREFIXES = 10_000
_prefixes: dict[tuple[str, str], tuple[str, str]] = {}  # -> (base64 of the part, filler)


def _prefix(account_id: str, user_id: str) -> tuple[str, str]:
    part = account_id.encode() + _PREFIX_SEP + user_id.encode() + _PREFIX_SEP
    filler = _FILLER * (-len(part) % 3)
    prefix = (base64.urlsafe_b64encode(part + filler.encode()).decode(), filler)
    if len(_prefixes) >= MAX_PREFIXES:
        _prefixes.clear()
    _prefixes[(account_id, user_id)] = prefix
    return prefix


# Nonces cut from one `os.urandom` read of NONCES_PER_READ: a getrandom(2) call and a base64
# encoding per login were ~2 us of its time in the server (docs/performance.md, "Nonces cut
# from one read"). The read's text is cut, not each nonce encoded, and so is the base64 of
# that text (each nonce 15 characters, so 20 of it). A deque: `popleft` is atomic, so
# threads never share a nonce (two that refill at once both add fresh ones). A forked child
# draws its own.
NONCES_PER_READ = 256
_NONCE_TEXT = 15  # characters: 90 random bits
_NONCE_B64 = _NONCE_TEXT * 4 // 3
_nonces: deque[tuple[str, str]] = deque()  # (random characters, their base64)


def _refill() -> tuple[str, str]:
    text = base64.urlsafe_b64encode(os.urandom(_NONCE_TEXT * NONCES_PER_READ * 3 // 4))
    encoded = base64.urlsafe_b64encode(text).decode()
    cores = text.decode()
    _nonces.extend([(cores[i * _NONCE_TEXT:(i + 1) * _NONCE_TEXT],
                     encoded[i * _NONCE_B64:(i + 1) * _NONCE_B64])
                    for i in range(1, NONCES_PER_READ)])
    return cores[:_NONCE_TEXT], encoded[:_NONCE_B64]


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
    return SessionRef(parts[0], parts[1], parts[2], value)
