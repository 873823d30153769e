"""`python -m cli notify` and the scheduler's dispatcher, as real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from services.alerts.store import AlertKind, raise_alert
from services.core.migrate import upgrade
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime
from tests.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]


def _env(database_url: str, sandbox: SandboxControl, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
    return {**env, "DATABASE_URL": database_url, "PORTONE_API_URL": sandbox.url, "PORTONE_MODE": "sandbox", **extra}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, "-m", "cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _alert_queued(database_url: str, sandbox: SandboxControl, receiver: WebhookReceiver) -> Runtime:
    rt = make_runtime(database_url=database_url, portone_api_url=sandbox.url, notify_slack_webhook_url=receiver.url)
    with rt.db.write() as session:
        raise_alert(session, kind=AlertKind.AMOUNT_MISMATCH, imp_uid="imp_cli", merchant_uid=None, message="x")
    return rt


def test_notify_sends_what_is_due_once(database_url: str, sandbox: SandboxControl, receiver: WebhookReceiver) -> None:
    _alert_queued(database_url, sandbox, receiver).close()
    env = _env(database_url, sandbox, NOTIFY_SLACK_WEBHOOK_URL=receiver.url, NOTIFY_BATCH_SECONDS="0")
    first = _cli(env, "notify")
    assert first.returncode == 0, first.stderr
    assert "sent 1, retrying 0, given up 0" in first.stdout
    assert "/alerts?alert=" in receiver.wait_for(1)[0]["body"]["text"]
    again = _cli(env, "notify")
    assert "sent 0" in again.stdout and len(receiver.received) == 1


def test_the_scheduler_sends_notifications(
    database_url: str, sandbox: SandboxControl, receiver: WebhookReceiver
) -> None:
    _alert_queued(database_url, sandbox, receiver).close()
    env = _env(database_url, sandbox, NOTIFY_SLACK_WEBHOOK_URL=receiver.url, NOTIFY_BATCH_SECONDS="0")
    done = _cli(env, "scheduler", "--max-runs", "1")
    assert done.returncode == 0, done.stderr
    assert "amount_mismatch" in receiver.wait_for(1)[0]["body"]["text"]


def test_notify_without_a_channel_says_so(database_url: str, sandbox: SandboxControl) -> None:
    upgrade(database_url)  # an unmigrated database is refused first (tests/cli/test_database_not_ready.py)
    done = _cli(_env(database_url, sandbox), "notify")
    assert done.returncode == 0 and "no notification channel configured" in done.stdout


def test_a_bad_webhook_url_is_refused_without_echoing_it(database_url: str, sandbox: SandboxControl) -> None:
    done = _cli(_env(database_url, sandbox, NOTIFY_SLACK_WEBHOOK_URL="ftp://T000/B000/secret-part"), "notify")
    assert done.returncode == 2
    assert "NOTIFY_SLACK_WEBHOOK_URL" in done.stderr and "secret-part" not in done.stderr + done.stdout
