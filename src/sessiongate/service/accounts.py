"""Accounts: admin management of accounts (and, later, policies, plans, history)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.api.v1 import accounts_pb2_grpc as pb_grpc
from sessiongate.domain.commits import Change, StoredLedger
from sessiongate.domain.errors import InvalidArgument, NotFound
from sessiongate.domain.model import Account, AccountKind, StateOverride
from sessiongate.domain.parents import MAX_DEPTH, check_ancestry, check_subtree
from sessiongate.domain.proration import MAX_SEAT_LIMIT
from sessiongate.domain.records import HistoryEntry
from sessiongate.domain.validation import (
    check_emails,
    check_id,
    check_ids,
    check_non_negative,
    check_time_zone,
)
from sessiongate.service.convert import account_to_pb, kind_from_pb, state_from_pb
from sessiongate.service.plans import PlanMethods
from sessiongate.service.policies import PolicyMethods
from sessiongate.service.reports import ReportMethods
from sessiongate.service.rpc import Servicer, rpc
from sessiongate.service.runtime import Runtime


def parse_account(msg: pb.Account, now: datetime) -> tuple[Account, StateOverride | None]:
    """Validate an upsert; return the admin-managed fields and the override it asks for."""
    f = "account."
    aid = check_id(f + "account_id", msg.account_id)
    users = check_ids(f + "users", list(msg.users))
    kind = kind_from_pb(f + "kind", msg.kind)
    if kind is AccountKind.CONSUMER and len(set(users)) > 1:
        raise InvalidArgument(f + "users", "a consumer account has one user")
    check_id(f + "policy_id", msg.policy_id, required=False)
    check_id(f + "plan_id", msg.plan_id, required=False)
    check_id(f + "parent_id", msg.parent_id, required=False)
    if msg.parent_id == aid:
        raise InvalidArgument(f + "parent_id", "an account cannot be its own parent")
    if check_non_negative(f + "seat_limit", msg.seat_limit) > MAX_SEAT_LIMIT:
        raise InvalidArgument(f + "seat_limit", f"larger than {MAX_SEAT_LIMIT:,}")
    emails = check_ids(f + "admin_emails", list(msg.admin_emails))
    for i, e in enumerate(emails):
        if "@" not in e or " " in e:
            raise InvalidArgument(f"{f}admin_emails[{i}]", "not an email address")
    report_emails = check_emails(f + "report_emails", list(msg.report_emails))
    currency = msg.currency or "USD"
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidArgument(f + "currency", "must be a 3-letter ISO 4217 code")
    tz = check_time_zone(f + "time_zone", msg.time_zone)
    state = state_from_pb(f + "state", msg.state)
    override = None
    if state is not None:
        override = StateOverride(state, "set by UpsertAccount", "admin", now)
    account = Account(
        account_id=aid,
        kind=kind,
        users=frozenset(users),
        policy_id=msg.policy_id,
        plan_id=msg.plan_id,
        exempt=msg.exempt,
        seat_limit=msg.seat_limit,
        parent_id=msg.parent_id,
        admin_emails=emails,
        time_zone=tz,
        currency=currency.upper(),
        report_emails=report_emails,
    )
    return account, override


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


class AccountsServicer(PolicyMethods, PlanMethods, ReportMethods, Servicer,
                       pb_grpc.AccountsServicer):
    """Account CRUD here; policy methods in policies.py, plan/usage methods in plans.py,
    reports and listing in reports.py."""

    def __init__(self, rt: Runtime) -> None:
        super().__init__(rt.auth, rt.observer)
        self.rt = rt

    @rpc("admin")
    async def UpsertAccount(self, request: pb.UpsertAccountRequest, context: Any) -> pb.Account:
        now = self.rt.clock.now()
        wanted, override = parse_account(request.account, now)
        if wanted.parent_id:
            ancestry = await self._ancestry(wanted.parent_id)
            check_ancestry(wanted.account_id, ancestry, "account.parent_id")
            height = await self.rt.children.height(wanted.account_id, MAX_DEPTH - len(ancestry))
            check_subtree(wanted.account_id, len(ancestry), height, "account.parent_id")

        previous: list[Account | None] = [None]

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

        engine = self.rt.engine
        result, change = await self.rt.accounts.update(wanted.account_id, mutate, self.rt.clock.now)
        assert change is not None
        saved = replace(change.account, version=result.version)
        self.rt.cache.put(saved)
        before = previous[0]
        await self.rt.children.move(saved.account_id,
                                    before.parent_id if before is not None else "",
                                    saved.parent_id)
        # roster / seat-limit intervals for proration (#4)
        await self.log_seats(saved, now, previous=previous[0])
        return account_to_pb(saved, now)

    async def _ancestry(self, parent_id: str) -> list[str]:
        """The stored chain from `parent_id` up (for `check_ancestry`): it ends at an account
        without a parent or an unknown one, at a repeat, or one past MAX_DEPTH."""
        chain: list[str] = []
        current = parent_id
        while current and len(chain) <= MAX_DEPTH:
            chain.append(current)
            if chain.count(current) > 1:
                break
            parent = await self.rt.accounts.get(current)
            current = parent.parent_id if parent is not None else ""
        return chain

    @rpc("admin")
    async def GetAccount(self, request: pb.GetAccountRequest, context: Any) -> pb.Account:
        aid = check_id("account_id", request.account_id)
        account = await self.rt.accounts.get(aid)
        if account is None:
            raise NotFound(f"account_id: no account {aid!r}")
        return account_to_pb(account, self.rt.clock.now())

