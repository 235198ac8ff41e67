"""`sessiongate report`: an account's monthly report, written as JSON, CSV and a PNG chart,
or sent now through the server's outbox (`--send`, the `SendReport` RPC: the same path as the
monthly job). `sessiongate accounts`: list accounts by state, parent or suspension date.
`sessiongate digest`: the vendor's daily digest, printed or sent now.

The content is `reporting/content.py`'s, from `GetAccount`, `GetPlan` and `GetUsageSummary`
(the same figures billing sees) read back into the report's model (`service/convert.py`).
The chart needs the `sessiongate[report]` extra (matplotlib); without it the report is
written without the PNG and says so.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.cli_output import emit, state_name
from sessiongate.domain.usage_summary import UsageSummary
from sessiongate.reporting import chart, content
from sessiongate.reporting.due import month_before
from sessiongate.service.convert import report_account_from_pb, summary_from_pb


def write(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write `<account>-<month>.json`, `.csv` (one row per day) and `.png` (with the
    `report` extra installed); return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{report['account_id']}-{report['period']}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv")]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(content.to_csv(report))
    png = chart.render_png(report)
    if png is not None:
        paths.append(stem.with_suffix(".png"))
        paths[2].write_bytes(png)
    return paths


def cmd_report(ns: Any, channel: Any, metadata: list[tuple[str, str]]) -> int:
    """`sessiongate report ACCOUNT --month YYYY-MM [--out DIR] [--send] [--children]`."""
    from sessiongate.api.v1 import accounts_pb2_grpc
    from sessiongate.service.plans import plan_from_pb

    stub = accounts_pb2_grpc.AccountsStub(channel)
    if ns.send:
        resp = stub.SendReport(pb.SendReportRequest(account_id=ns.account_id,
                                                    period=ns.month or "",
                                                    children=ns.children),
                               metadata=metadata, timeout=60)
        emit(ns, resp, f"queued {resp.notification_id} ({resp.period})")
        return 0
    if not ns.month:
        print("sessiongate: --month: required unless --send", file=sys.stderr)
        return 2
    account = stub.GetAccount(pb.GetAccountRequest(account_id=ns.account_id),
                              metadata=metadata, timeout=10)

    def summary(account_id: str, month: str) -> UsageSummary:
        return summary_from_pb(stub.GetUsageSummary(
            pb.GetUsageSummaryRequest(account_id=account_id, period=month,
                                      seat_unit_price_minor=ns.seat_price),
            metadata=metadata, timeout=30))

    plan = (plan_from_pb(stub.GetPlan(pb.GetPlanRequest(plan_id=account.plan_id),
                                      metadata=metadata, timeout=10))
            if account.plan_id else None)
    report = content.build(report_account_from_pb(account), summary(ns.account_id, ns.month),
                           summary(ns.account_id, month_before(ns.month)), plan)
    if ns.children:
        kids = stub.ListAccounts(pb.ListAccountsRequest(parent_id=ns.account_id,
                                                        page_size=1000),
                                 metadata=metadata, timeout=60)
        report["children"] = [content.child_line(report_account_from_pb(c),
                                                 summary(c.account_id, ns.month))
                              for c in kids.accounts]
    for path in write(report, Path(ns.out)):
        print(path)
    if not chart.available():
        print("no chart: install sessiongate[report] (matplotlib) for the PNG", file=sys.stderr)
    return 0


def cmd_accounts(ns: Any, channel: Any, metadata: list[tuple[str, str]]) -> int:
    """`sessiongate accounts [--state S] [--parent P] [--suspends-before T]`: every page."""
    from sessiongate.api.v1 import accounts_pb2_grpc
    from sessiongate.api.v1 import common_pb2 as cpb
    from sessiongate.cli_dunning import _stamp

    stub = accounts_pb2_grpc.AccountsStub(channel)
    req = pb.ListAccountsRequest(parent_id=ns.parent or "", page_size=ns.page_size)
    if ns.state:
        req.state = cpb.AccountState.Value(f"ACCOUNT_STATE_{ns.state.upper()}")
    if ns.suspends_before:
        req.suspends_before.CopyFrom(_stamp("suspends_before", ns.suspends_before))
    found = pb.ListAccountsResponse()
    while True:
        page = stub.ListAccounts(req, metadata=metadata, timeout=60)
        found.accounts.extend(page.accounts)
        if not page.next_page_token:
            break
        req.page_token = page.next_page_token
    lines = [f"{a.account_id:<24} {state_name(a.state):<10} {a.balance_minor:>12} {a.currency}"
             + (f"  suspends {a.suspends_at.ToDatetime(tzinfo=UTC):%Y-%m-%d %H:%M} UTC"
                if a.HasField("suspends_at") else "")
             for a in found.accounts]
    emit(ns, found, "\n".join(lines) or "(no accounts)")
    return 0


def cmd_digest(ns: Any, channel: Any, metadata: list[tuple[str, str]]) -> int:
    """`sessiongate digest [--send]`: the server builds the vendor's digest; print it, or
    with --send put it in the outbox now (`SendDigest`)."""
    from sessiongate.api.v1 import accounts_pb2_grpc

    got = accounts_pb2_grpc.AccountsStub(channel).SendDigest(
        pb.SendDigestRequest(preview=not ns.send), metadata=metadata, timeout=60)
    print(f"sent {got.notification_id}" if ns.send else got.body_json)
    return 0


def add_report_commands(sub: Any, client: Any) -> None:
    report = client("report", sub, cmd_report,
                    "an account's monthly report: write JSON, CSV, PNG, or --send it")
    report.add_argument("account_id")
    report.add_argument("--month", help="calendar month YYYY-MM (UTC); with --send, default:"
                        " last month in the account's time zone")
    report.add_argument("--out", default=".", help="output directory (default: .)")
    report.add_argument("--seat-price", type=int, default=0, help="seat unit price, minor units")
    report.add_argument("--send", action="store_true",
                        help="deliver it now through the server's outbox (a resend)")
    report.add_argument("--children", action="store_true",
                        help="a channel partner's report: each child's seats, usage, standing")
    accounts = client("accounts", sub, cmd_accounts, "list accounts")
    accounts.add_argument("--state", choices=["active", "reminder", "grace", "suspended",
                                              "closed"])
    accounts.add_argument("--parent", help="children of this account")
    accounts.add_argument("--suspends-before", help="ISO 8601 time")
    accounts.add_argument("--page-size", type=int, default=500)
    digest = client("digest", sub, cmd_digest,
                    "the vendor's daily digest: print it, or --send it")
    digest.add_argument("--send", action="store_true", help="put it in the outbox now")
