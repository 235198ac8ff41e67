"""What stays open while an account is restricted for non-payment. Pure.

The login verdict says what the account grants; these rules say what one request gets from
it: a feature marked `available_while_restricted` or a path under an open prefix (the page
where the customer pays) passes in full, and a READ_ONLY verdict lets only reading methods
through a proxy. Every front door (CheckSession, CheckEntitlement, Envoy's Check, the HTTP
forward-auth endpoint) applies them through these functions, so each rule exists once.
"""

from __future__ import annotations

from collections.abc import Iterable

from sessiongate.domain.access import is_open_path, reads_only
from sessiongate.domain.decision import Decision, Verdict
from sessiongate.domain.entitlements import Feature


def lift_for_feature(verdict: Verdict, feature: Feature | None) -> Verdict:
    """FULL access to `feature` when it stays available while the account is restricted by
    non-payment; the verdict unchanged otherwise."""
    if feature is None or not feature.available_while_restricted:
        return verdict
    return _opened(verdict, f"feature {feature.name!r} stays available")


def lift_for_path(verdict: Verdict, path: str, open_paths: Iterable[str]) -> Verdict:
    """FULL access to a path under an open prefix while restricted by non-payment."""
    if not is_open_path(path, open_paths):
        return verdict
    return _opened(verdict, f"path {path.split('?', 1)[0]!r} stays open")


def _opened(verdict: Verdict, what: str) -> Verdict:
    if not verdict.restricted_by_payment:
        return verdict
    return Verdict(Decision.ALLOW, verdict.reason, verdict.state,
                   f"{what} while access is restricted: {verdict.message}")


def for_method(verdict: Verdict, method: str) -> Verdict:
    """A READ_ONLY verdict behind a proxy: reading methods pass, the others are refused with
    the verdict's reason (an HTTP 402: what is owed is what stands between)."""
    if not verdict.read_only or reads_only(method):
        return verdict
    return Verdict(Decision.DENY, verdict.reason, verdict.state,
                   f"{method.upper()} refused: {verdict.message}")


def proxy_verdict(verdict: Verdict, method: str, path: str, open_paths: Iterable[str],
                  feature: Feature | None) -> Verdict:
    """One proxied request's answer: an open path or feature first, then the method rule."""
    lifted = lift_for_path(verdict, path, open_paths)
    if lifted is verdict:
        lifted = lift_for_feature(verdict, feature)
    return for_method(lifted, method)
