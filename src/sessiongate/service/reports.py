"""Accounts methods of issue 29: `SendReport` (a report now, through the outbox),
`SendDigest` (the vendor's digest now) and `ListAccounts` (filters and pages over every
account)."""

from __future__ import annotations

import json
from typing import Any

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.model import Account
from sessiongate.domain.validation import check_id
from sessiongate.service.billing import timestamp_field
from sessiongate.service.convert import account_to_pb, state_from_pb
from sessiongate.service.rpc import rpc
from sessiongate.service.runtime import Runtime
from sessiongate.store.listing import account_ids, read_accounts

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class ReportMethods:
    """Mixed into AccountsServicer; `self.rt` is the shared runtime, with the report builder
    and the digest app.py built once (reporting/)."""

    rt: Runtime

    @rpc("admin")
    async def SendReport(self, request: pb.SendReportRequest,
                         context: Any) -> pb.SendReportResponse:
        account_id = check_id("account_id", request.account_id)
        nid, period = await self.rt.reports.send_now(account_id, request.period,
                                                     self.rt.clock.now(),
                                                     children=request.children)
        return pb.SendReportResponse(notification_id=nid, period=period)

    @rpc("admin")
    async def SendDigest(self, request: pb.SendDigestRequest,
                         context: Any) -> pb.SendDigestResponse:
        digest = self.rt.digest
        if request.preview:
            body = await digest.preview()
            return pb.SendDigestResponse(body_json=json.dumps(body.wire(), indent=2))
        body = await digest.send_now()
        return pb.SendDigestResponse(notification_id=body.id,
                                     body_json=json.dumps(body.wire(), indent=2))

    @rpc("admin")
    async def ListAccounts(self, request: pb.ListAccountsRequest,
                           context: Any) -> pb.ListAccountsResponse:
        if request.page_size < 0:
            raise InvalidArgument("page_size", "must not be negative")
        if request.page_size > MAX_PAGE:
            raise InvalidArgument("page_size", f"larger than {MAX_PAGE}")
        size = request.page_size or DEFAULT_PAGE
        check_id("parent_id", request.parent_id, required=False)
        check_id("page_token", request.page_token, required=False)
        state = state_from_pb("state", request.state)
        before = timestamp_field(request, "suspends_before")
        now = self.rt.clock.now()

        def keep(a: Account) -> bool:
            return ((state is None or a.state_at(now) is state)
                    and (not request.parent_id or a.parent_id == request.parent_id)
                    and (before is None or (a.suspends_at is not None
                                            and a.suspends_at < before)))

        ids = await account_ids(self.rt.transport, after=request.page_token)
        out = pb.ListAccountsResponse()
        batch = max(size, 100)
        for i in range(0, len(ids), batch):
            for a in await read_accounts(self.rt.transport, ids[i:i + batch]):
                if not keep(a):
                    continue
                if len(out.accounts) == size:
                    out.next_page_token = out.accounts[-1].account_id
                    return out
                out.accounts.append(account_to_pb(a, now))
        return out
