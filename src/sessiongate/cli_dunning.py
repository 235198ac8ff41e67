"""CLI commands of the dunning engine: history, preview, overrides, policies, invoices, payments.

Registered by `cli.build_parser`; each prints a readable table, or the message with --json.
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import billing_pb2 as bpb
from sessiongate.api.v1 import billing_pb2_grpc as bpb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.cli_output import emit, state_name
from sessiongate.domain.errors import InvalidArgument

Metadata = list[tuple[str, str]]
STATES = ["active", "reminder", "grace", "suspended", "closed"]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _when(t: Timestamp) -> str:
    return t.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _stamp(field: str, text: str) -> Timestamp:
    try:
        when = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise InvalidArgument(field, f"{text!r} is not an ISO 8601 time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    t = Timestamp()
    t.FromDatetime(when)
    return t


def _expiry(text: str) -> Timestamp:
    """`--expires`: a duration from now (`7d`) or an ISO 8601 time."""
    if re.fullmatch(r"\d+[smhd]?", text.strip()):
        t = Timestamp()
        t.FromDatetime(datetime.now(UTC) + parse_duration("--expires", text))
        return t
    return _stamp("--expires", text)


def parse_duration(field: str, text: str) -> timedelta:
    """`90`, `90s`, `5m`, `2h`, `15d`."""
    m = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not m:
        raise InvalidArgument(field, f"{text!r} is not a duration like 30s, 5m, 2h or 15d")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2) or "s"])


def cmd_history(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata) -> int:
    resp = apb_grpc.AccountsStub(ch).GetAccountHistory(
        apb.GetAccountHistoryRequest(account_id=ns.account_id, limit=ns.limit),
        metadata=md, timeout=10)
    lines = [f"{_when(t.at)}  {state_name(t.from_state) if t.from_state else '(new)':<10} -> "
             f"{state_name(t.to_state):<10} "
             f"{t.actor:<10} {t.cause}" + (f"  [{t.event_id}]" if t.event_id else "")
             for t in resp.transitions]
    emit(ns, resp, "\n".join(lines) or "(no transitions)")
    return 0


def cmd_preview(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata) -> int:
    resp = apb_grpc.AccountsStub(ch).PreviewDunning(
        apb.PreviewDunningRequest(account_id=ns.account_id), metadata=md, timeout=10)
    lines = [f"balance {resp.balance_minor} (minor units); if nothing is paid:"]
    lines += [f"  {_when(e.at)}  {state_name(e.state)}" for e in resp.timeline]
    emit(ns, resp, "\n".join(lines))
    return 0


def cmd_override(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata) -> int:
    req = apb.OverrideStateRequest(account_id=ns.account_id, reason=ns.reason or "",
                                   actor=ns.actor or "")
    if ns.state != "clear":
        req.state = cpb.AccountState.Value(f"ACCOUNT_STATE_{ns.state.upper()}")
    if ns.expires:
        req.expires_at.CopyFrom(_expiry(ns.expires))
    got = apb_grpc.AccountsStub(ch).OverrideState(req, metadata=md, timeout=10)
    emit(ns, got, f"{got.account_id}: {state_name(got.state)}"
           + (f" (override: {got.override.reason})" if got.HasField("override") else ""))
    return 0


def _policy_text(p: apb.DunningPolicy) -> str:
    lines = [f"policy    {p.policy_id}",
             f"reminders every {p.reminder_interval.ToTimedelta()}, tolerance "
             f"{p.tolerance_minor} (minor units)"]
    for s in p.stages:
        extra = f" (balance >= {s.min_balance_minor})" if s.min_balance_minor else ""
        lines.append(f"  {state_name(s.state):<10} {s.after.ToTimedelta()} past due{extra}")
    return "\n".join(lines)


def cmd_policy_set(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata) -> int:
    policy = apb.DunningPolicy(policy_id=ns.policy_id, tolerance_minor=ns.tolerance)
    for i, spec in enumerate(ns.stage or []):
        name, _, after = spec.partition("=")
        if name.lower() not in STATES or not after:
            raise InvalidArgument(f"--stage[{i}]", f"{spec!r}: use STATE=DURATION, e.g. grace=15d")
        stage = policy.stages.add(state=cpb.AccountState.Value(f"ACCOUNT_STATE_{name.upper()}"))
        stage.after.FromTimedelta(parse_duration(f"--stage[{i}]", after))
    if ns.interval:
        policy.reminder_interval.FromTimedelta(parse_duration("--interval", ns.interval))
    got = apb_grpc.AccountsStub(ch).UpsertPolicy(policy, metadata=md, timeout=10)
    emit(ns, got, _policy_text(got))
    return 0


def cmd_policy_get(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata) -> int:
    got = apb_grpc.AccountsStub(ch).GetPolicy(apb.GetPolicyRequest(policy_id=ns.policy_id),
                                              metadata=md, timeout=10)
    emit(ns, got, _policy_text(got))
    return 0


def _push(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata, event: bpb.PaymentEvent
          ) -> int:
    event.event_id = ns.event_id or f"cli-{uuid.uuid4()}"
    resp = bpb_grpc.BillingStub(ch).PushPaymentEvent(event, metadata=md, timeout=10)
    dup = "  (duplicate: nothing changed)" if resp.duplicate else ""
    emit(ns, resp, f"{event.event_id}: {state_name(resp.state)}, balance {resp.balance_minor}{dup}")
    return 0


def cmd_invoice(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata) -> int:
    event = bpb.PaymentEvent(account_id=ns.account_id, invoice_id=ns.invoice_id,
                             type=bpb.PAYMENT_EVENT_TYPE_INVOICE_ISSUED,
                             amount_minor=ns.amount_minor, currency=ns.currency or "")
    event.due_at.CopyFrom(_stamp("--due", ns.due))
    return _push(ns, ch, md, event)


def cmd_pay(ns: argparse.Namespace, ch: grpc.Channel, md: Metadata) -> int:
    event = bpb.PaymentEvent(account_id=ns.account_id, amount_minor=ns.amount_minor,
                             type=bpb.PAYMENT_EVENT_TYPE_PAYMENT_SUCCEEDED,
                             currency=ns.currency or "", invoice_id=ns.invoice or "")
    return _push(ns, ch, md, event)


Client = Callable[..., argparse.ArgumentParser]


def add_dunning_commands(account: Any, sub: Any, client: Client) -> None:
    """`account history|preview|override`, `policy set|get`, `invoice`, `pay`."""
    p = client("history", account, cmd_history, "list an account's state transitions")
    p.add_argument("account_id")
    p.add_argument("--limit", type=int, default=0, help="only the last N")
    p = client("preview", account, cmd_preview, "the dunning timeline if nothing is paid")
    p.add_argument("account_id")
    p = client("override", account, cmd_override, "set or clear an admin state override")
    p.add_argument("account_id")
    p.add_argument("state", choices=[*STATES, "clear"])
    p.add_argument("--reason")
    p.add_argument("--expires", help="when the override ends: a duration from now (7d, 12h)"
                   " or an ISO 8601 time (default: never)")
    p.add_argument("--actor")

    policy = sub.add_parser("policy", help="dunning policies").add_subparsers(
        dest="action", required=True)
    p = client("set", policy, cmd_policy_set, "create or replace a dunning policy")
    p.add_argument("policy_id")
    p.add_argument("--stage", action="append", help="STATE=DURATION, e.g. grace=15d (repeat)")
    p.add_argument("--interval", help="reminder interval, e.g. 1d (default 1d)")
    p.add_argument("--tolerance", type=int, default=0, help="settled at or under (minor units)")
    p = client("get", policy, cmd_policy_get, "show a dunning policy")
    p.add_argument("policy_id")

    p = client("invoice", sub, cmd_invoice, "push an INVOICE_ISSUED event")
    p.add_argument("account_id")
    p.add_argument("invoice_id")
    p.add_argument("amount_minor", type=int)
    p.add_argument("--due", required=True, help="ISO 8601 due date")
    p.add_argument("--currency")
    p.add_argument("--event-id")
    p = client("pay", sub, cmd_pay, "push a PAYMENT_SUCCEEDED event")
    p.add_argument("account_id")
    p.add_argument("amount_minor", type=int)
    p.add_argument("--invoice")
    p.add_argument("--currency")
    p.add_argument("--event-id")
