"""The monthly report's content, from the same figures billing sees (`UsageSummary`).

Pure: given the account, its plan and the summaries of the month and the month before, a
JSON-ready dict (what the webhook posts and the email renders). The month is the calendar
month in UTC, as `GetUsageSummary`'s.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC
from typing import Any

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.api.v1 import common_pb2 as cpb

KIND = "monthly_report"
TOP_FEATURES = 3

_RESET = {pb.RESET_PERIOD_DAY: "day", pb.RESET_PERIOD_WEEK: "week",
          pb.RESET_PERIOD_MONTH: "month", pb.RESET_PERIOD_NEVER: "never"}
_MODE_NAMES = {
    pb.PRORATION_MODE_PRORATA: "prorata",
    pb.PRORATION_MODE_WHOLE_PERIOD: "whole_period",
    pb.PRORATION_MODE_NEXT_PERIOD: "next_period",
}


def previous_month(period: str) -> str:
    year, month = int(period[:4]), int(period[5:7])
    return f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _peak(s: pb.UsageSummary) -> int:
    return max((d.peak_seats_in_use for d in s.days), default=0)


def _active_days(s: pb.UsageSummary) -> int:
    return sum(1 for d in s.days if d.logins or d.active_users or any(d.usage.values()))


def standing(account: pb.Account) -> dict[str, Any]:
    """Paid up, or what is overdue and until when access lasts."""
    state = cpb.AccountState.Name(account.state).removeprefix("ACCOUNT_STATE_")
    due = max(account.balance_minor, 0)
    out: dict[str, Any] = {
        "state": state,
        "paid_up": due == 0 or not account.HasField("oldest_due_at"),
        "amount_due_minor": due,
        "currency": account.currency or "USD",
        "overdue_since": None,
        "suspends_at": None,
    }
    if account.HasField("oldest_due_at"):
        out["overdue_since"] = account.oldest_due_at.ToDatetime(tzinfo=UTC).isoformat()
    if account.HasField("suspends_at"):
        out["suspends_at"] = account.suspends_at.ToDatetime(tzinfo=UTC).isoformat()
    return out


def build(account: pb.Account, this: pb.UsageSummary, previous: pb.UsageSummary,
          plan: pb.Plan | None = None) -> dict[str, Any]:
    """The report of `this` month against `previous` (without id, recipients or children)."""
    roster = len(account.users)
    paid = account.seat_limit
    quotas = {f.name: f for f in plan.features} if plan is not None else {}
    used = {f.feature: f.total for f in this.features}
    before = {f.feature: f.total for f in previous.features}
    names = sorted(set(used) | set(before) | {n for n, f in quotas.items()
                                              if f.kind == pb.FEATURE_KIND_METERED})
    features: list[dict[str, Any]] = []
    for name in names:
        q = quotas.get(name)
        quota = q.quota if q is not None and q.kind == pb.FEATURE_KIND_METERED else 0
        features.append({
            "feature": name,
            "used": used.get(name, 0),
            "previous": before.get(name, 0),
            "quota": quota or None,
            "quota_period": _RESET.get(q.period) if q is not None and quota else None,
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
            "charges_minor": {_MODE_NAMES.get(c.mode, str(c.mode)): c.amount_minor
                              for c in this.seat_charges},
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


def child_line(account: pb.Account, this: pb.UsageSummary) -> dict[str, Any]:
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
