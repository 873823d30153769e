"""Settings: sandbox defaults, live mode refuses placeholder secrets, secrets never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.core.config import PORTONE_V1_URL, PROJECT_ROOT, SANDBOX_API_URL, SANDBOX_INTERNAL_TOKEN, Settings
from tests.servers import free_port


def test_sandbox_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PORTONE_MODE", "PORTONE_API_URL", "DATABASE_URL", "FEE_TABLE"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.portone_mode == "sandbox"
    assert settings.portone_api_url == SANDBOX_API_URL
    assert settings.database_url.startswith("sqlite:///")
    assert settings.fee_table == {"KRW": Decimal("50000"), "USD": Decimal("38.50")}


def test_live_mode_refuses_placeholder_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTONE_MODE", "live")
    monkeypatch.delenv("PORTONE_IMP_KEY", raising=False)
    with pytest.raises(ValidationError, match="PORTONE_IMP_KEY"):
        Settings()


def test_live_mode_with_real_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTONE_MODE", "live")
    monkeypatch.setenv("PORTONE_IMP_KEY", "1234567890123456")
    monkeypatch.setenv("PORTONE_IMP_SECRET", "real-secret-value-0123456789")
    monkeypatch.setenv("INTERNAL_API_TOKEN", "a-long-random-internal-token")
    monkeypatch.setenv("EXPORT_LINK_SECRET", "another-long-random-secret")
    monkeypatch.setenv("FEE_TABLE", '{"KRW": "50000", "USD": "38.50", "JPY": "5500"}')
    settings = Settings()
    assert settings.portone_api_url == PORTONE_V1_URL
    assert settings.fee_table["JPY"] == Decimal(5500)
    assert "real-secret-value" not in repr(settings) and "real-secret-value" not in str(settings.model_dump())


def test_fee_table_with_wrong_precision_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEE_TABLE", '{"KRW": "50000.5"}')
    with pytest.raises(ValidationError, match="no decimals"):
        Settings()


def test_reconciliation_thresholds_come_from_settings() -> None:
    from datetime import timedelta

    from services.reconciliation.engine import EngineOptions
    from services.reconciliation.rules import RuleConfig

    assert RuleConfig.from_settings(Settings(portone_mode="sandbox")) == RuleConfig()
    tuned = Settings(
        portone_mode="sandbox",
        reconcile_stuck_ready_hours=24,
        reconcile_missing_grace_minutes=0,
        reconcile_concurrency=2,
        reconcile_max_requests_per_second=0,
    )
    rules = RuleConfig.from_settings(tuned)
    assert rules.stuck_ready_after == timedelta(hours=24) and rules.missing_grace == timedelta(0)
    options = EngineOptions.from_settings(tuned)
    assert (options.concurrency, options.max_requests_per_second) == (2, 0)
    with pytest.raises(ValueError, match="reconcile_concurrency"):
        Settings(portone_mode="sandbox", reconcile_concurrency=0)


_PORTONE_VARS = ("PORTONE_MODE", "PORTONE_API_URL", "PORTONE_V2_API_URL", "PORTONE_API_VERSION")


@pytest.mark.parametrize(
    ("variable", "url"),
    [
        ("PORTONE_API_URL", "https://api.iamport.kr"),
        ("PORTONE_API_URL", "http://10.0.0.5:8090"),
        ("PORTONE_API_URL", "http://127.0.0.1.example.com:8090"),
        ("PORTONE_V2_API_URL", "https://api.portone.io"),
    ],
)
def test_sandbox_mode_refuses_portone_urls_off_this_machine(
    monkeypatch: pytest.MonkeyPatch, variable: str, url: str
) -> None:
    """Sandbox mode (the default) runs on the repo's published token and export secret: it is only
    allowed while every PortOne URL is on this machine, so it can never face real PortOne."""
    for name in _PORTONE_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, url)
    with pytest.raises(ValidationError, match="PORTONE_MODE"):
        Settings()


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8090", "http://localhost:9", "http://[::1]:8090/", "http://127.9.9.9"]
)
def test_sandbox_mode_on_loopback_urls(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for name in _PORTONE_VARS:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(portone_api_url=url, portone_v2_api_url=url)
    assert settings.portone_mode == "sandbox" and settings.portone_api_url == url.rstrip("/")


def _refused(tmp_path: Path, args: list[str], **env_vars: str) -> tuple[int, str, str]:
    """Run `python -m <args>` with no PortOne or secret settings but `env_vars`; it must exit non-zero
    by itself (a server left running is the failure). Its (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PORTONE_", "INTERNAL_API", "EXPORT_LINK"))}
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'refuse.db'}", **env_vars)
    process = subprocess.Popen(  # noqa: S603 - our own modules, fixed arguments
        [sys.executable, "-m", *args],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"python -m {' '.join(args)} did not refuse: {out[-500:]}{err[-500:]}")
    assert process.returncode != 0, (out, err)
    assert "Traceback" not in err, err
    return process.returncode, out, err


def test_api_refuses_to_start_in_sandbox_mode_against_a_remote_portone(tmp_path: Path) -> None:
    """`python -m api` with PORTONE_MODE unset and PortOne's real address: it exits before listening,
    naming the variable to set (and printing no secret)."""
    _, out, err = _refused(tmp_path, ["api", "--port", str(free_port())], PORTONE_API_URL=PORTONE_V1_URL)
    assert "PORTONE_MODE" in err and "PORTONE_API_URL" in err, err
    assert SANDBOX_INTERNAL_TOKEN not in out + err, err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])  # noqa: S104 - the point of the test
def test_api_in_sandbox_mode_refuses_to_listen_off_this_machine(tmp_path: Path, host: str) -> None:
    """Sandbox mode accepts the internal token published in this repository, so it listens on loopback
    only: `--host 0.0.0.0` would hand refunds to anyone who can reach the machine."""
    _, _, err = _refused(tmp_path, ["api", "--host", host, "--port", str(free_port())])
    assert "--host" in err and "PORTONE_MODE" in err, err


def test_live_v2_refuses_the_sandbox_webhook_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The published V2 webhook secret has capitals; it is a placeholder all the same."""
    for name in ("PORTONE_V2_WEBHOOK_SECRET", "PORTONE_API_URL", "PORTONE_V2_API_URL"):
        monkeypatch.delenv(name, raising=False)
    real = {
        "portone_imp_key": "1234567890123456",
        "portone_imp_secret": "real-secret-value-0123456789",
        "internal_api_token": "a-long-random-internal-token",
        "export_link_secret": "another-long-random-secret",
        "portone_v2_api_secret": "real-v2-api-secret-0123456789",
    }
    with pytest.raises(ValidationError, match="PORTONE_V2_WEBHOOK_SECRET"):
        Settings(portone_mode="live", portone_api_version="v2", **real)


def test_the_command_line_refuses_a_configuration_in_plain_words_without_echoing_secrets(tmp_path: Path) -> None:
    token = "real-internal-api-token-5f0c2b9e7a"
    code, out, err = _refused(
        tmp_path, ["cli", "users", "list"], PORTONE_API_URL=PORTONE_V1_URL, INTERNAL_API_TOKEN=token
    )
    assert code == 2
    assert "PORTONE_MODE" in err and "refusing to start" in err, err
    assert token[-10:] not in out + err


def test_notification_settings_are_read_and_checked() -> None:
    settings = Settings(
        notify_smtp_host="smtp.example.com",
        notify_email_from="ops@chekar.example",
        notify_email_to=" a@chekar.example ,b@chekar.example,, ",
        dashboard_url="https://ops.chekar.example/",
    )
    assert settings.notify_email_recipients == ["a@chekar.example", "b@chekar.example"]
    assert settings.notify_email_enabled and not settings.notify_slack_enabled
    assert settings.dashboard_url == "https://ops.chekar.example"
    assert not Settings().notify_email_enabled  # nothing configured by default
    with pytest.raises(ValidationError, match="NOTIFY_EMAIL_TO") as refused:
        Settings(notify_email_to="a@chekar.example, not an address")
    assert "not an address" not in str(refused.value)
    with pytest.raises(ValidationError, match="NOTIFY_SLACK_WEBHOOK_URL") as refused:
        Settings(notify_slack_webhook_url="hooks.slack.com/services/T0/B0/very-secret")
    assert "very-secret" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.slack.com/services/T0/B0/very-secret",  # in clear off this machine
        "https://hooks slack.com/services/T0/B0/very-secret",
        "https://hooks.slack.com:99999/services/T0/B0/very-secret",
        "https://[::1/services/T0/B0/very-secret",
        "https:///services/T0/B0/very-secret",
        "https://hööks.example/services/T0/B0/very-secret",
        "https://user@hooks.slack.com/services/T0/B0/very-secret",
    ],
)
def test_a_webhook_url_that_could_not_be_sent_to_safely_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="NOTIFY_SLACK_WEBHOOK_URL") as refused:
        Settings(notify_slack_webhook_url=url)
    assert "very-secret" not in str(refused.value) and "slack.com" not in str(refused.value)


@pytest.mark.parametrize(
    "url", ["https://hooks.slack.com/services/T0/B0/x", "http://127.0.0.1:8123/webhook", "http://localhost/hook"]
)
def test_a_https_or_loopback_webhook_url_is_taken(url: str) -> None:
    assert Settings(notify_slack_webhook_url=url).notify_slack_enabled


def test_an_smtp_password_is_never_sent_in_clear_off_this_machine() -> None:
    clear = {"notify_smtp_user": "mailer", "notify_smtp_password": "pw", "notify_smtp_starttls": False}
    with pytest.raises(ValidationError, match="NOTIFY_SMTP_STARTTLS") as refused:
        Settings(notify_smtp_host="smtp.example.com", **clear)
    assert "pw" not in str(refused.value).replace("password", "")
    assert Settings(notify_smtp_host="127.0.0.1", **clear).notify_smtp_user == "mailer"  # loopback: allowed
    assert Settings(notify_smtp_host="smtp.example.com", notify_smtp_starttls=False).notify_smtp_host  # no login
