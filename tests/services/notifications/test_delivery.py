"""Sending: a receiver answering 500 or an SMTP server that is down gets the event later, with
backoff, once; a channel that took it never gets it again; after the last attempt it is given up.
Real databases, a loopback Slack-compatible receiver, a local SMTP server (aiosmtpd)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from services.alerts.store import AlertKind, raise_alert
from services.core import job_lock
from services.core.models import NotificationOutbox, utcnow
from services.notifications.dispatch import KEEP, MAX_ATTEMPTS, RETRY_CAP, RETRY_FIRST, backoff, dispatch_due
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime
from tests.services.notifications.conftest import email_settings
from tests.services.notifications.smtp_server import SmtpServer
from tests.webhook_receiver import WebhookReceiver


def _raise(rt: Runtime, imp_uid: str = "imp_one") -> None:
    with rt.db.write() as session:
        raise_alert(session, kind=AlertKind.AMOUNT_MISMATCH, imp_uid=imp_uid, merchant_uid=None, message="x")


def _row(rt: Runtime) -> NotificationOutbox:
    with rt.db.read() as session:
        return session.scalars(select(NotificationOutbox)).one()


def _at(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


@pytest.fixture
def email_rt(database_url: str, sandbox: SandboxControl, smtp_port: int) -> Iterator[Runtime]:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, **email_settings(smtp_port))
    try:
        yield rt
    finally:
        rt.close()


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [RETRY_FIRST, RETRY_FIRST * 2, RETRY_FIRST * 4]
    assert backoff(40) == RETRY_CAP


def test_a_receiver_answering_500_gets_it_later_once(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    _raise(slack_rt)
    receiver.responses = [500]
    first = dispatch_due(slack_rt, now=_at(61))
    assert first.sent == [] and len(first.retrying) == 1
    row = _row(slack_rt)
    assert row.attempts == 1 and row.sent_at is None and row.last_error == "slack: HTTP 500"
    assert row.next_attempt_at >= _at(61 + RETRY_FIRST.total_seconds() - 5)

    assert dispatch_due(slack_rt, now=_at(70)).retrying == []  # not yet due: no second try
    assert len(receiver.received) == 1
    assert dispatch_due(slack_rt, now=_at(61 + RETRY_FIRST.total_seconds() + 1)).sent == [row.event_key]
    assert [r["answered"] for r in receiver.received] == [500, 200]
    assert receiver.received[0]["body"] == receiver.received[1]["body"]
    dispatch_due(slack_rt, now=_at(3600))
    assert len(receiver.received) == 2  # never twice once taken


def test_an_unreachable_receiver_is_given_up_after_the_last_attempt(
    database_url: str, sandbox: SandboxControl, receiver: WebhookReceiver
) -> None:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, notify_slack_webhook_url=receiver.url)
    try:
        _raise(rt)
        receiver.responses = [503] * MAX_ATTEMPTS
        later = 61.0
        for _ in range(MAX_ATTEMPTS):
            dispatch_due(rt, now=_at(later))
            later += RETRY_CAP.total_seconds() + 1
        row = _row(rt)
        assert row.failed_at is not None and row.sent_at is None and row.attempts == MAX_ATTEMPTS
        dispatch_due(rt, now=_at(later + 3600))
        assert len(receiver.received) == MAX_ATTEMPTS  # no try after giving up
    finally:
        rt.close()


def test_smtp_down_is_retried_and_the_mail_sent_once_it_is_back(email_rt: Runtime, smtp: SmtpServer) -> None:
    _raise(email_rt)
    assert dispatch_due(email_rt, now=_at(61)).retrying
    row = _row(email_rt)
    assert row.attempts == 1 and row.last_error == "email: ConnectionRefusedError"
    smtp.start()
    assert dispatch_due(email_rt, now=_at(61 + RETRY_FIRST.total_seconds() + 1)).sent == [row.event_key]
    [mail] = smtp.wait_for(1)
    assert mail["From"] == "payments-ops@chekar.example"
    assert mail["To"] == "ops1@chekar.example, ops2@chekar.example"
    assert str(mail["Subject"]).startswith("[체카 결제] 긴급 critical: 금액 불일치(위변조)")
    body = mail.get_content()
    assert "http://localhost:8501/alerts?alert=" in body
    dispatch_due(email_rt, now=_at(3600))
    assert len(smtp.messages) == 1


def test_with_both_channels_the_one_that_took_it_is_not_sent_again(
    database_url: str, sandbox: SandboxControl, receiver: WebhookReceiver, smtp: SmtpServer, smtp_port: int
) -> None:
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox.url,
        notify_slack_webhook_url=receiver.url,
        **email_settings(smtp_port),
    )
    try:
        _raise(rt)
        dispatch_due(rt, now=_at(61))  # Slack takes it, e-mail is down
        row = _row(rt)
        assert row.slack_sent_at is not None and row.email_sent_at is None and row.sent_at is None
        smtp.start()
        dispatch_due(rt, now=_at(61 + RETRY_FIRST.total_seconds() + 1))
        smtp.wait_for(1)
        row = _row(rt)
        assert row.email_sent_at is not None and row.sent_at is not None
        assert len(receiver.received) == 1  # Slack had it already
    finally:
        rt.close()


def test_one_dispatcher_at_a_time(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    _raise(slack_rt)
    with job_lock.held(slack_rt, "notify"):  # another process is sending
        assert dispatch_due(slack_rt, now=_at(61)).busy
    assert receiver.received == []
    assert len(dispatch_due(slack_rt, now=_at(61)).sent) == 1


def test_sent_events_are_deleted_after_a_while(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    _raise(slack_rt, "imp_old")
    dispatch_due(slack_rt, now=_at(61))
    _raise(slack_rt, "imp_new")  # still waiting: kept however old the others are
    dispatch_due(slack_rt, now=_at(30))
    assert len(receiver.received) == 1
    with slack_rt.db.read() as session:
        assert len(session.scalars(select(NotificationOutbox)).all()) == 2
    dispatch_due(slack_rt, now=_at(KEEP.total_seconds() + 3600))
    with slack_rt.db.read() as session:
        keys = [row.event_key for row in session.scalars(select(NotificationOutbox))]
    assert len(keys) == 1 and len(receiver.received) == 2  # the old one deleted, the new one sent


def test_the_smtp_login_is_used_and_a_refused_one_retried(
    database_url: str, sandbox: SandboxControl, smtp_port: int
) -> None:
    server = SmtpServer(smtp_port, login=("ops-mailer", "right password")).start()
    settings = {**email_settings(smtp_port), "notify_smtp_user": "ops-mailer", "notify_smtp_password": "wrong"}
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, **settings)
    try:
        _raise(rt)
        assert dispatch_due(rt, now=_at(61)).retrying
        row = _row(rt)
        assert row.last_error == "email: SMTP 535" and "wrong" not in (row.last_error or "")
        fixed = rt.settings.model_copy(update={"notify_smtp_password": SecretStr("right password")})
        dispatch_due(
            Runtime(settings=fixed, db=rt.db, gateway=rt.gateway), now=_at(61 + RETRY_FIRST.total_seconds() + 1)
        )
        server.wait_for(1)
        assert server.logins == ["ops-mailer"]
    finally:
        server.stop()
        rt.close()
