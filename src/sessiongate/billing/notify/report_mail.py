"""The monthly report as an email: the chart inline (when matplotlib is installed), the daily
figures attached as CSV, HTML and text from the `monthly_report` templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sessiongate.billing.notify.sink import Notification
from sessiongate.billing.report.chart import render_png
from sessiongate.billing.report.content import is_empty, to_csv
from sessiongate.rendering import Renderer


@dataclass(frozen=True, slots=True)
class Attachment:
    data: bytes
    maintype: str
    subtype: str
    filename: str
    inline_cid: str = ""  # set: shown in the HTML part (multipart/related), not attached


def subject_of(report: dict[str, Any]) -> str:
    return f"Your {report['period']} report: {report['account_id']}"


def report_parts(render: Renderer, n: Notification) -> tuple[str, str, str, list[Attachment]]:
    r = dict(n.body)
    stem = f"{r['account_id']}-{r['period']}"
    png = render_png(r)
    cid = f"chart-{stem}@sessiongate" if png is not None else ""
    subject = subject_of(r)
    html, text = render.email("monthly_report", n=r, r=r, subject=subject, chart_cid=cid,
                              empty=is_empty(r))
    out = []
    if png is not None:
        out.append(Attachment(png, "image", "png", f"{stem}.png", inline_cid=cid))
    out.append(Attachment(to_csv(r).encode(), "text", "csv", f"{stem}.csv"))
    return subject, html, text, out
