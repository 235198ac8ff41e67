"""Entitlement verdicts, quota windows and session ids: pure functions."""

from __future__ import annotations

import base64
import string
from datetime import UTC, datetime

import pytest

from sessiongate.domain.decision import Decision, Reason
from sessiongate.domain.entitlements import (
    Entitlement,
    Feature,
    FeatureKind,
    LimitMode,
    Plan,
    check_plan,
    evaluate,
    resolve,
)
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.periods import ResetPeriod, parse_month, window, window_key
from sessiongate.domain.sessions import new_session, parse_session_id

NOW = datetime(2026, 10, 15, 13, 30, tzinfo=UTC)  # a Thursday
EXPORTS = Feature("exports", FeatureKind.METERED, 100, ResetPeriod.MONTH, LimitMode.HARD)
POOL = Feature("pool", FeatureKind.METERED, 1, ResetPeriod.WEEK, LimitMode.SOFT)
PLAN = Plan("pro", (Feature("reports"), EXPORTS, POOL))


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_windows() -> None:
    assert window(ResetPeriod.DAY, NOW) == (d(2026, 10, 15), d(2026, 10, 16))
    assert window(ResetPeriod.WEEK, NOW) == (d(2026, 10, 12), d(2026, 10, 19))
    assert window(ResetPeriod.MONTH, NOW) == (d(2026, 10, 1), d(2026, 11, 1))
    assert window(ResetPeriod.MONTH, d(2026, 12, 31, 23)) == (d(2026, 12, 1), d(2027, 1, 1))
    assert window(ResetPeriod.NEVER, NOW) == (None, None)
    assert window_key(ResetPeriod.MONTH, NOW) != window_key(ResetPeriod.MONTH, d(2026, 11, 1))
    assert window_key(ResetPeriod.WEEK, d(2026, 10, 12)) == window_key(
        ResetPeriod.WEEK, d(2026, 10, 18, 23, 59))


def test_parse_month() -> None:
    assert parse_month("period", "2026-10", NOW) == (d(2026, 10, 1), d(2026, 11, 1))
    for bad in ("2026-13", "2026-1", "26-10", "2026-10-01", ""):
        with pytest.raises(InvalidArgument) as err:
            parse_month("period", bad, NOW)
        assert err.value.field == "period"
    with pytest.raises(InvalidArgument, match="future"):
        parse_month("period", "2026-11", NOW)


def test_resolve() -> None:
    assert resolve(PLAN, "pro", "exports") == EXPORTS
    for plan, plan_id in ((PLAN, ""), (None, "gone"), (PLAN, "pro")):
        got = resolve(plan, plan_id, "teleport")
        assert isinstance(got, Entitlement)
        assert got.reason is Reason.FEATURE_NOT_ENTITLED


def test_boolean_feature_is_allowed_and_not_metered() -> None:
    e = evaluate(Feature("reports"), 0, NOW)
    assert (e.decision, e.remaining) == (Decision.ALLOW, -1)


def test_hard_limit() -> None:
    e = evaluate(EXPORTS, 40, NOW)
    assert (e.decision, e.remaining, e.quota, e.resets_at) == (
        Decision.ALLOW, 60, 100, d(2026, 11, 1))
    e = evaluate(EXPORTS, 100, NOW)
    assert (e.decision, e.reason, e.remaining) == (Decision.DENY, Reason.QUOTA_EXHAUSTED, 0)
    e = evaluate(EXPORTS, 100, NOW, consumed=True)  # the consumption that used the last unit
    assert (e.decision, e.remaining) == (Decision.ALLOW, 0)
    e = evaluate(EXPORTS, 99, NOW, refused=True)
    assert (e.decision, e.reason, e.remaining) == (Decision.DENY, Reason.QUOTA_EXHAUSTED, 1)


def test_soft_limit_allows_and_reports() -> None:
    e = evaluate(POOL, 3, NOW, consumed=True)
    assert (e.decision, e.over_soft_limit, e.remaining) == (Decision.ALLOW, True, 0)
    assert e.resets_at == d(2026, 10, 19)
    assert evaluate(POOL, 1, NOW).decision is Decision.ALLOW


def test_check_plan() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_plan(Plan("p", (Feature("a"), Feature("a"))))
    assert err.value.field == "features[1].name"
    with pytest.raises(InvalidArgument) as err:
        check_plan(Plan("p", (Feature("a", FeatureKind.METERED, -1),)))
    assert err.value.field == "features[0].quota"


_URLSAFE = set(string.ascii_letters + string.digits + "-_")


def test_session_id_round_trip_and_rejects() -> None:
    ref = new_session("acme corp", "alice@acme")
    back = parse_session_id("session_id", ref.session_id)
    assert back == ref
    assert ref.session_id.isascii() and "=" not in ref.session_id
    assert new_session("a", "b").session_id != new_session("a", "b").session_id
    # The nonce: a filler to a multiple of 3 bytes ("a US b US" is 4: "__"), then 15 random
    # URL-safe base64 characters (90 bits), no padding.
    nonces = {new_session("a", "b").nonce for _ in range(200)}
    assert len(nonces) == 200
    assert all(len(n) == 17 and n[:2] == "__" and set(n) <= _URLSAFE for n in nonces)
    two_parts = base64.urlsafe_b64encode(b"acme\x1falice").decode()
    ctrl = base64.urlsafe_b64encode(b"acme\x1fal\x07ice\x1fn").decode()
    for bad in ("", "!!!", "YWJj", "x" * 600, two_parts, ctrl):
        with pytest.raises(InvalidArgument) as err:
            parse_session_id("session_id", bad)
        assert err.value.field == "session_id"
