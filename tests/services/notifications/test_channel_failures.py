"""A channel failing in a way nobody planned for (an exception other than a network or SMTP error)
is that channel's failure: retried with backoff, its message free of secrets, the other channel
marked, the queue not held up. Real databases, a loopback receiver, a local SMTP server."""

from __future__ import annotations

from datetime import datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import select

from services.core.models import NotificationOutbox, utcnow
from services.notifications.dispatch import dispatch_due
from services.notifications.outbox import enqueue
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime
from tests.services.notifications.conftest import email_settings
from tests.services.notifications.smtp_server import SmtpServer
from tests.webhook_receiver import WebhookReceiver


def _at(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


def _queue(rt: Runtime, key: str = "alert:1", summary: str = "긴급 critical: 알림 #1 / alert #1") -> None:
    with rt.db.write() as session:
        enqueue(session, key=key, kind="amount_mismatch", severity="critical", summary=summary, link_path="/alerts")


def _rows(rt: Runtime) -> list[NotificationOutbox]:
    with rt.db.read() as session:
        return list(session.scalars(select(NotificationOutbox).order_by(NotificationOutbox.id)).all())


def test_a_password_smtplib_cannot_encode_fails_email_only(
    database_url: str, sandbox: SandboxControl, receiver: WebhookReceiver, smtp_port: int
) -> None:
    server = SmtpServer(smtp_port, login=("mailer", "비밀번호")).start()
    settings = {**email_settings(smtp_port), "notify_smtp_user": "mailer", "notify_smtp_password": "비밀번호"}
    rt = make_runtime(
        database_url=database_url, portone_api_url=sandbox.url, notify_slack_webhook_url=receiver.url, **settings
    )
    try:
        _queue(rt)
        result = dispatch_due(rt, now=_at(61))
        assert result.retrying == ["alert:1"]
        [row] = _rows(rt)
        assert row.attempts == 1 and row.slack_sent_at is not None and row.email_sent_at is None
        assert row.last_error == "email: UnicodeEncodeError"
        dispatch_due(rt, now=_at(61 + 31))
        assert len(receiver.received) == 1  # Slack took it once and is never sent it again
    finally:
        server.stop()
        rt.close()


def test_a_line_break_in_a_summary_never_reaches_a_mail_header(
    database_url: str, sandbox: SandboxControl, smtp: SmtpServer, smtp_port: int
) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, **email_settings(smtp_port))
    smtp.start()
    try:
        _queue(rt, summary="환불 승인 대기 #7 (1 KRW\r\nBcc: someone@evil.example)")
        assert dispatch_due(rt, now=_at(61)).sent == ["alert:1"]
        [mail] = smtp.wait_for(1)
        assert mail["Bcc"] is None and "\n" not in str(mail["Subject"])
    finally:
        rt.close()


def test_a_webhook_url_the_http_client_refuses_is_a_retried_failure_and_the_queue_moves(
    database_url: str, sandbox: SandboxControl, smtp: SmtpServer, smtp_port: int
) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, **email_settings(smtp_port))
    smtp.start()
    # Settings refuse such a URL when they load; a copy made in code skips that check.
    bad = rt.settings.model_copy(update={"notify_slack_webhook_url": SecretStr("https://[::1/T0/B0/secret-part")})
    broken = Runtime(settings=bad, db=rt.db, gateway=rt.gateway)
    try:
        _queue(broken)
        result = dispatch_due(broken, now=_at(61))
        assert result.retrying == ["alert:1"]
        [row] = _rows(rt)
        assert row.attempts == 1 and row.email_sent_at is not None and row.slack_sent_at is None
        assert row.last_error == "slack: InvalidURL" and "secret" not in row.last_error
        smtp.wait_for(1)
    finally:
        rt.close()


def test_text_from_outside_cannot_ping_or_link_in_slack(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    from decimal import Decimal

    from services.notifications.outbox import approval_waiting

    with slack_rt.db.write() as session:  # PortOne's currency, only upper-cased, reaches the summary
        approval_waiting(session, request_id=7, currency="<!CHANNEL>", amount=Decimal(1), batch_id=None)
        approval_waiting(session, request_id=8, currency="USD", amount=Decimal("1.50"), batch_id=None)
    _queue(slack_rt, key="alert:9", summary="x <http://evil.example|click> & y")
    dispatch_due(slack_rt, now=_at(61))
    [delivery] = receiver.received
    text = str(delivery["body"]["text"])
    assert "<" not in text and ">" not in text and "CHANNEL" not in text
    assert "(1 ?)" in text and "(1.50 USD)" in text
    assert "x &lt;http://evil.example|click&gt; &amp; y" in text
