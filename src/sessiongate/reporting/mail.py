"""The monthly report as an email: the chart inline (when matplotlib is installed), the daily
figures attached as CSV, HTML and text from the `monthly_report` templates. app.py hands
`report_parts` to the email sink (billing/notify/email.py), which sits below reporting."""

from __future__ import annotations

from typing import Any

from sessiongate.billing.notify.email import Attachment
from sessiongate.billing.notify.sink import Notification
from sessiongate.rendering import Renderer
from sessiongate.reporting.chart import render_png
from sessiongate.reporting.content import is_empty, to_csv


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
