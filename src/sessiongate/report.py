"""The monthly client report: JSON, CSV and a PNG chart of daily active users and usage.

Built from `GetUsageSummary` (the same figures billing sees), so the report's numbers are the
recorded events'. matplotlib draws the chart with its Agg backend: no display needed.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from sessiongate.api.v1 import accounts_pb2 as pb

_MODE_NAMES = {
    pb.PRORATION_MODE_PRORATA: "prorata",
    pb.PRORATION_MODE_WHOLE_PERIOD: "whole_period",
    pb.PRORATION_MODE_NEXT_PERIOD: "next_period",
}


def build(summary: pb.UsageSummary, account: pb.Account) -> dict[str, Any]:
    limit = account.seat_limit
    in_use = max((d.peak_seats_in_use for d in summary.days), default=0)
    return {
        "account_id": summary.account_id,
        "month": summary.period,
        "logins": summary.logins,
        "active_users": summary.active_users,
        "seats": {
            "limit": limit or None,
            "billable_peak": summary.peak_concurrent_seats,
            "peak_in_use": in_use,
            "utilization": round(in_use / limit, 4) if limit else None,
            "seat_seconds": summary.seat_seconds,
            "charges_minor": {_MODE_NAMES.get(c.mode, str(c.mode)): c.amount_minor
                              for c in summary.seat_charges},
            "currency": account.currency,
        },
        "features": {f.feature: {"total": f.total, "events": f.events}
                     for f in summary.features},
        "days": [{"day": d.day, "logins": d.logins, "active_users": d.active_users,
                  "peak_seats_in_use": d.peak_seats_in_use,
                  "usage": dict(sorted(d.usage.items()))} for d in summary.days],
    }


def write(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write `<account>-<month>.json`, `.csv` (one row per day) and `.png`; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"{report['account_id']}-{report['month']}"
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    features = sorted(report["features"])
    with paths[1].open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["day", "logins", "active_users", "peak_seats_in_use", *features])
        for d in report["days"]:
            w.writerow([d["day"], d["logins"], d["active_users"], d["peak_seats_in_use"],
                        *(d["usage"].get(f, 0) for f in features)])
    _chart(report, features, paths[2])
    return paths


def _chart(report: dict[str, Any], features: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    days = [d["day"][8:] for d in report["days"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.bar(days, [d["active_users"] for d in report["days"]], color="#4477aa")
    top.set_ylabel("daily active users")
    top.yaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_title(f"{report['account_id']}: {report['month']}")
    for f in features:
        bottom.plot(days, [d["usage"].get(f, 0) for d in report["days"]], marker="o", label=f)
    bottom.set_ylabel("usage")
    bottom.set_xlabel("day of month")
    if features:
        bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cmd_report(ns: Any, channel: Any, metadata: list[tuple[str, str]]) -> int:
    """`sessiongate report ACCOUNT --month YYYY-MM [--out DIR] [--seat-price N]`."""
    from sessiongate.api.v1 import accounts_pb2_grpc

    stub = accounts_pb2_grpc.AccountsStub(channel)
    account = stub.GetAccount(pb.GetAccountRequest(account_id=ns.account_id),
                              metadata=metadata, timeout=10)
    summary = stub.GetUsageSummary(
        pb.GetUsageSummaryRequest(account_id=ns.account_id, period=ns.month,
                                  seat_unit_price_minor=ns.seat_price),
        metadata=metadata, timeout=30)
    report = build(summary, account)
    for path in write(report, Path(ns.out)):
        print(path)
    return 0
