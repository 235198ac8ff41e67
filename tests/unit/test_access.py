"""Access levels and what stays open while restricted: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.domain.access import (
    AccessLevel,
    is_open_path,
    parse_open_paths,
    reads_only,
)
from sessiongate.domain.decision import Decision, Reason, decide
from sessiongate.domain.entitlements import Feature
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.policy import DEFAULT_POLICY, DunningPolicy, DunningStage, stage_access
from sessiongate.domain.restricted import lift_for_feature, proxy_verdict

S = AccountState
NOW = datetime(2026, 10, 1, tzinfo=UTC)
DAY = timedelta(days=1)
READ_ONLY_POLICY = DunningPolicy("ro", (
    DunningStage(S.GRACE, 15 * DAY, access=AccessLevel.READ_ONLY),
    DunningStage(S.SUSPENDED, 31 * DAY, access=AccessLevel.READ_ONLY),
))
BILLING = Feature("billing", available_while_restricted=True)
REPORTS = Feature("reports")


def account(state: AccountState, **kw: object) -> Account:
    return Account("acme", users=frozenset({"alice"}), derived_state=state,
                   balance_minor=4999, **kw)  # type: ignore[arg-type]


def test_stage_access_defaults_and_policy() -> None:
    assert [stage_access(None, s) for s in S] == [
        AccessLevel.FULL, AccessLevel.FULL, AccessLevel.FULL, AccessLevel.NONE,
        AccessLevel.NONE]
    assert stage_access(DEFAULT_POLICY, S.SUSPENDED) is AccessLevel.NONE  # access unset
    assert stage_access(READ_ONLY_POLICY, S.GRACE) is AccessLevel.READ_ONLY
    assert stage_access(READ_ONLY_POLICY, S.REMINDER) is AccessLevel.FULL  # no such stage
    assert stage_access(READ_ONLY_POLICY, S.CLOSED) is AccessLevel.NONE  # always
    full = DunningPolicy("f", (DunningStage(S.SUSPENDED, DAY, access=AccessLevel.FULL),))
    assert stage_access(full, S.ACTIVE) is AccessLevel.FULL


def test_a_read_only_stage_allows_read_only_with_the_stage_reason() -> None:
    v = decide(account(S.SUSPENDED), "alice", NOW, READ_ONLY_POLICY)
    assert (v.decision, v.access, v.reason) == (
        Decision.ALLOW, AccessLevel.READ_ONLY, Reason.ACCOUNT_SUSPENDED)
    assert "read-only" in v.message and "49.99 USD" in v.message
    g = decide(account(S.GRACE), "alice", NOW, READ_ONLY_POLICY)
    assert (g.access, g.reason) == (AccessLevel.READ_ONLY, Reason.PAYMENT_OVERDUE)
    assert decide(account(S.SUSPENDED), "alice", NOW).access is AccessLevel.NONE
    assert decide(account(S.GRACE), "alice", NOW).access is AccessLevel.FULL
    assert decide(account(S.ACTIVE), "alice", NOW, READ_ONLY_POLICY).access is AccessLevel.FULL


def test_restricted_by_payment_only_for_money_owed() -> None:
    assert decide(account(S.SUSPENDED), "alice", NOW).restricted_by_payment
    assert decide(account(S.SUSPENDED), "alice", NOW, READ_ONLY_POLICY).restricted_by_payment
    assert not decide(account(S.GRACE), "alice", NOW).restricted_by_payment  # FULL
    assert not decide(account(S.CLOSED), "alice", NOW).restricted_by_payment
    assert not decide(account(S.SUSPENDED), "mallory", NOW).restricted_by_payment
    assert not decide(None, "alice", NOW).restricted_by_payment


def test_a_feature_available_while_restricted_lifts_only_payment_restrictions() -> None:
    suspended = decide(account(S.SUSPENDED), "alice", NOW)
    lifted = lift_for_feature(suspended, BILLING)
    assert (lifted.decision, lifted.access, lifted.reason) == (
        Decision.ALLOW, AccessLevel.FULL, Reason.ACCOUNT_SUSPENDED)
    assert lift_for_feature(suspended, REPORTS) is suspended
    assert lift_for_feature(suspended, None) is suspended
    for v in (decide(account(S.CLOSED), "alice", NOW), decide(None, "alice", NOW),
              decide(account(S.SUSPENDED), "mallory", NOW)):
        assert lift_for_feature(v, BILLING) is v
    closed = Account("x", override=StateOverride(S.CLOSED, "t", "a", NOW))
    assert lift_for_feature(decide(closed, "a", NOW), BILLING).decision is Decision.DENY


def test_proxy_verdict_methods_open_paths_and_features() -> None:
    ro = decide(account(S.SUSPENDED), "alice", NOW, READ_ONLY_POLICY)
    for method in ("GET", "head", "OPTIONS"):
        assert proxy_verdict(ro, method, "/api/x", (), None) is ro
    post = proxy_verdict(ro, "POST", "/api/x", (), None)
    assert (post.decision, post.reason) == (Decision.DENY, Reason.ACCOUNT_SUSPENDED)
    assert post.message.startswith("POST refused")
    assert proxy_verdict(ro, "POST", "/billing/pay", ("/billing",), None).access is (
        AccessLevel.FULL)
    assert proxy_verdict(ro, "POST", "/features/billing", (), BILLING).access is (
        AccessLevel.FULL)
    none = decide(account(S.SUSPENDED), "alice", NOW)
    assert proxy_verdict(none, "GET", "/api", ("/billing",), REPORTS) is none
    assert proxy_verdict(none, "GET", "/billing", ("/billing",), None).allowed
    off_roster = decide(account(S.SUSPENDED), "mallory", NOW)
    assert proxy_verdict(off_roster, "GET", "/billing", ("/billing",), BILLING) is off_roster
    ok = decide(account(S.ACTIVE), "alice", NOW)
    assert proxy_verdict(ok, "DELETE", "/api", (), None) is ok


def test_open_paths() -> None:
    prefixes = parse_open_paths(" /billing/, /export ,,")
    assert prefixes == ("/billing", "/export")
    assert is_open_path("/billing", prefixes)
    assert is_open_path("/billing/invoices?x=1", prefixes)
    assert is_open_path("/export/all.csv", prefixes)
    assert not is_open_path("/billingx", prefixes)
    assert not is_open_path("/api/billing", prefixes)
    assert not is_open_path("/billing/../api/delete", prefixes)
    assert not is_open_path("/billing/%2e%2e/api", prefixes)
    assert not is_open_path("/anything", ())
    with pytest.raises(ValueError, match="billing"):
        parse_open_paths("billing")


def test_reads_only() -> None:
    assert reads_only("GET") and reads_only("head") and reads_only("OPTIONS")
    assert not any(reads_only(m) for m in ("POST", "PUT", "PATCH", "DELETE", ""))


def test_proxy_settings_take_their_new_names_and_still_read_the_old_ones() -> None:
    from sessiongate.config import Settings

    old = Settings.from_env({"SESSIONGATE_ENVOY_ACCOUNT_HEADER": "x-tenant",
                             "SESSIONGATE_ENVOY_PAYMENT_URL": "https://old.example/"})
    assert (old.envoy_account_header, old.envoy_payment_url) == (
        "x-tenant", "https://old.example/")
    both = Settings.from_env({"SESSIONGATE_ACCOUNT_HEADER": "x-org",
                              "SESSIONGATE_ENVOY_ACCOUNT_HEADER": "x-tenant"})
    assert both.envoy_account_header == "x-org"  # the new name wins
    assert Settings.from_env({}).http_addr == "127.0.0.1:9465"
