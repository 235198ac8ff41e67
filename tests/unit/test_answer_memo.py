"""Which answers may be remembered, case by case: CheckSession's (`answer_memo.rememberable`)
and a proxied request's, Envoy's Check and /authz (`answer_memo.proxy_key`).

Only a verdict decided on a fresh near-cache snapshot that `decide` answers alike at any
time, unchanged by what CheckSession adds; whole answers only for logins that open no
session and ask no feature; an allowed session-opening login keeps its answer without the
session. A proxied request's answer: for every method and path unless restricted by
payment, then for its method and path only, and never when it reads the plan (a feature)
or carries a link signed at the time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from sessiongate.domain.access import AccessLevel
from sessiongate.domain.decision import Decision, Reason, Verdict, decide
from sessiongate.domain.model import Account, AccountState, StateOverride
from sessiongate.domain.policy import DunningPolicy, DunningStage
from sessiongate.domain.records import FailureMode, StateSource
from sessiongate.service.answer_memo import Kept, proxy_key, rememberable
from sessiongate.store.nearcache import Entry
from sessiongate.usecases.account_state import Lookup
from sessiongate.usecases.login import LoginCheck, failure_verdict

NOW = datetime(2026, 3, 1, tzinfo=UTC)
ACME = Account(account_id="acme", users=frozenset({"alice"}))


def cached(account: Account | None, user: str = "alice") -> LoginCheck:
    """The login check of `user` as decided on a fresh near-cache snapshot of `account`."""
    return LoginCheck(decide(account, user, NOW),
                      Lookup(account, StateSource.NEAR_CACHE, 5), Entry(account, 0.0))


def kept(checked: LoginCheck, answered: Verdict | None = None, *, feature: bool = False,
         no_session: bool = False) -> Kept | None:
    return rememberable(checked, checked.verdict if answered is None else answered,
                        feature=feature, no_session=no_session)


@pytest.mark.parametrize(("no_session", "feature", "expected"), [
    (True, False, Kept.NO_SESSION),  # the whole answer: nothing opened
    (False, False, Kept.BASE),  # a session is opened on top, each time
    (True, True, Kept.BASE),  # its quota is added on top, each time
    (False, True, Kept.BASE),
])
def test_an_allowed_login_on_a_cached_snapshot(no_session: bool, feature: bool,
                                               expected: Kept) -> None:
    assert kept(cached(ACME), feature=feature, no_session=no_session) is expected


@pytest.mark.parametrize("checked", [
    cached(ACME, "mallory"),  # off the roster
    cached(None),  # unknown account
    cached(replace(ACME, derived_state=AccountState.SUSPENDED)),
], ids=["off-roster", "unknown", "suspended"])
def test_a_denial_is_remembered_whole_unless_a_feature_was_asked(checked: LoginCheck
                                                                 ) -> None:
    assert not checked.verdict.allowed
    assert kept(checked) is Kept.ANSWER
    assert kept(checked, no_session=True) is Kept.NO_SESSION
    assert kept(checked, feature=True) is None
    assert kept(checked, feature=True, no_session=True) is None


def test_state_read_from_redis_stale_or_unavailable_is_not_remembered() -> None:
    verdict = decide(ACME, "alice", NOW)
    for source in (StateSource.REDIS, StateSource.STALE):
        assert kept(LoginCheck(verdict, Lookup(ACME, source, 0))) is None
    failed = failure_verdict(FailureMode.OPEN, "down")
    assert kept(LoginCheck(failed, Lookup(None, StateSource.UNAVAILABLE, 0, "down")),
                no_session=True) is None


def test_an_answer_changed_after_the_check_is_not_remembered() -> None:
    """A seat refusal, an entitlement's denial, a feature lifted: not the check's verdict."""
    checked = cached(ACME)
    refused = Verdict(Decision.DENY, Reason.SEAT_LIMIT_REACHED, AccountState.ACTIVE, "full")
    assert kept(checked, refused) is None
    assert kept(checked, refused, feature=True) is None
    same_but_another = replace(checked.verdict)
    assert kept(checked, same_but_another, no_session=True) is None


def test_a_verdict_that_time_or_a_parent_may_change_is_not_remembered() -> None:
    expiring = StateOverride(AccountState.ACTIVE, "grace", "admin", NOW,
                             expires_at=NOW + timedelta(days=1))
    permanent = replace(expiring, expires_at=None)
    assert kept(cached(replace(ACME, parent_id="reseller")), no_session=True) is None
    assert kept(cached(replace(ACME, override=expiring)), no_session=True) is None
    assert kept(cached(replace(ACME, override=permanent)), no_session=True) is Kept.NO_SESSION


def proxied(checked: LoginCheck, feature: str = "", method: str = "GET", path: str = "/app",
            *, signed_links: bool = False, kind: Kept = Kept.ENVOY
            ) -> tuple[str, Kept, str, str | None, str | None] | None:
    return proxy_key(checked, kind, "alice", feature, method, path,
                     signed_links=signed_links)


@pytest.mark.parametrize("kind", [Kept.ENVOY, Kept.AUTHZ])
@pytest.mark.parametrize("account", [
    ACME,  # allowed
    replace(ACME, derived_state=AccountState.GRACE, balance_minor=100),  # overdue, allowed
    replace(ACME, users=frozenset({"bob"})),  # off the roster
    replace(ACME, derived_state=AccountState.CLOSED),
    None,  # unknown
], ids=["active", "overdue", "off-roster", "closed", "unknown"])
def test_a_proxied_answer_not_restricted_by_payment_holds_for_every_method_and_path(
        kind: Kept, account: Account | None) -> None:
    checked = cached(account)
    assert not checked.verdict.restricted_by_payment
    for feature in ("", "reports"):  # Envoy's metadata names the feature: in the key
        assert proxy_key(checked, kind, "alice", feature, "POST", "/x",
                         signed_links=True) == ("alice", kind, feature, None, None)


def test_a_proxied_answer_restricted_by_payment_holds_for_its_method_and_path_only() -> None:
    suspended = cached(replace(ACME, derived_state=AccountState.SUSPENDED, balance_minor=100))
    read_only = LoginCheck(
        decide(suspended.lookup.account, "alice", NOW, DunningPolicy("ro", (DunningStage(
            AccountState.SUSPENDED, timedelta(days=31), access=AccessLevel.READ_ONLY),))),
        suspended.lookup, suspended.snapshot)
    for checked in (suspended, read_only):
        assert checked.verdict.restricted_by_payment
        # an open path or the method (READ_ONLY) may change the answer: both in the key
        assert proxied(checked, method="POST", path="/billing/pay") == (
            "alice", Kept.ENVOY, "", "POST", "/billing/pay")
        assert proxied(checked, "invoices") is None  # the plan says whether it stays open
        assert proxied(checked, signed_links=True) is None  # a 402 with a link signed now


def test_a_proxied_answer_needs_a_fresh_snapshot_that_time_and_parents_leave_alone() -> None:
    verdict = decide(ACME, "alice", NOW)
    for source in (StateSource.REDIS, StateSource.STALE):
        assert proxied(LoginCheck(verdict, Lookup(ACME, source, 0))) is None
    failed = failure_verdict(FailureMode.OPEN, "down")
    assert proxied(LoginCheck(failed, Lookup(None, StateSource.UNAVAILABLE, 0, "down"))) is None
    expiring = StateOverride(AccountState.SUSPENDED, "chargeback", "admin", NOW,
                             expires_at=NOW + timedelta(days=1))
    assert proxied(cached(replace(ACME, parent_id="reseller"))) is None
    assert proxied(cached(replace(ACME, override=expiring))) is None
    assert proxied(cached(replace(ACME, override=replace(expiring, expires_at=None)))) == (
        "alice", Kept.ENVOY, "", "GET", "/app")  # suspended for good: this line only
