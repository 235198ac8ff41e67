"""Typed records shared across layers: statuses, sources and modes as enums, and the history
entry with its one schema.

The enums are `StrEnum`s: their values are what Redis, the Lua scripts, the settings and the
logs carry, so a member compares equal to its text and prints as it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sessiongate.domain.model import AccountState


class CommitStatus(StrEnum):
    """How an account commit ended (`commit_account.lua` returns the first three)."""

    OK = "ok"
    CONFLICT = "conflict"  # another writer moved the version on: read again and retry
    DUPLICATE = "duplicate"  # the event id was applied already: nothing written
    UNCHANGED = "unchanged"  # the mutation wanted no change: nothing sent


class ConsumeStatus(StrEnum):
    """How consuming a metered feature's quota ended (`consume_quota.lua`)."""

    OK = "ok"
    DUPLICATE = "duplicate"  # the event id was consumed before: counted once
    EXHAUSTED = "exhausted"  # over the quota: refused, nothing consumed
    CONFLICT = "conflict"  # the event id was consumed with other content: refused


class StateSource(StrEnum):
    """Where a login decision's account state came from."""

    NEAR_CACHE = "near_cache"
    REDIS = "redis"
    STALE = "stale"  # Redis unreachable; the last known state (failure mode `static`)
    UNAVAILABLE = "unavailable"  # Redis unreachable and nothing usable: the failure mode decides


class FailureMode(StrEnum):
    """What a login check answers when Redis is unreachable (`SESSIONGATE_FAILURE_MODE`)."""

    CLOSED = "closed"  # deny
    OPEN = "open"  # allow
    STATIC = "static"  # the last known state, up to a maximum age; else deny


@dataclass(slots=True, unsafe_hash=True)
class HistoryEntry:
    """One transition of an account's enforced state, with its cause.

    Made by the dunning evaluation, an override and UpsertAccount alike; `to_dict` is the one
    schema it is stored in (`store/record.py` encodes that) and answered from.
    Never changed once made, by rule: not `frozen`, whose `__init__` pays an
    `object.__setattr__` a field (docs/performance.md, row "Sweep: records not frozen")."""

    at: datetime
    from_state: AccountState | None  # None: the account was created
    to_state: AccountState
    cause: str
    actor: str
    event_id: str = ""  # the payment event that caused it, if one did

    def to_dict(self) -> dict[str, Any]:
        """`at` as ISO text, the states by value, every key present."""
        return {"at": self.at.isoformat(),
                "from": None if self.from_state is None else self.from_state.value,
                "to": self.to_state.value, "cause": self.cause, "actor": self.actor,
                "event_id": self.event_id}
