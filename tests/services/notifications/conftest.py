"""A Slack-compatible receiver on loopback and runtimes that notify it (or an SMTP server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime
from tests.services.notifications.smtp_server import SmtpServer, free_port
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def smtp_port() -> int:
    return free_port()


@pytest.fixture
def smtp(smtp_port: int) -> Iterator[SmtpServer]:
    """Not started: a test starts it (until then the port is closed)."""
    server = SmtpServer(smtp_port)
    try:
        yield server
    finally:
        server.stop()


def email_settings(port: int) -> dict[str, object]:
    return {
        "notify_smtp_host": "127.0.0.1",
        "notify_smtp_port": port,
        "notify_smtp_starttls": False,
        "notify_email_from": "payments-ops@chekar.example",
        "notify_email_to": "ops1@chekar.example, ops2@chekar.example",
        "notify_timeout_seconds": 3.0,
    }


@pytest.fixture
def slack_rt(database_url: str, sandbox: SandboxControl, receiver: WebhookReceiver) -> Iterator[Runtime]:
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox.url,
        notify_slack_webhook_url=receiver.url,
        notify_timeout_seconds=3.0,
    )
    try:
        yield rt
    finally:
        rt.close()
