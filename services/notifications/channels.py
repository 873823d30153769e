"""The two ways out: a Slack-compatible incoming webhook (`{"text": ...}` JSON) and e-mail (SMTP).

A failure is raised as ChannelError whose text names the channel and what went wrong in general
terms only (HTTP status, exception type): never the webhook URL (it is the credential), never the
message, never an address.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

import httpx

from services.core.config import Settings


class ChannelError(Exception):
    pass


def post_to_slack(settings: Settings, text: str) -> None:
    url = settings.notify_slack_webhook_url.get_secret_value()
    try:
        answer = httpx.post(url, json={"text": text}, timeout=settings.notify_timeout_seconds)
    except httpx.HTTPError as exc:
        raise ChannelError(f"slack: {type(exc).__name__}") from None
    if not answer.is_success:
        raise ChannelError(f"slack: HTTP {answer.status_code}")


def send_email(settings: Settings, subject: str, text: str) -> None:
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = settings.notify_email_from
    message["To"] = ", ".join(settings.notify_email_recipients)
    message.set_content(text)
    try:
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
    except (smtplib.SMTPException, OSError) as exc:
        raise ChannelError(f"email: {type(exc).__name__}") from None
