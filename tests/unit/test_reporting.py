"""The report's content, chart and due times; the time-zone and email validation."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import matplotlib.pyplot as plt
import pytest
from apscheduler.triggers.cron import CronTrigger

from sessiongate.api.v1 import accounts_pb2 as pb
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.usage_summary import UsageSummary
from sessiongate.domain.validation import check_emails, check_time_zone
from sessiongate.reporting import chart, content
from sessiongate.reporting.due import (
    digest_day,
    last_month,
    latest_period,
    month_before,
    report_due_at,
)
from sessiongate.reporting.model import ReportAccount
from sessiongate.reporting.scheduler import MONTHLY_TRIGGER
from sessiongate.service.convert import report_account_from_pb, summary_from_pb
from sessiongate.service.plans import plan_from_pb

# The content is filled from the API's answers as `sessiongate report` reads them back.


def _summary(period: str, days: list[tuple[int, int]], logins: int = 0,
             usage: dict[str, int] | None = None) -> UsageSummary:
    s = pb.UsageSummary(account_id="acme", period=period, logins=logins,
                        active_users=max((u for _, u in days), default=0))
    for day, users in days:
        d = s.days.add(day=f"{period}-{day:02d}", active_users=users, logins=users)
        d.peak_seats_in_use = users
    for name, total in (usage or {}).items():
        s.features.add(feature=name, total=total, events=1)
    return summary_from_pb(s)


def _account_pb(**kw: object) -> pb.Account:
    return pb.Account(account_id="acme", users=["a", "b", "c", "d"], seat_limit=5,
                      currency="EUR", **kw)  # type: ignore[arg-type]


def _account(**kw: object) -> ReportAccount:
    return report_account_from_pb(_account_pb(**kw))


def test_content_compares_the_month_with_the_one_before() -> None:
    plan = pb.Plan(plan_id="p", features=[
        pb.Feature(name="exports", kind=pb.FEATURE_KIND_METERED, quota=100,
                   period=pb.RESET_PERIOD_MONTH),
        pb.Feature(name="api", kind=pb.FEATURE_KIND_METERED, quota=10,
                   period=pb.RESET_PERIOD_DAY)])
    this = _summary("2026-11", [(1, 2), (2, 3), (3, 0)], logins=9,
                    usage={"exports": 40, "api": 55, "sso": 1})
    before = _summary("2026-10", [(1, 1)], logins=2, usage={"exports": 10})
    r = content.build(_account(), this, before, plan_from_pb(plan))
    assert r["logins"] == {"this": 9, "previous": 2}
    assert r["active_users"]["share_of_roster"] == 0.75  # 3 of 4 named users
    assert (r["seats"]["paid"], r["seats"]["peak_in_use"], r["seats"]["utilization"]) == (
        5, 3, 0.6)
    assert r["active_days"] == {"this": 2, "previous": 1, "days_in_month": 3}
    by = {f["feature"]: f for f in r["features"]}
    assert (by["exports"]["used"], by["exports"]["previous"], by["exports"]["quota"],
            by["exports"]["share_of_quota"]) == (40, 10, 100, 0.4)
    assert by["api"]["quota_period"] == "day"
    assert by["sso"]["quota"] is None
    assert r["top_features"] == ["api", "exports", "sso"]
    assert r["standing"] == {"state": "UNSPECIFIED", "paid_up": True, "amount_due_minor": 0,
                             "currency": "EUR", "overdue_since": None, "suspends_at": None}
    lines = content.to_csv(r).splitlines()
    assert lines[0] == "day,logins,active_users,peak_seats_in_use,api,exports,sso"
    assert len(lines) == 4


def test_standing_says_what_is_overdue() -> None:
    a = _account_pb(balance_minor=12000, state=2)
    a.oldest_due_at.FromDatetime(datetime(2026, 10, 1))
    a.suspends_at.FromDatetime(datetime(2026, 12, 1))
    s = content.standing(report_account_from_pb(a))
    assert (s["state"], s["paid_up"], s["amount_due_minor"]) == ("REMINDER", False, 12000)
    assert s["suspends_at"] == "2026-12-01T00:00:00+00:00"


def _axes_of(report: dict[str, object]) -> object:
    fig = chart.draw(report)
    try:
        return fig.axes[0]
    finally:
        plt.close(fig)


def test_an_empty_month_says_no_activity_instead_of_an_empty_frame() -> None:
    empty = content.build(_account(), _summary("2026-11", [(1, 0), (2, 0)]),
                          _summary("2026-10", []))
    assert content.is_empty(empty)
    ax = _axes_of(empty)
    assert not ax.axison  # no axes drawn at all (was: a frame with y from -0.045 to 0.045)
    assert [t.get_text() for t in ax.texts] == ["2026-11: no activity recorded"]
    png = chart.render_png(empty)
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_chart_has_bars_for_the_month_a_line_for_the_one_before_and_no_negative_axis(
) -> None:
    r = content.build(_account(), _summary("2026-11", [(1, 2), (2, 5), (3, 0)], logins=7),
                      _summary("2026-10", [(1, 1), (2, 6)]))
    ax = _axes_of(r)
    assert len(ax.patches) == 3  # one bar a day
    assert [list(line.get_ydata()) for line in ax.lines] == [[1, 6]]
    bottom, top = ax.get_ylim()
    assert bottom == 0 and top >= 6
    assert ax.get_xlim()[0] > 0


def test_the_report_is_due_at_six_on_the_first_in_the_accounts_time_zone() -> None:
    tokyo = report_due_at("Asia/Tokyo", "2026-10")
    la = report_due_at("America/Los_Angeles", "2026-10")
    assert tokyo == datetime(2026, 10, 31, 21, tzinfo=UTC)
    assert la == datetime(2026, 11, 1, 14, tzinfo=UTC)  # PST from 1 Nov 2026, 02:00
    assert report_due_at("UTC", "2026-12") == datetime(2027, 1, 1, 6, tzinfo=UTC)
    # a zone stored before zones were validated: 06:00 UTC, not a failed run
    assert report_due_at("Mars/Olympus", "2026-12") == datetime(2027, 1, 1, 6, tzinfo=UTC)
    assert month_before("2026-01") == "2025-12"
    # The newest month due somewhere: from 16:00 UTC on the last day (UTC+14).
    assert latest_period(datetime(2026, 10, 31, 15, 59, tzinfo=UTC)) == "2026-09"
    assert latest_period(datetime(2026, 10, 31, 16, tzinfo=UTC)) == "2026-10"
    assert last_month(datetime(2026, 10, 31, 20, tzinfo=UTC), "Asia/Tokyo") == "2026-10"
    assert last_month(datetime(2026, 10, 31, 20, tzinfo=UTC), "UTC") == "2026-09"


def test_the_digest_day_is_today_from_its_time_on() -> None:
    at = time(7, 0)
    assert digest_day(datetime(2026, 11, 3, 6, 59, tzinfo=UTC), at, "UTC").isoformat() == (
        "2026-11-02")
    assert digest_day(datetime(2026, 11, 3, 7, 0, tzinfo=UTC), at, "UTC").isoformat() == (
        "2026-11-03")
    # 22:30 UTC is 07:30 the next day in Tokyo
    assert digest_day(datetime(2026, 11, 3, 22, 30, tzinfo=UTC), at,
                      "Asia/Tokyo").isoformat() == "2026-11-04"


def test_the_monthly_trigger_fires_at_every_quarter_hour_so_every_zone_gets_its_six() -> None:
    trigger = CronTrigger(**MONTHLY_TRIGGER)
    t = datetime(2026, 10, 31, 20, 50, tzinfo=UTC)
    fires = []
    for _ in range(3):
        t = trigger.get_next_fire_time(None, t + timedelta(seconds=1))
        fires.append(t)
    assert fires == [datetime(2026, 10, 31, 21, 0, tzinfo=UTC),
                     datetime(2026, 10, 31, 21, 15, tzinfo=UTC),
                     datetime(2026, 10, 31, 21, 30, tzinfo=UTC)]
    # Kathmandu (+05:45) reaches 06:00 on a quarter hour too
    assert report_due_at("Asia/Kathmandu", "2026-10").minute == 15


@pytest.mark.parametrize("zone", ["Mars/Olympus", "utc+2", "Europe/", "../etc/passwd", " UTC"])
def test_a_time_zone_must_be_an_iana_name(zone: str) -> None:
    with pytest.raises(InvalidArgument, match=r"account\.time_zone"):
        check_time_zone("account.time_zone", zone)


def test_report_emails_are_validated() -> None:
    assert check_time_zone("tz", "") == "UTC"
    assert check_emails("e", ["a@b.test"]) == ("a@b.test",)
    with pytest.raises(InvalidArgument, match=r"e\[1\]: not an email"):
        check_emails("e", ["a@b.test", "nobody"])
    with pytest.raises(InvalidArgument, match="more than 20"):
        check_emails("e", [f"u{i}@b.test" for i in range(21)])


def test_without_matplotlib_the_report_email_says_the_chart_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from sessiongate.billing.notify.sink import Notification
    from sessiongate.rendering import Renderer
    from sessiongate.reporting.mail import report_parts

    body = {**content.build(_account(), _summary("2026-11", [(1, 2)], logins=2),
                            _summary("2026-10", [])), "id": "acme:monthly_report:2026-11"}
    n = Notification(body["id"], "acme", 0, json.dumps(body).encode(), body)
    _, html, text, parts = report_parts(Renderer(), n)
    assert [p.subtype for p in parts] == ["png", "csv"] and "cid:" in html
    monkeypatch.setattr(chart, "available", lambda: False)  # the [report] extra not installed
    _, html, text, parts = report_parts(Renderer(), n)
    assert [p.subtype for p in parts] == ["csv"]
    assert "cid:" not in html and "no chart support installed" in html
    assert "The chart is not included" in text
