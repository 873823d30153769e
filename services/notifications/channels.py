"""The two ways out: a Slack-compatible incoming webhook (`{"text": ...}` JSON) and e-mail (SMTP).

Any failure, planned for or not, is raised as ChannelError whose text names the channel and what
went wrong in general terms only (HTTP status, SMTP code, exception type): never an exception's
message (it may hold the webhook URL, which is the credential, or the SMTP password), never the
message sent, never an address.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import httpx

from services.core.config import Settings


class ChannelError(Exception):
    pass


def slack_escaped(text: str) -> str:
    """Slack reads `<...>` as a mention or link (`<!channel>`, `<http://x|click>`): its three control
    characters escaped as its docs ask, so any text is shown as text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def post_to_slack(settings: Settings, text: str) -> None:
    try:
        url = settings.notify_slack_webhook_url.get_secret_value()
        answer = httpx.post(url, json={"text": slack_escaped(text)}, timeout=settings.notify_timeout_seconds)
    except Exception as exc:  # noqa: BLE001 - any failure is this channel's, by type only
        raise ChannelError(f"slack: {type(exc).__name__}") from None
    if not answer.is_success:
        raise ChannelError(f"slack: HTTP {answer.status_code}")


def one_line(text: str) -> str:
    """A header value: no line break (a header cannot hold one, and one would start another header)."""
    return " ".join(text.split())


def send_email(settings: Settings, subject: str, text: str) -> None:
    try:
        message = EmailMessage()
        message["Subject"] = one_line(subject)
        message["From"] = settings.notify_email_from
        message["To"] = ", ".join(settings.notify_email_recipients)
        message.set_content(text)
        with smtplib.SMTP(
            settings.notify_smtp_host, settings.notify_smtp_port, timeout=settings.notify_timeout_seconds
        ) as smtp:
            if settings.notify_smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.notify_smtp_user:
                smtp.login(settings.notify_smtp_user, settings.notify_smtp_password.get_secret_value())
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        raise ChannelError(f"email: SMTP {exc.smtp_code}") from None
    except Exception as exc:  # noqa: BLE001 - any failure is this channel's, by type only
        raise ChannelError(f"email: {type(exc).__name__}") from None
