"""The account as a report shows it: made from the stored account by the jobs, and from the
API's answers by `sessiongate report`, so that both fill the same content (`content.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sessiongate.domain.model import Account, AccountState


@dataclass(frozen=True, slots=True)
class ReportAccount:
    account_id: str
    state: AccountState | None  # enforced at the report's time; None: not stated
    roster: int = 0  # named users
    seat_limit: int = 0  # seats paid; 0: no limit
    balance_minor: int = 0
    currency: str = ""
    time_zone: str = ""
    oldest_due_at: datetime | None = None
    suspends_at: datetime | None = None

    @classmethod
    def of(cls, account: Account, now: datetime) -> ReportAccount:
        return cls(account.account_id, account.state_at(now), len(account.users),
                   account.seat_limit, account.balance_minor, account.currency,
                   account.time_zone, account.oldest_due_at, account.suspends_at)
