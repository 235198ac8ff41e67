"""Accounts: the admin service's gRPC face. Requests are parsed here (`parse_account`: the
InvalidArgument field names are the request's); the writes' rules are use-cases built once
by app.py (usecases/accounts.py, usecases/policies.py); plain reads read the stores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.api.v1 import accounts_pb2_grpc as pb_grpc
from sessiongate.domain.errors import InvalidArgument, NotFound
from sessiongate.domain.model import Account, AccountKind, StateOverride
from sessiongate.domain.proration import MAX_SEAT_LIMIT
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
from sessiongate.usecases.accounts import AccountAdmin
from sessiongate.usecases.policies import PolicyAdmin


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


class AccountsServicer(PolicyMethods, PlanMethods, ReportMethods, Servicer,
                       pb_grpc.AccountsServicer):
    """Account CRUD here; policy methods in policies.py, plan/usage methods in plans.py,
    reports and listing in reports.py. Proto in, a use-case (built once by app.py), proto
    out."""

    def __init__(self, rt: Runtime, admin: AccountAdmin, policies: PolicyAdmin) -> None:
        super().__init__(rt.auth, rt.observer)
        self.rt = rt
        self.admin = admin  # UpsertAccount's and OverrideState's rules (usecases/accounts.py)
        self.policy_admin = policies

    @rpc("admin")
    async def UpsertAccount(self, request: pb.UpsertAccountRequest, context: Any) -> pb.Account:
        now = self.rt.clock.now()
        wanted, override = parse_account(request.account, now)
        return account_to_pb(await self.admin.upsert(wanted, override, now), now)

    @rpc("admin")
    async def GetAccount(self, request: pb.GetAccountRequest, context: Any) -> pb.Account:
        aid = check_id("account_id", request.account_id)
        account = await self.rt.accounts.get(aid)
        if account is None:
            raise NotFound(f"account_id: no account {aid!r}")
        return account_to_pb(account, self.rt.clock.now())

