"""`sessiongate report`: files produced, and their numbers are the recorded events'."""

from __future__ import annotations

import csv
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sessiongate.api.v1 import accounts_pb2 as apb
from sessiongate.api.v1 import session_control_pb2 as spb
from sessiongate.cli import main
from sessiongate.service.convert import ts
from tests.support import ServerThread


def test_report_files_match_the_recorded_events(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = server.clock
    clock.set(datetime(2026, 10, 1, tzinfo=UTC))
    server.accounts.UpsertPlan(apb.Plan(plan_id="pro", features=[
        apb.Feature(name="exports", kind=apb.FEATURE_KIND_METERED, quota=100),
        apb.Feature(name="reports")]))
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(
        account_id="acme", users=["alice", "bob", "carol"], seat_limit=5, plan_id="pro")))

    def login(user: str) -> None:
        r = server.sessions.CheckSession(spb.CheckSessionRequest(account_id="acme", user_id=user))
        assert r.session_id

    def use(event_id: str, feature: str, qty: int, when: datetime) -> None:
        server.sessions.RecordUsage(spb.UsageEvent(
            event_id=event_id, account_id="acme", user_id="alice", feature=feature,
            quantity=qty, occurred_at=ts(when)))

    clock.set(datetime(2026, 10, 5, 9, tzinfo=UTC))
    login("alice")
    login("alice")
    login("bob")
    use("e1", "exports", 3, clock.now())
    use("e2", "exports", 2, clock.now())
    use("e2", "exports", 2, clock.now())  # a retry: counted once
    clock.set(datetime(2026, 10, 6, 14, tzinfo=UTC))
    login("carol")
    use("e3", "reports", 1, clock.now())
    use("e4", "exports", 7, clock.now())
    clock.set(datetime(2026, 10, 8, 12, tzinfo=UTC))

    def logins() -> int:
        return server.accounts.GetUsageSummary(apb.GetUsageSummaryRequest(
            account_id="acme", period="2026-10")).logins

    deadline = time.monotonic() + 10
    while logins() != 4:  # login records reach Redis through the batch writer
        assert time.monotonic() < deadline
        time.sleep(0.02)

    out = tmp_path / "reports"
    code = main(["report", "acme", "--month", "2026-10", "--out", str(out),
                 "--addr", server.addr, "--seat-price", "3100"])
    assert code == 0
    printed = capsys.readouterr().out.split()
    stem = out / "acme-2026-10"
    files = [stem.with_suffix(s) for s in (".json", ".csv", ".png")]
    assert printed == [str(f) for f in files]
    assert all(f.stat().st_size > 0 for f in files)

    report = json.loads(files[0].read_text())
    assert (report["period"], report["previous_period"]) == ("2026-10", "2026-09")
    assert report["logins"] == {"this": 4, "previous": 0}
    active = report["active_users"]
    assert (active["this"], active["roster"], active["share_of_roster"]) == (3, 3, 1.0)
    used = {f["feature"]: (f["used"], f["previous"], f["quota"]) for f in report["features"]}
    assert used == {"exports": (12, 0, 100), "reports": (1, 0, None)}
    assert report["top_features"] == ["exports", "reports"]
    assert report["active_days"] == {"this": 2, "previous": 0, "days_in_month": 8}
    assert report["standing"]["paid_up"] is True
    seats = report["seats"]
    # seats in use: alice (twice: one seat) and bob on the 5th; carol alone on the 6th
    assert (seats["paid"], seats["peak_in_use"], seats["utilization"]) == (5, 2, 0.4)
    # billed: three named users on the roster since Oct 1, the whole month each
    assert seats["billable_peak"] == 3
    assert seats["seat_seconds"] == 3 * 31 * 86_400
    assert seats["charges_minor"] == {"prorata": 9300, "whole_period": 9300,
                                      "next_period": 9300}
    days = {d["day"]: d for d in report["days"]}
    assert sorted(days) == [f"2026-10-{d:02d}" for d in range(1, 9)]
    assert days["2026-10-05"] == {"day": "2026-10-05", "logins": 3, "active_users": 2,
                                  "peak_seats_in_use": 2, "usage": {"exports": 5}}
    assert days["2026-10-06"] == {"day": "2026-10-06", "logins": 1, "active_users": 1,
                                  "peak_seats_in_use": 1,
                                  "usage": {"exports": 7, "reports": 1}}
    assert days["2026-10-07"]["logins"] == 0

    with files[1].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 8
    assert rows[4] == {"day": "2026-10-05", "logins": "3", "active_users": "2",
                       "peak_seats_in_use": "2", "exports": "5", "reports": "0"}
    assert sum(int(r["exports"]) for r in rows) == 12
    assert sum(int(r["logins"]) for r in rows) == 4

    assert files[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_of_a_future_month_fails_cleanly(
    server: ServerThread, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.clock.set(datetime(2026, 10, 1, tzinfo=UTC))
    server.accounts.UpsertAccount(apb.UpsertAccountRequest(account=apb.Account(account_id="a")))
    code = main(["report", "a", "--month", "2027-01", "--out", str(tmp_path),
                 "--addr", server.addr])
    assert code == 1
    assert "INVALID_ARGUMENT: period" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
