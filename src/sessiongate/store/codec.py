"""Account <-> JSON, as stored in Redis. Times are integer Unix milliseconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sessiongate.domain.model import Account, AccountKind, AccountState, StateOverride

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(when: datetime | None) -> int | None:
    """Exact (integer arithmetic: through a float, 1.001 s came out as 1000 ms)."""
    if when is None:
        return None
    if when.tzinfo is None:
        return int(when.timestamp() * 1000)
    return (when - _EPOCH) // _MS


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else _EPOCH + timedelta(milliseconds=ms)


def _override_to_dict(o: StateOverride) -> dict[str, Any]:
    d: dict[str, Any] = {"state": o.state.value, "set_at": to_ms(o.set_at)}
    for key, value in (("reason", o.reason), ("actor", o.actor),
                       ("expires_at", to_ms(o.expires_at))):
        if value:
            d[key] = value
    return d


def _override_from_dict(d: dict[str, Any] | None) -> StateOverride | None:
    if not d:
        return None
    set_at = from_ms(d["set_at"])
    assert set_at is not None
    return StateOverride(
        state=AccountState(d["state"]),
        reason=d.get("reason", ""),
        actor=d.get("actor", ""),
        set_at=set_at,
        expires_at=from_ms(d.get("expires_at")),
    )


def encode_account(a: Account) -> str:
    """JSON without the version: the version lives beside it and is bumped by Lua.

    A field equal to its default is left out (issue #5, Redis memory: ~240 bytes instead of
    ~450 for 10 users and an open invoice). The names stay those of the former format, whose
    decoder read every field but `id` with these defaults: replicas of the release before
    read this JSON, so a rolling upgrade with both releases on one Redis is safe.
    """
    d: dict[str, Any] = {"id": a.account_id}
    for key, value, default in (
        ("kind", a.kind.value, AccountKind.ENTERPRISE.value),
        ("users", sorted(a.users), []),
        ("policy", a.policy_id, ""),
        ("plan", a.plan_id, ""),
        ("exempt", a.exempt, False),
        ("seats", a.seat_limit, 0),
        ("parent", a.parent_id, ""),
        ("admins", list(a.admin_emails), []),
        ("tz", a.time_zone, "UTC"),
        ("cur", a.currency, "USD"),
        ("state", a.derived_state.value, AccountState.ACTIVE.value),
        ("since", to_ms(a.state_since), None),
        ("override", None if a.override is None else _override_to_dict(a.override), None),
        ("balance", a.balance_minor, 0),
        ("due", to_ms(a.oldest_due_at), None),
        ("suspends", to_ms(a.suspends_at), None),
        ("next_eval", to_ms(a.next_evaluation_at), None),
        ("extra", a.extra, {}),
    ):
        if value != default:
            d[key] = value
    return json.dumps(d, separators=(",", ":"))


def decode_account(data: str | bytes, version: int) -> Account:
    """Reads this format and the former one (every field written, defaults included)."""
    d = json.loads(data)
    return Account(
        account_id=d["id"],
        kind=AccountKind(d.get("kind", "ENTERPRISE")),
        users=frozenset(d.get("users", ())),
        policy_id=d.get("policy", ""),
        plan_id=d.get("plan", ""),
        exempt=bool(d.get("exempt", False)),
        seat_limit=int(d.get("seats", 0)),
        parent_id=d.get("parent", ""),
        admin_emails=tuple(d.get("admins", ())),
        time_zone=d.get("tz", "UTC"),
        currency=d.get("cur", "USD"),
        derived_state=AccountState(d.get("state", "ACTIVE")),
        state_since=from_ms(d.get("since")),
        override=_override_from_dict(d.get("override")),
        balance_minor=int(d.get("balance", 0)),
        oldest_due_at=from_ms(d.get("due")),
        suspends_at=from_ms(d.get("suspends")),
        next_evaluation_at=from_ms(d.get("next_eval")),
        version=version,
        extra=dict(d.get("extra", {})),
    )
