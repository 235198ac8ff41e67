"""The email sink: HTML and plain text to the notification's addresses over SMTP.

Dunning notices go to the account's admin addresses, the monthly report to its report
addresses (chart inline, CSV attached: composed by the `report_parts` that app.py hands in,
reporting/mail.py), the digest to the vendor's. Bodies come from the Jinja2 templates
(`rendering.py`). stdlib `smtplib` in a worker thread: one short session per
notification. `smtp://host:port` is plain SMTP (add `?starttls=1` for STARTTLS), `smtps://`
is implicit TLS.
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import jinja2

from sessiongate.billing.notify.sink import Notification, PermanentFailure, RetryLater
from sessiongate.domain.errors import InvalidArgument
from sessiongate.domain.money import format_money
from sessiongate.domain.notifications import NotificationKind, kind_of
from sessiongate.rendering import Renderer, renderer

_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class Attachment:
    data: bytes
    maintype: str
    subtype: str
    filename: str
    inline_cid: str = ""  # set: shown in the HTML part (multipart/related), not attached


# (subject, html, text, attachments) of a monthly report's email (reporting/mail.py).
ReportParts = Callable[[Renderer, Notification], tuple[str, str, str, list[Attachment]]]


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    username: str = ""
    password: str = ""
    implicit_tls: bool = False
    starttls: bool = False

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """`smtp[s]://[user:pass@]host[:port][?starttls=1]`; bad URLs name the variable."""
        var = "SESSIONGATE_SMTP_URL"
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise InvalidArgument(var, f"unparsable: {e}") from None
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise InvalidArgument(var, "must look like smtp://[user:pass@]host:port or smtps://")
        query = urllib.parse.parse_qs(parts.query)
        implicit = parts.scheme == "smtps"
        return cls(
            host=parts.hostname,
            port=port or (465 if implicit else 25),
            username=urllib.parse.unquote(parts.username or ""),
            password=urllib.parse.unquote(parts.password or ""),
            implicit_tls=implicit,
            starttls=not implicit and query.get("starttls", ["0"])[-1].lower() in _TRUE,
        )


def _when(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        return ""
    try:
        return datetime.fromisoformat(raw).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return raw


def compose(body: Mapping[str, Any]) -> tuple[str, str]:
    """(subject, lead) of one dunning notification. Raises ValueError/TypeError on a
    nonsense body."""
    account = str(body.get("account_id", ""))
    state = str(body.get("state", ""))
    amount = format_money(int(body.get("amount_due_minor") or 0), str(body.get("currency") or ""))
    amount = amount.strip()
    ends = _when(body.get("suspends_at"))
    if state == "SUSPENDED":
        subject = f"Account suspended: {amount} overdue"
        lead = (f"Access to account {account} is suspended because {amount} is overdue."
                " Access is restored as soon as the balance is paid.")
    elif state == "GRACE":
        subject = f"Final notice: {amount} overdue" + (f", access ends {ends}" if ends else "")
        lead = (f"Account {account} has {amount} overdue. This is the final notice:"
                + (f" access will be suspended on {ends}" if ends else " access will be suspended")
                + " unless the balance is paid.")
    elif state == "REMINDER":
        subject = f"Payment reminder: {amount} overdue"
        lead = f"Account {account} has {amount} overdue."
        if ends:
            lead += f" Access will be suspended on {ends} unless the balance is paid."
    elif state == "ACTIVE":
        subject = f"Access restored: account {account}"
        lead = f"Account {account} is in good standing again: access is restored."
    elif state == "CLOSED":
        subject = f"Account closed: {account}"
        lead = f"Account {account} is closed."
    else:
        subject = f"Account {account}: {state}"
        lead = f"Account {account} is now {state}."
    return subject, lead


RECIPIENTS = {NotificationKind.MONTHLY_REPORT: "report_emails",
              NotificationKind.DIGEST: "digest_emails"}  # else admin_emails


def recipients_of(body: Mapping[str, Any]) -> list[str]:
    kind = kind_of(body)
    raw = body.get(RECIPIENTS.get(kind, "admin_emails") if kind else "admin_emails") or []
    return [a for a in raw if isinstance(a, str) and a] if isinstance(raw, list) else []


class EmailSink:
    name = "email"

    def __init__(self, smtp_url: str, sender: str, *, timeout: float = 30.0,
                 templates_dir: str = "", report_parts: ReportParts | None = None) -> None:
        self.target = SmtpTarget.parse(smtp_url)
        self.sender = sender
        self._timeout = timeout
        self._render = renderer(templates_dir)
        self._report_parts = report_parts

    def _parts(self, n: Notification) -> tuple[str, str, str, list[Attachment]]:
        """(subject, html, text, attachments); the chart's image is the first, inline."""
        body = n.body
        kind = n.kind
        if kind is NotificationKind.MONTHLY_REPORT:
            if self._report_parts is None:
                raise ValueError("this sink was built without a monthly report composer")
            return self._report_parts(self._render, n)
        if kind is NotificationKind.DIGEST:
            subject = f"sessiongate daily digest: {body.get('day', '')}"
            html, text = self._render.email("digest", n=body, d=body, subject=subject)
            return subject, html, text, []
        subject, lead = compose(body)
        html, text = self._render.email("dunning", n=body, lead=lead, subject=subject)
        return subject, html, text, []

    def message(self, n: Notification, recipients: Sequence[str]) -> EmailMessage:
        try:
            subject, html, text, attachments = self._parts(n)
        except (ValueError, TypeError, KeyError, jinja2.TemplateError) as e:
            raise PermanentFailure(f"cannot compose an email: {e}") from None
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = ", ".join(recipients)
        msg["Subject"] = subject
        # Stable per notification: mail clients and receivers can deduplicate a resend.
        msg["Message-ID"] = f"<{hashlib.sha256(n.id.encode()).hexdigest()[:40]}@sessiongate>"
        msg["X-Sessiongate-Notification-Id"] = n.id
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        html_part = msg.get_body(("html",))
        assert html_part is not None
        for a in attachments:
            if a.inline_cid:
                html_part.add_related(a.data, maintype=a.maintype, subtype=a.subtype,
                                      cid=f"<{a.inline_cid}>", filename=a.filename)
            else:
                msg.add_attachment(a.data, maintype=a.maintype, subtype=a.subtype,
                                   filename=a.filename)
        return msg

    async def deliver(self, notification: Notification) -> None:
        recipients = recipients_of(notification.body)
        if not recipients:
            return  # nobody to tell: done
        # Composed in the worker thread too: the report's chart takes ~0.1 s of CPU, which
        # the event loop (serving logins) must not wait for.
        msg = await asyncio.to_thread(self.message, notification, recipients)
        await asyncio.to_thread(self._send, msg, recipients)

    def _send(self, msg: EmailMessage, recipients: list[str]) -> None:
        t = self.target
        try:
            smtp: smtplib.SMTP
            if t.implicit_tls:
                smtp = smtplib.SMTP_SSL(t.host, t.port, timeout=self._timeout,
                                        context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(t.host, t.port, timeout=self._timeout)
            with smtp:
                if t.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if t.username:
                    smtp.login(t.username, t.password)
                smtp.send_message(msg, self.sender, recipients)
        except smtplib.SMTPRecipientsRefused as e:
            codes = [code for code, _ in e.recipients.values()]
            if codes and all(c >= 500 for c in codes):
                raise PermanentFailure(f"every recipient refused: {e.recipients}") from None
            raise RetryLater(f"recipients refused for now: {e.recipients}") from None
        except smtplib.SMTPDataError as e:
            if e.smtp_code >= 500:
                raise PermanentFailure(f"message rejected: {e.smtp_code} {e.smtp_error!r}"
                                       ) from None
            raise RetryLater(f"message deferred: {e.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as e:  # auth, sender, connection: fixable
            raise RetryLater(f"smtp: {e}") from None
