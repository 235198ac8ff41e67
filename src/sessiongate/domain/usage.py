"""A usage event as recorded, and how a write of many of them can fall short."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sessiongate.domain.errors import AlreadyExists


@dataclass(frozen=True, slots=True)
class UsageRecord:
    event_id: str
    account_id: str
    user_id: str
    feature: str
    quantity: int
    occurred_at: datetime
    attributes: dict[str, str] = field(default_factory=dict)
    stated_at: bool = True  # occurred_at came with the event (not the time it arrived)


class ConflictingDuplicates(AlreadyExists):
    """Events whose id was recorded with other content (`positions` in the call's events);
    the call's other events were recorded."""

    def __init__(self, positions: list[int]) -> None:
        super().__init__("event_id", "recorded before with other content (an event id names "
                         "one event: use a new id)")
        self.positions = positions


class Unrecorded(Exception):
    """A bulk write stopped at a failed call: the first `done` events are recorded (or were
    duplicates), the rest are not, but for the failed call's after a timeout (it may have
    run): a retry of them counts each event once. `cause` is the domain error of a refusal
    (nothing of that call written), else the backend's."""

    def __init__(self, done: int, cause: Exception) -> None:
        super().__init__(f"{done} events recorded before: {cause}")
        self.done = done
        self.cause = cause
