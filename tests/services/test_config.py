"""Settings: sandbox defaults, live mode refuses placeholder secrets, secrets never printed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.config import PORTONE_V1_URL, SANDBOX_API_URL, Settings


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

    from services.reconcile import EngineOptions
    from services.reconcile_rules import RuleConfig

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
