"""Access levels: what a dunning stage grants, and what a read-only answer lets through. Pure.

A stage between full access and a locked door: READ_ONLY lets a customer in arrears see (and
export) their data while refusing changes. Which stage grants what is the policy's to say
(`DunningStage.access`); unset, REMINDER and GRACE grant FULL and SUSPENDED grants NONE.
The verdict-level rules built on these (a feature or path that stays open while restricted,
a proxy's answer per method) are in `restricted.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from urllib.parse import unquote

from sessiongate.domain.model import AccountState


class AccessLevel(enum.Enum):
    """Ordered by restriction: a chain of accounts gets the most restrictive of its levels."""

    FULL = "FULL"
    READ_ONLY = "READ_ONLY"
    NONE = "NONE"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {AccessLevel.FULL: 0, AccessLevel.READ_ONLY: 1, AccessLevel.NONE: 2}

# What a stage grants when its policy leaves `access` unset (the behaviour before it existed).
DEFAULT_STAGE_ACCESS = {
    AccountState.ACTIVE: AccessLevel.FULL,
    AccountState.REMINDER: AccessLevel.FULL,
    AccountState.GRACE: AccessLevel.FULL,
    AccountState.SUSPENDED: AccessLevel.NONE,
    AccountState.CLOSED: AccessLevel.NONE,
}

# Methods that only read: they pass a READ_ONLY answer behind a proxy.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def reads_only(method: str) -> bool:
    """Whether an HTTP request with `method` only reads (and so passes a READ_ONLY answer)."""
    return method.upper() in READ_METHODS


def parse_open_paths(raw: str) -> tuple[str, ...]:
    """`SESSIONGATE_AUTHZ_OPEN_PATHS`: comma-separated path prefixes, each starting with "/"
    (a trailing "/" dropped, so that "/billing/" and "/billing" mean the same)."""
    found = []
    for part in raw.split(","):
        p = part.strip()
        if not p:
            continue
        if not p.startswith("/"):
            raise ValueError(f"{p!r} does not start with '/'")
        found.append(p.rstrip("/") or "/")
    return tuple(found)


def is_open_path(path: str, prefixes: Iterable[str]) -> bool:
    """Whether `path` (query and fragment ignored) lies under one of the `prefixes`, at a
    segment boundary: "/billing" opens "/billing" and "/billing/invoices", not "/billingx".
    A path with a dot segment (even percent-encoded) is never open: "/billing/../api" would
    reach "/api" upstream."""
    path = unquote(path.split("?", 1)[0].split("#", 1)[0])
    if any(seg in (".", "..") for seg in path.replace("\\", "/").split("/")):
        return False
    return any(p == "/" or path == p or path.startswith(p + "/") for p in prefixes)
