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
