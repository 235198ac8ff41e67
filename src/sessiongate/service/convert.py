"""Translation between proto messages and domain values, at the edge only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import overload

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import common_pb2 as cpb
from sessiongate.domain.access import AccessLevel
from sessiongate.domain.decision import Decision, Reason
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.model import Account, AccountKind, AccountState
from sessiongate.domain.proration import ProrationMode
from sessiongate.domain.usage_summary import DailyActivity, FeatureUsage, UsageSummary
from sessiongate.reporting.model import ReportAccount

STATE_TO_PB: dict[AccountState | None, cpb.AccountState.ValueType] = {
    None: cpb.ACCOUNT_STATE_UNSPECIFIED,
    AccountState.ACTIVE: cpb.ACCOUNT_STATE_ACTIVE,
    AccountState.REMINDER: cpb.ACCOUNT_STATE_REMINDER,
    AccountState.GRACE: cpb.ACCOUNT_STATE_GRACE,
    AccountState.SUSPENDED: cpb.ACCOUNT_STATE_SUSPENDED,
    AccountState.CLOSED: cpb.ACCOUNT_STATE_CLOSED,
}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}
DECISION_TO_PB = {Decision.ALLOW: cpb.DECISION_ALLOW, Decision.DENY: cpb.DECISION_DENY}
REASON_TO_PB = {r: cpb.Reason.Value(f"REASON_{r.value}") for r in Reason}
ACCESS_TO_PB: dict[AccessLevel | None, cpb.AccessLevel.ValueType] = {
    None: cpb.ACCESS_LEVEL_UNSPECIFIED,
    AccessLevel.FULL: cpb.ACCESS_LEVEL_FULL,
    AccessLevel.READ_ONLY: cpb.ACCESS_LEVEL_READ_ONLY,
    AccessLevel.NONE: cpb.ACCESS_LEVEL_NONE,
}
ACCESS_FROM_PB = {v: k for k, v in ACCESS_TO_PB.items()}
KIND_TO_PB = {
    AccountKind.ENTERPRISE: apb.ACCOUNT_KIND_ENTERPRISE,
    AccountKind.CONSUMER: apb.ACCOUNT_KIND_CONSUMER,
}
KIND_FROM_PB = {v: k for k, v in KIND_TO_PB.items()}
MODE_TO_PB = {ProrationMode.PRORATA: apb.PRORATION_MODE_PRORATA,
              ProrationMode.WHOLE_PERIOD: apb.PRORATION_MODE_WHOLE_PERIOD,
              ProrationMode.NEXT_PERIOD: apb.PRORATION_MODE_NEXT_PERIOD}
MODE_FROM_PB = {v: k for k, v in MODE_TO_PB.items()}


def state_from_pb(field: str, value: int) -> AccountState | None:
    """UNSPECIFIED -> None; an unknown number (proto3 enums are open) -> INVALID_ARGUMENT."""
    if value not in STATE_FROM_PB:
        raise InvalidArgument(field, f"unknown AccountState value {value}")
    return STATE_FROM_PB[value]  # type: ignore[index]


def access_from_pb(field: str, value: int) -> AccessLevel | None:
    """UNSPECIFIED -> None (the default of the state); an unknown number -> INVALID_ARGUMENT."""
    if value not in ACCESS_FROM_PB:
        raise InvalidArgument(field, f"unknown AccessLevel value {value}")
    return ACCESS_FROM_PB[value]  # type: ignore[index]


def kind_from_pb(field: str, value: int) -> AccountKind:
    if value == apb.ACCOUNT_KIND_UNSPECIFIED:
        return AccountKind.ENTERPRISE
    if value not in KIND_FROM_PB:
        raise InvalidArgument(field, f"unknown AccountKind value {value}")
    return KIND_FROM_PB[value]  # type: ignore[index]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@overload
def ts(when: datetime) -> Timestamp: ...
@overload
def ts(when: None) -> None: ...
def ts(when: datetime | None) -> Timestamp | None:
    """`Timestamp.FromDatetime` (naive: UTC) from integers: its Python is costly per login."""
    if when is None:
        return None
    delta = (when if when.tzinfo is not None else when.replace(tzinfo=UTC)) - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds,
                     nanos=delta.microseconds * 1000)


def lease_ts(ms: int) -> Timestamp:
    """A session's expiry (Unix ms) as answered: the lease as Redis scores it, as
    `wire.session_fields` writes it on the remembered path."""
    return Timestamp(seconds=ms // 1000, nanos=ms % 1000 * 1_000_000)


def from_ts(t: Timestamp) -> datetime:
    return t.ToDatetime(tzinfo=UTC)


def duration(td: timedelta) -> Duration:
    d = Duration()
    d.FromTimedelta(td)
    return d


def account_to_pb(a: Account, now: datetime) -> apb.Account:
    msg = apb.Account(
        account_id=a.account_id,
        state=STATE_TO_PB[a.state_at(now)],
        users=sorted(a.users),
        policy_id=a.policy_id,
        exempt=a.exempt,
        seat_limit=a.seat_limit,
        balance_minor=a.balance_minor,
        kind=KIND_TO_PB[a.kind],
        parent_id=a.parent_id,
        plan_id=a.plan_id,
        admin_emails=list(a.admin_emails),
        time_zone=a.time_zone,
        currency=a.currency,
        version=a.version,
        report_emails=list(a.report_emails),
    )
    for name, when in (
        ("oldest_due_at", a.oldest_due_at),
        ("state_since", a.state_since),
        ("suspends_at", a.suspends_at),
        ("next_evaluation_at", a.next_evaluation_at),
    ):
        if when is not None:
            getattr(msg, name).CopyFrom(ts(when))
    o = a.override
    if o is not None and o.active(now):
        msg.override.CopyFrom(
            apb.StateOverride(
                state=STATE_TO_PB[o.state], reason=o.reason, actor=o.actor, set_at=ts(o.set_at)
            )
        )
        if o.expires_at is not None:
            msg.override.expires_at.CopyFrom(ts(o.expires_at))
    return msg


def summary_to_pb(s: UsageSummary) -> apb.UsageSummary:
    out = apb.UsageSummary(account_id=s.account_id, period=s.period)
    for f in s.features:
        out.features.append(apb.FeatureUsage(feature=f.feature, total=f.total, events=f.events))
    out.peak_concurrent_seats = s.peak_concurrent_seats
    out.seat_seconds = s.seat_seconds
    for mode, amount in s.seat_charges.items():
        out.seat_charges.append(apb.Charge(mode=MODE_TO_PB[mode], amount_minor=amount))
    out.logins = s.logins
    out.active_users = s.active_users
    for d in s.days:
        entry = apb.DailyActivity(day=d.day, logins=d.logins, active_users=d.active_users,
                                  peak_seats_in_use=d.peak_seats_in_use)
        for feature, total in d.usage.items():
            entry.usage[feature] = total
        out.days.append(entry)
    return out


def summary_from_pb(msg: apb.UsageSummary) -> UsageSummary:
    """`GetUsageSummary`'s answer read back (`sessiongate report`)."""
    return UsageSummary(
        account_id=msg.account_id, period=msg.period,
        features=tuple(FeatureUsage(f.feature, f.total, f.events) for f in msg.features),
        peak_concurrent_seats=msg.peak_concurrent_seats, seat_seconds=msg.seat_seconds,
        seat_charges={MODE_FROM_PB[c.mode]: c.amount_minor for c in msg.seat_charges},
        logins=msg.logins, active_users=msg.active_users,
        days=tuple(DailyActivity(d.day, d.logins, d.active_users, d.peak_seats_in_use,
                                 dict(d.usage)) for d in msg.days))


def report_account_from_pb(msg: apb.Account) -> ReportAccount:
    """`GetAccount`'s answer as a report shows it (`sessiongate report`)."""
    return ReportAccount(
        account_id=msg.account_id, state=STATE_FROM_PB[msg.state], roster=len(msg.users),
        seat_limit=msg.seat_limit, balance_minor=msg.balance_minor, currency=msg.currency,
        time_zone=msg.time_zone,
        oldest_due_at=from_ts(msg.oldest_due_at) if msg.HasField("oldest_due_at") else None,
        suspends_at=from_ts(msg.suspends_at) if msg.HasField("suspends_at") else None)
