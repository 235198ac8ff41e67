"""What the use-cases (usecases/) need from the outside, as Protocols.

The Redis side satisfies them (store/accounts.py, store/nearcache.py, store/policies.py,
store/sessions.py, store/batch.py, store/plans.py, store/usage.py, store/children.py),
app.py hands the real
ones in, and the use-cases never import redis or grpc: a use-case
reads an account through the near-cache port and a policy through the policy port, and
tells "the backend cannot answer" by the exceptions the port names (`unavailable`). The
dunning engine reads and commits through `AccountCommits`, in the values of
domain/commits.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Protocol

from sessiongate.domain.commits import Change, CommitResult, Mutator, StoredLedger
from sessiongate.domain.entitlements import Consumed, Feature, Plan
from sessiongate.domain.ledger import Ledger
from sessiongate.domain.model import Account
from sessiongate.domain.policy import DunningPolicy
from sessiongate.domain.proration import Seats
from sessiongate.domain.sessions import SeatResult, SessionRef
from sessiongate.domain.usage import UsageRecord


class Accounts(Protocol):
    """Account snapshots by id (store/accounts.py's `AccountStore`)."""

    async def get(self, account_id: str) -> Account | None: ...


class Snapshot(Protocol):
    """One account snapshot as the near-cache holds it; its identity is the snapshot's (a
    reload or an invalidation makes a new one): what is derived from it may be kept as long
    as it is held (service/answer_memo.py)."""

    @property
    def account(self) -> Account | None: ...  # None: known not to exist


class AccountCache(Protocol):
    """The near-cache in front of `Accounts` (store/nearcache.py's `NearCache`)."""

    @property
    def unavailable(self) -> tuple[type[Exception], ...]:
        """What its reads raise when the backend cannot answer (the failure mode decides)."""
        ...

    def hit(self, account_id: str) -> tuple[Snapshot, int] | None:
        """A fresh snapshot and its age in ms (counted), or None (a miss, counted)."""
        ...

    async def load(self, account_id: str) -> Snapshot:
        """Read the backend; raises one of `unavailable` when it cannot answer."""
        ...

    def last_known(self, account_id: str) -> tuple[Snapshot, int] | None:
        """The newest snapshot however old and its age in ms, within the `static` failure
        mode's bound."""
        ...


class CacheSeeds(Protocol):
    """The near-cache's seeding (store/nearcache.py's `NearCache.put`): a version this
    process just committed is read from here at once, without waiting for the
    invalidation to come round."""

    def put(self, account: Account) -> None: ...


class Children(Protocol):
    """Which accounts name an account as their parent (store/children.py's
    `ChildrenIndex`): what the depth rule of parent chains needs to see below an account."""

    async def move(self, account_id: str, old_parent: str, new_parent: str) -> None:
        """`account_id` now names `new_parent` ("" none) instead of `old_parent`."""
        ...

    async def height(self, account_id: str, limit: int) -> int:
        """Levels of descendants under `account_id`, counted up to `limit + 1`."""
        ...


class SeatLog(Protocol):
    """The seat log behind proration (store/usage.py's `UsageStore.log_seats`)."""

    async def log_seats(self, account_id: str, version: int, seats: Seats, at: datetime,
                        previous: tuple[int, Seats] | None = None) -> None:
        """Log the billable seats of `version` as of `at`: what changed since `previous`
        (the replaced version and its seats), or the whole roster when there is none."""
        ...


class Policies(Protocol):
    """The dunning policy of an account, as login checks read it (store/policies.py's
    `PolicyCache`: never raises, the last known or built-in policy answers)."""

    async def for_account(self, policy_id: str) -> DunningPolicy: ...


class StoredPolicies(Policies, Protocol):
    """The dunning policies as stored, read fresh (store/policies.py's `PolicyStore`): what
    a commit is evaluated by; its reads raise when the backend cannot answer."""

    async def for_accounts(self, policy_ids: Iterable[str]) -> dict[str, DunningPolicy]:
        """`for_account` of each policy id (as accounts name them, "" too), in one read."""
        ...


class PolicyWrites(Protocol):
    """Storing a dunning policy (store/policies.py's `PolicyStore.put`)."""

    async def put(self, policy: DunningPolicy) -> None: ...


class PolicySeeds(Protocol):
    """The login checks' policy cache (store/policies.py's `PolicyCache.put`): a policy
    just stored is seen at once by the accounts naming it."""

    def put(self, policy: DunningPolicy) -> None: ...


class AccountCommits(Protocol):
    """An account with its ledger, read and committed by compare-and-set
    (store/accounts.py's `AccountStore`). A ledger comes back in its stored form and is
    decoded only on demand (`ledger_of`), and a `Change` carries the ledger it was made
    from, so a batch decodes only the ledgers it uses and writes only what changed."""

    async def read(self, account_id: str) -> tuple[Account | None, StoredLedger]: ...

    async def read_many(self, account_ids: Sequence[str]
                        ) -> list[tuple[Account | None, StoredLedger]]:
        """`read` of each account, in one round trip."""
        ...

    def ledger_of(self, stored: StoredLedger, account_id: str) -> Ledger:
        """The ledger a read returned, decoded."""
        ...

    async def commit_many(self, changes: Sequence[tuple[Change, int]], now: datetime
                          ) -> list[CommitResult | Exception]:
        """Commit each (change, expected version), in one round trip; each is atomic on its
        own (compare-and-set), and a failed one is answered as its exception."""
        ...

    async def update(self, account_id: str, mutate: Mutator, now: Callable[[], datetime]
                     ) -> tuple[CommitResult, Change | None]:
        """Read, `mutate` (pure: it may run more than once), compare-and-set; retried while
        another writer wins the race."""
        ...


class SessionLeases(Protocol):
    """Session leases and seats (store/sessions.py's `SessionStore`): each call one atomic
    step."""

    @property
    def unavailable(self) -> tuple[type[Exception], ...]:
        """What its calls raise when the backend cannot answer."""
        ...

    async def take(self, ref: SessionRef, now: datetime, expires: datetime, seat_limit: int,
                   *, login: bool = False) -> SeatResult:
        """Open or renew `ref`'s lease until `expires`, taking a seat if its user holds none
        (refused when all `seat_limit` are taken; 0: no limit); with `login`, the login's
        records go in the same step if admitted."""
        ...

    async def end(self, ref: SessionRef, now: datetime) -> bool:
        """End the lease, giving its seat back; False: it was not open."""
        ...


class LoginRecords(Protocol):
    """Logins of accounts without a seat limit, written off the hot path (store/batch.py's
    `BatchWriter`): `login` never waits for the backend."""

    @property
    def pending(self) -> int: ...  # records queued, not yet written

    def login(self, ref: SessionRef, at_ms: int, expires_ms: int) -> None:
        """Queue the login record (at `at_ms`, Unix ms) and the session's lease until
        `expires_ms`."""
        ...

    async def flush(self) -> int:
        """Write what is queued now; the number of records written."""
        ...


class Plans(Protocol):
    """Plans (cached) and the quota counters of metered features (store/plans.py's
    `PlanStore`)."""

    @property
    def unavailable(self) -> tuple[type[Exception], ...]:
        """What its calls raise when the backend cannot answer."""
        ...

    async def get(self, plan_id: str) -> Plan | None: ...

    async def used(self, account_id: str, feature: Feature, now: datetime) -> int:
        """Units of `feature` counted in the window holding `now`."""
        ...

    async def consume(self, account_id: str, feature: Feature, quantity: int, event_id: str,
                      now: datetime, user_id: str = "") -> Consumed:
        """Count `quantity` units in one atomic step (refused past a hard limit); a reused
        `event_id` is a duplicate, or a conflict when its content differs."""
        ...


class UsageEvents(Protocol):
    """The usage log (store/usage.py's `UsageStore`): each event id recorded once."""

    @property
    def retention_ms(self) -> int:
        """How long event ids are remembered (ms): an older event could count twice."""
        ...

    async def record(self, events: Sequence[UsageRecord], now: datetime) -> list[bool]:
        """Per event: True recorded, False a duplicate. Raises `ConflictingDuplicates`
        (domain/usage.py) after recording the others."""
        ...

    async def record_in_order(self, events: Sequence[UsageRecord], now: datetime
                              ) -> list[bool]:
        """`record` in the events' order, what is recorded always a prefix: a failure raises
        `Unrecorded` (domain/usage.py) with the number of events before it."""
        ...
