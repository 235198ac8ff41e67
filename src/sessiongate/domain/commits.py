"""What a read-modify-write of an account commits, and how the commit ended: the values the
account-commit port (`ports.AccountCommits`) speaks, so the use-cases and the store that
implements it share them without importing each other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sessiongate.domain.ledger import Ledger
from sessiongate.domain.model import Account
from sessiongate.domain.notifications import Notice
from sessiongate.domain.records import CommitStatus, HistoryEntry

# Sentinel for `Change.next_evaluation`: remove the account from the due index.
UNSCHEDULE = "-"

# An account's ledger as the store keeps it, opaque above the store: a use-case asks the port
# for its `Ledger` (only when it needs it) and hands it back in `Change.ledger_read`, so the
# store rewrites only what changed. None: the account has no ledger yet.
StoredLedger = str | None


@dataclass(slots=True, unsafe_hash=True)
class CommitResult:
    """How a commit ended. Never changed once made, by rule: not `frozen`, whose `__init__`
    pays an `object.__setattr__` a field (docs/performance.md, row "Sweep: records not
    frozen")."""

    status: CommitStatus
    version: int

    @property
    def ok(self) -> bool:
        return self.status is CommitStatus.OK


@dataclass(slots=True, unsafe_hash=True)
class Change:
    """What a read-modify-write wants committed (see `ports.AccountCommits.update`). Never
    changed once made, by rule: not `frozen` (as `CommitResult`)."""

    account: Account
    ledger: Ledger | None = None  # the ledger to store; None: the stored one stays
    # The ledger `ledger` was made from and its stored form (None: store `ledger` anew).
    ledger_read: tuple[Ledger, StoredLedger] | None = None
    event_id: str = ""
    next_evaluation: datetime | str | None = None  # a time, UNSCHEDULE, or None: unchanged
    history_entry: HistoryEntry | None = None
    notifications: Sequence[Notice | Mapping[str, Any]] = field(default_factory=tuple)


# mutate(current account or None, its stored ledger) -> Change, or None for no change.
Mutator = Callable[[Account | None, StoredLedger],
                   Awaitable[Change | None] | Change | None]
