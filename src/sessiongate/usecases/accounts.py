"""An admin's writes to an account: UpsertAccount's and OverrideState's rules, apart from
gRPC (service/accounts.py parses the request and formats the answer).

An upsert checks the parent chain (no loop, no deeper than `MAX_DEPTH`, the account's own
subtree included), merges the admin-managed fields with the derived ones, records a
state change in history, lets the dunning engine re-evaluate when the policy or the
exemption changed, and commits once (compare-and-set). After the commit it seeds the
near-cache, moves the account in the children index and logs its seats for proration:
those are separate writes (other slots), so a crash between them is repaired by the next
upsert (store/children.py says why that is safe).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sessiongate.domain.clock import Clock
from sessiongate.domain.commits import Change, StoredLedger
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.parents import MAX_DEPTH, check_ancestry, check_subtree
from sessiongate.domain.proration import billable_seats
from sessiongate.domain.records import HistoryEntry
from sessiongate.ports import AccountCommits, Accounts, CacheSeeds, Children, SeatLog
from sessiongate.usecases.dunning import DunningEngine

PARENT_FIELD = "account.parent_id"  # the request field a parent-chain refusal names


def merge(current: Account | None, wanted: Account, override: StateOverride | None,
          now: datetime) -> Account:
    """Admin-managed fields from the request; derived ones (state, ledger summary) kept."""
    if current is None:
        return replace(wanted, state_since=now, created_at=now, override=override)
    return replace(
        current,
        kind=wanted.kind,
        users=wanted.users,
        policy_id=wanted.policy_id,
        plan_id=wanted.plan_id,
        exempt=wanted.exempt,
        seat_limit=wanted.seat_limit,
        parent_id=wanted.parent_id,
        admin_emails=wanted.admin_emails,
        time_zone=wanted.time_zone,
        currency=wanted.currency,
        report_emails=wanted.report_emails,
        override=override if override is not None else current.override,
    )


class AccountAdmin:
    """Built once by app.py over the stores' ports; the servicer hands it parsed values."""

    def __init__(self, accounts: Accounts, commits: AccountCommits, engine: DunningEngine,
                 cache: CacheSeeds, children: Children, seats: SeatLog, clock: Clock) -> None:
        self.accounts = accounts
        self.commits = commits
        self.engine = engine
        self.cache = cache
        self.children = children
        self.seats = seats
        self.clock = clock

    async def upsert(self, wanted: Account, override: StateOverride | None,
                     now: datetime) -> Account:
        """Create or update `wanted` (admin-managed fields, validated) as of `now` (the
        request's time, the override's too); the account as committed."""
        if wanted.parent_id:
            await self._check_parent(wanted)
        previous: list[Account | None] = [None]
        engine = self.engine

        async def mutate(current: Account | None, ledger: StoredLedger) -> Change:
            previous[0] = current  # the version this upsert replaced (of its last attempt)
            account = merge(current, wanted, override, now)
            entry = None
            before = None if current is None else current.state_at(now)
            after = account.state_at(now)
            if before != after:
                entry = HistoryEntry(
                    now, before, after,
                    "account created" if current is None else "set by UpsertAccount", "admin")
            # Re-evaluated by the dunning engine when the policy or the exemption changed.
            return await engine.upsert_change(current, account, ledger, now, entry)

        result, change = await self.commits.update(wanted.account_id, mutate, self.clock.now)
        assert change is not None
        saved = replace(change.account, version=result.version)
        self.cache.put(saved)
        before = previous[0]
        await self.children.move(saved.account_id,
                                 before.parent_id if before is not None else "",
                                 saved.parent_id)
        await self._log_seats(saved, now, before)
        return saved

    async def override(self, account_id: str, state: AccountState | None, reason: str,
                       expires_at: datetime | None, actor: str) -> Account:
        """Set (`state=None`: clear) the admin override through the dunning engine; the
        account as committed, seeded into the near-cache."""
        saved = await self.engine.override(account_id, state, reason, expires_at, actor)
        self.cache.put(saved)
        return saved

    async def _check_parent(self, wanted: Account) -> None:
        """Refuse a parent whose chain would loop or pass `MAX_DEPTH`, counting the levels
        of accounts under `wanted` that move with it."""
        ancestry = await self._ancestry(wanted.parent_id)
        check_ancestry(wanted.account_id, ancestry, PARENT_FIELD)
        height = await self.children.height(wanted.account_id, MAX_DEPTH - len(ancestry))
        check_subtree(wanted.account_id, len(ancestry), height, PARENT_FIELD)

    async def _ancestry(self, parent_id: str) -> list[str]:
        """The stored chain from `parent_id` up (for `check_ancestry`): it ends at an account
        without a parent or an unknown one, at a repeat, or one past MAX_DEPTH."""
        chain: list[str] = []
        current = parent_id
        while current and len(chain) <= MAX_DEPTH:
            chain.append(current)
            if chain.count(current) > 1:
                break
            parent = await self.accounts.get(current)
            current = parent.parent_id if parent is not None else ""
        return chain

    async def _log_seats(self, account: Account, now: datetime,
                         previous: Account | None) -> None:
        """The seat log behind proration: what changed since `previous` (the version the
        commit replaced). Nothing is logged when the billable seats equal those of
        `previous` (its entry already holds them): an upsert that changes anything else
        must not grow the log."""
        seats = billable_seats(account.users, account.seat_limit)
        before = None
        if previous is not None:
            before = (previous.version, billable_seats(previous.users, previous.seat_limit))
            if before[1] == seats:
                return
        await self.seats.log_seats(account.account_id, account.version, seats,
                                   now.astimezone(UTC), before)
