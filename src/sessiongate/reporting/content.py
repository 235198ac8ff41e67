"""The monthly report's content, from the same figures billing sees (`UsageSummary`).

Pure: given the account as the report shows it (`model.ReportAccount`), its plan and the
summaries of the month and the month before, a JSON-ready dict (what the webhook posts and
the email renders). The month is the calendar month in UTC, as `GetUsageSummary`'s.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from sessiongate.domain.entitlements import Plan
from sessiongate.domain.notifications import NotificationKind
from sessiongate.domain.usage_summary import UsageSummary
from sessiongate.reporting.model import ReportAccount

KIND = NotificationKind.MONTHLY_REPORT.value
TOP_FEATURES = 3


def previous_month(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _peak(s: UsageSummary) -> int:
    return max((d.peak_seats_in_use for d in s.days), default=0)


def _active_days(s: UsageSummary) -> int:
    return sum(1 for d in s.days if d.logins or d.active_users or any(d.usage.values()))


def _iso(when: datetime | None) -> str | None:
    """UTC ISO 8601 (a naive time is UTC), as the API's timestamps read back."""
    if when is None:
        return None
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).astimezone(
        UTC).isoformat()


def standing(account: ReportAccount) -> dict[str, Any]:
    """Paid up, or what is overdue and until when access lasts."""
    due = max(account.balance_minor, 0)
    return {
        "state": "UNSPECIFIED" if account.state is None else account.state.value,
        "paid_up": due == 0 or account.oldest_due_at is None,
        "amount_due_minor": due,
        "currency": account.currency or "USD",
        "overdue_since": _iso(account.oldest_due_at),
        "suspends_at": _iso(account.suspends_at),
    }


def build(account: ReportAccount, this: UsageSummary, previous: UsageSummary,
          plan: Plan | None = None) -> dict[str, Any]:
    """The report of `this` month against `previous` (without id, recipients or children)."""
    roster = account.roster
    paid = account.seat_limit
    quotas = {f.name: f for f in plan.features} if plan is not None else {}
    used = {f.feature: f.total for f in this.features}
    before = {f.feature: f.total for f in previous.features}
    names = sorted(set(used) | set(before) | {n for n, f in quotas.items() if f.metered})
    features: list[dict[str, Any]] = []
    for name in names:
        q = quotas.get(name)
        quota = q.quota if q is not None and q.metered else 0
        features.append({
            "feature": name,
            "used": used.get(name, 0),
            "previous": before.get(name, 0),
            "quota": quota or None,
            "quota_period": q.period.value.lower() if q is not None and quota else None,
            "share_of_quota": _share(used.get(name, 0), quota),
        })
    top = sorted((f for f in features if f["used"]), key=lambda f: (-f["used"], f["feature"]))
    peak = _peak(this)
    return {
        "kind": KIND,
        "account_id": account.account_id,
        "period": this.period,
        "previous_period": previous.period,
        "time_zone": account.time_zone or "UTC",
        "logins": {"this": this.logins, "previous": previous.logins},
        "active_users": {
            "this": this.active_users, "previous": previous.active_users,
            "roster": roster or None,
            "share_of_roster": _share(this.active_users, roster),
            "previous_share_of_roster": _share(previous.active_users, roster),
        },
        "seats": {
            "paid": paid or None,
            "peak_in_use": peak,
            "previous_peak_in_use": _peak(previous),
            "utilization": _share(peak, paid),
            "billable_peak": this.peak_concurrent_seats,
            "seat_seconds": this.seat_seconds,
            "charges_minor": {mode.value.lower(): amount
                              for mode, amount in this.seat_charges.items()},
        },
        "active_days": {"this": _active_days(this), "previous": _active_days(previous),
                        "days_in_month": len(this.days)},
        "features": features,
        "top_features": [f["feature"] for f in top[:TOP_FEATURES]],
        "standing": standing(account),
        "days": [{"day": d.day, "logins": d.logins, "active_users": d.active_users,
                  "peak_seats_in_use": d.peak_seats_in_use,
                  "usage": dict(sorted(d.usage.items()))} for d in this.days],
        "previous_days": [{"day": d.day, "active_users": d.active_users}
                          for d in previous.days],
    }


def child_line(account: ReportAccount, this: UsageSummary) -> dict[str, Any]:
    """A channel partner's report: one child's seats, usage and standing."""
    return {
        "account_id": account.account_id,
        "seats_paid": account.seat_limit or None,
        "peak_in_use": _peak(this),
        "logins": this.logins,
        "active_users": this.active_users,
        "usage": {f.feature: f.total for f in this.features},
        "standing": standing(account),
    }


def is_empty(report: dict[str, Any]) -> bool:
    """No login, no active user, no usage all month."""
    return not (report["logins"]["this"] or report["active_users"]["this"]
                or any(f["used"] for f in report["features"]))


def to_csv(report: dict[str, Any]) -> str:
    """One row per day: logins, active users, peak seats in use, then each feature's usage."""
    features = sorted({k for d in report["days"] for k in d["usage"]}
                      | {f["feature"] for f in report["features"]})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["day", "logins", "active_users", "peak_seats_in_use", *features])
    for d in report["days"]:
        w.writerow([d["day"], d["logins"], d["active_users"], d["peak_seats_in_use"],
                    *(d["usage"].get(f, 0) for f in features)])
    return buf.getvalue()
