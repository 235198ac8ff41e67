from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.config import Settings
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.model import Account, AccountKind, AccountState, StateOverride
from sessiongate.store.codec import decode_account, encode_account, from_ms, to_ms


def test_account_round_trips_through_json() -> None:
    now = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    a = Account(
        account_id="acme", kind=AccountKind.CONSUMER, users=frozenset({"u1"}), policy_id="p",
        plan_id="pro", exempt=True, seat_limit=3, parent_id="reseller",
        admin_emails=("ops@acme.test",), currency="EUR", derived_state=AccountState.GRACE,
        state_since=now, override=StateOverride(AccountState.ACTIVE, "promise", "bob", now, now),
        balance_minor=990, oldest_due_at=now, suspends_at=now, next_evaluation_at=now,
        version=7,
    )
    assert decode_account(encode_account(a), 7) == a


def _as_dict_json(a: Account) -> str:
    """The stored format as the dict `encode_account` writes out, through `json` itself."""
    d: dict[str, object] = {"id": a.account_id}
    for key, value, default in (
            ("kind", a.kind.value, "ENTERPRISE"), ("users", sorted(a.users), []),
            ("policy", a.policy_id, ""), ("plan", a.plan_id, ""), ("exempt", a.exempt, False),
            ("seats", a.seat_limit, 0), ("parent", a.parent_id, ""),
            ("admins", list(a.admin_emails), []), ("tz", a.time_zone, "UTC"),
            ("cur", a.currency, "USD"), ("reports", list(a.report_emails), []),
            ("created", to_ms(a.created_at), None), ("state", a.derived_state.value, "ACTIVE"),
            ("since", to_ms(a.state_since), None)):
        if value != default:
            d[key] = value
    if a.override is not None:
        o = a.override
        d["override"] = {"state": o.state.value, "set_at": to_ms(o.set_at),
                         **({"reason": o.reason} if o.reason else {}),
                         **({"actor": o.actor} if o.actor else {}),
                         **({"expires_at": to_ms(o.expires_at)} if o.expires_at else {})}
    for key, value, default in (
            ("balance", a.balance_minor, 0), ("due", to_ms(a.oldest_due_at), None),
            ("suspends", to_ms(a.suspends_at), None),
            ("next_eval", to_ms(a.next_evaluation_at), None), ("extra", a.extra, {})):
        if value != default:
            d[key] = value
    return json.dumps(d, separators=(",", ":"))


def test_account_json_is_jsons_own_text_of_the_format() -> None:
    """`encode_account` writes its JSON field by field: byte for byte what `json` writes
    for the format's dict, whatever the text (quotes, control characters, non-ASCII)."""
    now = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    odd = ["", "a\"b", "back\\slash", "\x00\x1e\x1f\x7f", "ünï ✓ \u2028 😀", "%25"]
    accounts = [
        Account("acme"),
        Account("acme", users=frozenset({"u1", "u2"}), state_since=now, balance_minor=12000,
                oldest_due_at=now, suspends_at=now, next_evaluation_at=now,
                derived_state=AccountState.REMINDER, created_at=now),
        Account(odd[1], kind=AccountKind.CONSUMER, users=frozenset(odd), policy_id=odd[2],
                plan_id=odd[3], exempt=True, seat_limit=3, parent_id=odd[4],
                admin_emails=tuple(odd), time_zone="Europe/Berlin", currency=odd[4],
                report_emails=(odd[3],), created_at=datetime(1969, 12, 31, 23, 59, 59, 1000,
                                                              tzinfo=UTC),
                derived_state=AccountState.SUSPENDED, state_since=now,
                override=StateOverride(AccountState.ACTIVE, odd[4], odd[1], now, now),
                balance_minor=-5, oldest_due_at=now, suspends_at=now, next_evaluation_at=now,
                extra={odd[1]: odd[4], "k": ""}),
        Account("x", override=StateOverride(AccountState.GRACE, "", "", now)),
    ]
    for a in accounts:
        assert encode_account(a) == _as_dict_json(a)
        assert decode_account(encode_account(a), 3) == replace(a, version=3)


def test_times_from_ms_are_exact_whether_kept_or_made_anew() -> None:
    """`from_ms` keeps the last few thousand: the same datetime either way, past the point
    where it forgets them too."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    values = [0, 1, -1, 999, 1_000, -86_400_001, 1_767_225_600_123, 253_402_300_799_999,
              *range(1_700_000_000_000, 1_700_000_000_000 + 9_000, 1)]
    for _ in range(2):
        for ms in values:
            when = from_ms(ms)
            assert when == epoch + timedelta(milliseconds=ms) and when is not None
            assert when.tzinfo is UTC and to_ms(when) == ms
    assert from_ms(None) is None
    assert from_ms(1.5) == epoch + timedelta(milliseconds=1.5)  # type: ignore[arg-type]


def test_settings_from_env_and_overrides(tmp_path: object) -> None:
    s = Settings.from_env(
        {"SESSIONGATE_GRPC_ADDR": "0.0.0.0:1", "SESSIONGATE_NEAR_CACHE": "off",
         "SESSIONGATE_NEAR_CACHE_TTL": "0.5"},
        failure_mode="static",
    )
    assert (s.grpc_addr, s.near_cache, s.near_cache_ttl, s.failure_mode) == (
        "0.0.0.0:1", False, 0.5, "static")


def test_secret_from_file(tmp_path: pytest.TempPathFactory) -> None:
    import pathlib

    p = pathlib.Path(str(tmp_path)) / "tokens"
    p.write_text("a1, b2\n")
    s = Settings.from_env({"SESSIONGATE_APP_TOKENS_FILE": str(p)})
    assert s.tokens("app") == ("a1", "b2")


@pytest.mark.parametrize(
    ("env", "name"),
    [({"SESSIONGATE_FAILURE_MODE": "maybe"}, "SESSIONGATE_FAILURE_MODE"),
     ({"SESSIONGATE_NEAR_CACHE_TTL": "soon"}, "SESSIONGATE_NEAR_CACHE_TTL"),
     ({"SESSIONGATE_ACCESS_LOG": "perhaps"}, "SESSIONGATE_ACCESS_LOG")],
)
def test_bad_settings_name_the_variable(env: dict[str, str], name: str) -> None:
    with pytest.raises(InvalidArgument, match=name):
        Settings.from_env(env)
