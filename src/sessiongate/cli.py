"""The `sessiongate` command: `serve`, and client commands for humans (`account`, `check`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import accounts_pb2_grpc as apb_grpc
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.api.v1 import session_control_pb2_grpc as spb_grpc
from sessiongate.cli_dunning import add_dunning_commands
from sessiongate.cli_output import emit, state_name
from sessiongate.config import Settings
from sessiongate.domain.errors import InvalidArgument
from sessiongate.report import add_report_commands

# Each client subcommand registers here: name -> (add_arguments, run(args, channel) -> exit code)
ClientRun = Callable[[argparse.Namespace, grpc.Channel, list[tuple[str, str]]], int]


def _add_settings_flags(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        env = f.metadata["env"]
        shown = "(secret)" if f.metadata.get("secret") else repr(f.default)
        help_text = f"{f.metadata['help']} [env {env}, default {shown}]"
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, default=None,
                           action=argparse.BooleanOptionalAction, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            p.add_argument(flag, dest=f.name, default=None, type=kind,
                           choices=f.metadata.get("choices"), help=help_text)


def _settings(ns: argparse.Namespace) -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)}
    return Settings.from_env(**{k: v for k, v in vars(ns).items() if k in names})


def cmd_serve(ns: argparse.Namespace) -> int:
    from sessiongate.logs import configure

    settings = _settings(ns)
    configure(settings.log_level, settings.log_format)
    if settings.workers > 1:
        from sessiongate.workers import run_workers

        return run_workers(settings)
    from sessiongate.app import Application

    ready = _greet if sys.stdout.isatty() else None
    asyncio.run(Application(settings).serve_forever(ready))
    return 0


def _greet(app: Any) -> None:
    """One line for a human at a terminal: where it listens, where its data is, what to try."""
    s = app.settings
    data = f"data in {s.data_dir}" if app.embedded is not None else "Redis at " + s.redis_url
    cli = Path(sys.argv[0])
    with contextlib.suppress(ValueError):
        cli = cli.absolute().relative_to(Path.cwd())
    # The CLI reads the same variable; only a `--grpc-addr` flag needs repeating.
    env_addr = os.environ.get("SESSIONGATE_GRPC_ADDR", Settings.grpc_addr)
    addr = "" if s.grpc_addr == env_addr else f" --addr {s.grpc_addr}"
    print(f"sessiongate is serving on {s.grpc_addr}, {data}. Try: {cli} account upsert"
          f"{addr} acme --user alice && {cli} check{addr} acme alice  (Ctrl-C stops it)",
          flush=True)


def _channel(ns: argparse.Namespace) -> tuple[grpc.Channel, list[tuple[str, str]]]:
    settings = Settings.from_env()
    addr = ns.addr or settings.grpc_addr
    token = ns.token or settings.token
    metadata = [("authorization", f"Bearer {token}")] if token else []
    if ns.tls_ca or settings.tls_cert:
        ca = Path(ns.tls_ca).read_bytes() if ns.tls_ca else None
        return grpc.secure_channel(addr, grpc.ssl_channel_credentials(ca)), metadata
    return grpc.insecure_channel(addr), metadata


def _account_text(a: apb.Account) -> str:
    lines = [
        f"account   {a.account_id}  (version {a.version})",
        f"state     {state_name(a.state)}" + ("  [exempt]" if a.exempt else ""),
        f"kind      {apb.AccountKind.Name(a.kind).removeprefix('ACCOUNT_KIND_')}",
        f"users     {', '.join(a.users) or '(any user)'}",
        f"seats     {a.seat_limit or 'unlimited'}",
        f"policy    {a.policy_id or '(default)'}   plan {a.plan_id or '(none)'}",
        f"balance   {a.balance_minor} {a.currency} (minor units)",
    ]
    if a.HasField("oldest_due_at"):
        lines.append(f"due since {a.oldest_due_at.ToDatetime().isoformat()}Z")
    if a.HasField("suspends_at"):
        lines.append(f"suspends  {a.suspends_at.ToDatetime().isoformat()}Z")
    if a.HasField("override"):
        lines.append(f"override  {state_name(a.override.state)}: {a.override.reason}")
    return "\n".join(lines)


def cmd_account_upsert(ns: argparse.Namespace, ch: grpc.Channel, md: list[tuple[str, str]]) -> int:
    stub = apb_grpc.AccountsStub(ch)
    account = apb.Account(
        account_id=ns.account_id, users=ns.user or [], policy_id=ns.policy or "",
        plan_id=ns.plan or "", exempt=ns.exempt, seat_limit=ns.seat_limit,
        admin_emails=ns.admin_email or [], currency=ns.currency or "", parent_id=ns.parent or "",
        report_emails=ns.report_email or [], time_zone=ns.time_zone or "",
        kind=apb.AccountKind.Value(f"ACCOUNT_KIND_{ns.kind.upper()}"),
    )
    if ns.state:
        account.state = cpb.AccountState.Value(f"ACCOUNT_STATE_{ns.state.upper()}")
    got = stub.UpsertAccount(apb.UpsertAccountRequest(account=account), metadata=md, timeout=10)
    emit(ns, got, _account_text(got))
    return 0


def cmd_account_get(ns: argparse.Namespace, ch: grpc.Channel, md: list[tuple[str, str]]) -> int:
    got = apb_grpc.AccountsStub(ch).GetAccount(
        apb.GetAccountRequest(account_id=ns.account_id), metadata=md, timeout=10
    )
    emit(ns, got, _account_text(got))
    return 0


def cmd_check(ns: argparse.Namespace, ch: grpc.Channel, md: list[tuple[str, str]]) -> int:
    resp = spb_grpc.SessionControlStub(ch).CheckSession(
        spb.CheckSessionRequest(account_id=ns.account_id, user_id=ns.user_id,
                                feature=ns.feature or "", no_session=not ns.open_session),
        metadata=md, timeout=10,
    )
    decision = cpb.Decision.Name(resp.decision).removeprefix("DECISION_")
    reason = cpb.Reason.Name(resp.reason).removeprefix("REASON_")
    emit(ns, resp, f"{decision}  {state_name(resp.state)}  {reason}\n{resp.message}")
    return 0 if resp.decision == cpb.DECISION_ALLOW else 3


def cmd_health(ns: argparse.Namespace, ch: grpc.Channel, md: list[tuple[str, str]]) -> int:
    """The container's HEALTHCHECK and a probe for humans: exit 0 only when SERVING."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    resp = health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service=ns.service), timeout=ns.timeout)
    emit(ns, resp, health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status))
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1


def build_parser(extra: Sequence[Callable[[Any], None]] = ()) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sessiongate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the sidecar",
                           description="Run the sidecar. Every setting is a flag and an"
                           " environment variable; flags win.")
    _add_settings_flags(serve)
    serve.set_defaults(func=cmd_serve)

    def client(name: str, parent: Any, run: ClientRun, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help)
        p.add_argument("--addr", help="server address [env SESSIONGATE_GRPC_ADDR]")
        p.add_argument("--token", help="bearer token [env SESSIONGATE_TOKEN]")
        p.add_argument("--tls-ca", help="CA certificate to verify a TLS server")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(client=run)
        return p

    account = sub.add_parser("account", help="manage accounts").add_subparsers(
        dest="action", required=True)
    up = client("upsert", account, cmd_account_upsert, "create or update an account")
    up.add_argument("account_id")
    up.add_argument("--user", action="append", help="a roster user (repeat)")
    up.add_argument("--seat-limit", type=int, default=0)
    up.add_argument("--policy")
    up.add_argument("--plan")
    up.add_argument("--parent")
    up.add_argument("--currency")
    up.add_argument("--admin-email", action="append")
    up.add_argument("--report-email", action="append", help="receives the monthly report")
    up.add_argument("--time-zone", help="IANA name (default UTC): when the report is sent")
    up.add_argument("--exempt", action="store_true")
    up.add_argument("--kind", choices=["enterprise", "consumer"], default="enterprise")
    up.add_argument("--state", choices=["active", "reminder", "grace", "suspended", "closed"],
                    help="set an override (closing an account)")
    get = client("get", account, cmd_account_get, "show an account")
    get.add_argument("account_id")
    add_dunning_commands(account, sub, client)

    check = client("check", sub, cmd_check, "ask the login question (exit 0 allow, 3 deny)")
    check.add_argument("account_id")
    check.add_argument("user_id")
    check.add_argument("--feature")
    check.add_argument("--open-session", action="store_true", help="open a session if allowed")
    health = client("health", sub, cmd_health, "probe gRPC health (exit 0 SERVING, else 1)")
    health.add_argument("--service", default="", help="one service's health (default: server)")
    health.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    add_report_commands(sub, client)
    for add in extra:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        if hasattr(ns, "client"):
            channel, metadata = _channel(ns)
            with channel:
                return int(ns.client(ns, channel, metadata))
        return int(ns.func(ns))
    except InvalidArgument as exc:
        print(f"sessiongate: {exc}", file=sys.stderr)
        return 2
    except grpc.RpcError as exc:
        print(f"sessiongate: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
