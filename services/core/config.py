"""Settings: one `Settings` object, read from environment variables and `.streamlit/secrets.toml`.

Environment variables win over the secrets file. Outside sandbox mode, placeholder or missing
secrets are refused at start-up, so a live deployment can never run on the sandbox's keys.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from services.core.money import validate_amount

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
SECRETS_FILE = PROJECT_ROOT / ".streamlit" / "secrets.toml"

SANDBOX_IMP_KEY = "sandbox-imp-key"
SANDBOX_IMP_SECRET = "sandbox-imp-secret"  # noqa: S105 - the sandbox's public test pair
SANDBOX_INTERNAL_TOKEN = "sandbox-internal-token"  # noqa: S105 - refused outside sandbox mode
SANDBOX_EXPORT_SECRET = "sandbox-export-link-secret"  # noqa: S105 - refused outside sandbox mode
SANDBOX_V2_API_SECRET = "sandbox-v2-api-secret"  # noqa: S105 - refused outside sandbox mode
SANDBOX_V2_STORE_ID = "store-00000000-0000-4000-8000-00000000c4e7"
SANDBOX_V2_WEBHOOK_SECRET = "whsec_Y2hla2FyLXNhbmRib3gtdjItd2ViaG9vay1zZWNyZXQ="  # noqa: S105 - sandbox only
PORTONE_V2_URL = "https://api.portone.io"
SANDBOX_API_URL = "http://127.0.0.1:8090"
PORTONE_V1_URL = "https://api.iamport.kr"
_PLACEHOLDERS = {
    "",
    "changeme",
    "change-me",
    SANDBOX_IMP_KEY,
    SANDBOX_IMP_SECRET,
    SANDBOX_INTERNAL_TOKEN,
    SANDBOX_EXPORT_SECRET,
    SANDBOX_V2_API_SECRET,
    SANDBOX_V2_WEBHOOK_SECRET,
}

# The consignment fee (탁송비) per currency. KRW is the domestic fee; USD is what overseas
# customers pay through Eximbay. Configurable with FEE_TABLE='{"KRW": "50000", "USD": "38.50"}'.
DEFAULT_FEE_TABLE = {"KRW": Decimal("50000"), "USD": Decimal("38.50")}


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting is named, its value (perhaps a real secret) never echoed.
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False, hide_input_in_errors=True)

    database_url: str = Field(default_factory=lambda: f"sqlite:///{DATA_DIR / 'chekar.db'}")
    # How long a SQLite write waits for another process's write lock before answering 503.
    sqlite_busy_timeout_seconds: float = Field(30.0, gt=0)
    portone_mode: Literal["sandbox", "test", "live"] = "sandbox"
    portone_api_url: str = ""
    portone_imp_key: SecretStr = SecretStr(SANDBOX_IMP_KEY)
    portone_imp_secret: SecretStr = SecretStr(SANDBOX_IMP_SECRET)
    portone_timeout_seconds: float = 10.0
    # V2 (api.portone.io) beside V1: with "v2", new payments use V2 and V1 payments keep working.
    portone_api_version: Literal["v1", "v2"] = "v1"
    portone_v2_api_url: str = ""
    portone_v2_api_secret: SecretStr = SecretStr(SANDBOX_V2_API_SECRET)
    portone_v2_store_id: str = SANDBOX_V2_STORE_ID
    portone_v2_webhook_secret: SecretStr = SecretStr(SANDBOX_V2_WEBHOOK_SECRET)
    internal_api_token: SecretStr = SecretStr("")
    # Webhooks: PortOne V1 signs nothing, so every delivery is re-fetched; optionally only
    # PortOne's published sender addresses are accepted.
    webhook_allowed_ips: list[str] = []
    webhook_max_body_bytes: int = 64 * 1024
    # Dashboard sign-ins end after this long without an action, and this long after signing in.
    session_idle_minutes: float = Field(60.0, gt=0)
    session_max_hours: float = Field(12.0, gt=0)
    fee_table: dict[str, Decimal] = Field(default_factory=lambda: dict(DEFAULT_FEE_TABLE))
    order_name: str = "체카 탁송비"
    refund_lock_wait_seconds: float = 30.0
    refund_lock_lease_seconds: float = 120.0
    # A cancel whose answer was lost (timeout, dropped connection, 5xx) and that PortOne does not show
    # is judged not applied only once PortOne has had this long to apply it; new refunds wait till then.
    refund_unknown_grace_seconds: float = Field(120.0, ge=0)
    # A V2 cancel PortOne accepted as REQUESTED and still has not finished after this long raises
    # an alert (refund_cancel_overdue) whose resolve action settles the attempt.
    refund_requested_alert_minutes: float = Field(60.0, ge=0)
    # Maker-checker: a refund (or bulk batch total) above this, per currency, needs a second operator.
    refund_approval_threshold: dict[str, Decimal] = Field(
        default_factory=lambda: {"KRW": Decimal("100000"), "USD": Decimal("100.00")}
    )
    # ... counting what the same operator refunded without a second operator in this rolling window.
    refund_approval_window_hours: float = Field(24.0, gt=0)
    # Large exports stream from the API through a short-lived signed link.
    api_public_url: str = "http://127.0.0.1:8000"
    export_link_secret: SecretStr = SecretStr(SANDBOX_EXPORT_SECRET)
    export_link_ttl_seconds: int = Field(120, gt=0, le=3600)  # single use, and never past its sign-in
    export_stream_threshold_rows: int = 200_000
    # Reconciliation: when a difference counts, and how hard a run may press PortOne.
    reconcile_stuck_ready_hours: float = Field(72.0, gt=0)  # Chekar's virtual-account due date is 3 days
    reconcile_webhook_gap_minutes: float = Field(10.0, gt=0)  # PortOne delivers in seconds, retries for minutes
    reconcile_webhook_skew_seconds: float = Field(30.0, ge=0)  # PortOne's clock against ours
    reconcile_missing_grace_minutes: float = Field(5.0, ge=0)  # a payment this fresh may be on its way to /complete
    reconcile_max_requests_per_second: float = Field(20.0, ge=0)  # 0 = unpaced
    reconcile_concurrency: int = Field(4, ge=1, le=32)
    # Scheduled reconciliation (`python -m cli scheduler`, started by `make run`): PortOne V1 sends
    # each webhook once, so a run every this many minutes over this window (30s, 12h, 2d, 1w) re-syncs
    # what a lost webhook left behind; no scheduled run finished for this long raises reconcile_stale.
    reconcile_schedule_minutes: float = Field(10.0, gt=0)
    reconcile_schedule_window: str = "2d"
    reconcile_stale_minutes: float = Field(30.0, gt=0)
    # Notifications (services/notifications): high and critical alerts, refunds awaiting a second
    # operator and failed scheduled reconciliations go to a Slack-compatible incoming webhook and/or
    # e-mail, sent by `python -m cli scheduler` and the API; nothing is queued while neither is configured.
    notify_slack_webhook_url: SecretStr = SecretStr("")  # the URL is the credential
    notify_smtp_host: str = ""
    notify_smtp_port: int = Field(587, ge=1, le=65535)
    notify_smtp_user: str = ""
    notify_smtp_password: SecretStr = SecretStr("")
    notify_smtp_starttls: bool = True
    notify_email_from: str = ""
    notify_email_to: str = ""  # comma-separated addresses
    notify_timeout_seconds: float = Field(10.0, gt=0)
    notify_batch_seconds: float = Field(60.0, ge=0)  # events within this long go out as one message
    dashboard_url: str = "http://localhost:8501"  # messages link here instead of naming anyone
    # Log lines of the API and the scheduler: readable text, or one JSON object per line (make serve sets json).
    log_format: Literal["text", "json"] = "text"
    # Production (make serve): how many API processes uvicorn starts. SQLite takes one writer process
    # well; more need PostgreSQL (`python -m cli check-config` refuses SQLite with more than one).
    api_workers: int = Field(1, ge=1)
    # Retention (services/system/retention.py, purged hourly by `python -m cli scheduler`): webhook
    # deliveries and finished reconciliation runs are kept this many days, ended dashboard sign-ins
    # SESSION_KEEP_DAYS; the audit log, payments, refunds and alerts are never purged.
    retention_days: int = Field(180, ge=1)
    session_keep_days: int = Field(30, ge=1)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=SECRETS_FILE)
        return (init_settings, env_settings, toml)

    @field_validator("reconcile_schedule_window")
    @classmethod
    def _window_is_a_duration(cls, text: str) -> str:
        parse_duration(text)
        return text.strip()

    @field_validator("notify_slack_webhook_url")
    @classmethod
    def _slack_url_is_https(cls, url: SecretStr) -> SecretStr:
        text = url.get_secret_value().strip()
        if text and not _sendable_webhook_url(text):
            raise ValueError(  # never echoed: the URL is a credential
                "NOTIFY_SLACK_WEBHOOK_URL must be an https:// address with a plain host name "
                "(http:// only to this machine)"
            )
        return SecretStr(text)

    @field_validator("notify_email_to", "notify_email_from")
    @classmethod
    def _addresses(cls, text: str) -> str:
        addresses = [part.strip() for part in text.split(",") if part.strip()]
        if any("@" not in address or any(c.isspace() for c in address) for address in addresses):
            raise ValueError(
                "NOTIFY_EMAIL_FROM and NOTIFY_EMAIL_TO take e-mail addresses (NOTIFY_EMAIL_TO: comma-separated)"
            )
        return ", ".join(addresses)

    @field_validator("dashboard_url")
    @classmethod
    def _dashboard_url(cls, url: str) -> str:
        if urlsplit(url.strip()).scheme not in {"https", "http"}:
            raise ValueError("DASHBOARD_URL must be an http:// or https:// address")
        return url.strip().rstrip("/")

    @property
    def notify_email_recipients(self) -> list[str]:
        return [part.strip() for part in self.notify_email_to.split(",") if part.strip()]

    @property
    def notify_slack_enabled(self) -> bool:
        return bool(self.notify_slack_webhook_url.get_secret_value())

    @property
    def notify_email_enabled(self) -> bool:
        return bool(self.notify_smtp_host and self.notify_email_from and self.notify_email_recipients)

    @property
    def reconcile_schedule_window_delta(self) -> timedelta:
        return parse_duration(self.reconcile_schedule_window)

    @field_validator("fee_table")
    @classmethod
    def _fees_are_exact(cls, table: dict[str, Decimal]) -> dict[str, Decimal]:
        return {cur.upper(): validate_amount(amount, cur.upper()) for cur, amount in table.items()}

    @model_validator(mode="after")
    def _defaults_and_live_safety(self) -> Settings:
        sandbox = self.portone_mode == "sandbox"
        if not self.portone_api_url:
            self.portone_api_url = SANDBOX_API_URL if sandbox else PORTONE_V1_URL
        self.portone_api_url = self.portone_api_url.rstrip("/")
        if not self.portone_v2_api_url:
            # The sandbox serves both versions at one address, as PortOne serves each at its own.
            self.portone_v2_api_url = self.portone_api_url if sandbox else PORTONE_V2_URL
        self.portone_v2_api_url = self.portone_v2_api_url.rstrip("/")
        if sandbox:
            # Sandbox mode runs on the secrets published in this repo: only against a PortOne on this machine.
            for name in ("portone_api_url", "portone_v2_api_url"):
                if not is_loopback_url(getattr(self, name)):
                    raise ValueError(
                        f"PORTONE_MODE is sandbox (the default when unset) but {name.upper()} "
                        f"({getattr(self, name)}) is not on this machine; set PORTONE_MODE=test or "
                        "PORTONE_MODE=live with real secrets, or point it at the local sandbox"
                    )
        if not sandbox:
            required = ["portone_imp_key", "portone_imp_secret", "internal_api_token", "export_link_secret"]
            if self.portone_api_version == "v2":
                required += ["portone_v2_api_secret", "portone_v2_webhook_secret"]
            for name in required:
                value: SecretStr = getattr(self, name)
                if is_placeholder(value.get_secret_value()):
                    raise ValueError(f"{name.upper()} must be set to a real value in {self.portone_mode} mode")
        elif not self.internal_api_token.get_secret_value():
            self.internal_api_token = SecretStr(SANDBOX_INTERNAL_TOKEN)
        return self

    @model_validator(mode="after")
    def _smtp_password_not_in_clear(self) -> Settings:
        host = self.notify_smtp_host
        if host and self.notify_smtp_user and not self.notify_smtp_starttls and not is_loopback_host(host):
            raise ValueError(
                "NOTIFY_SMTP_USER is set but NOTIFY_SMTP_STARTTLS is off: the SMTP password would cross the "
                "network in clear; turn NOTIFY_SMTP_STARTTLS on (or use an SMTP relay on this machine)"
            )
        return self

    @property
    def is_live(self) -> bool:
        return self.portone_mode == "live"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`30s`, `10m`, `12h`, `2d`, `1w`; ValueError otherwise (or for nothing at all)."""
    match = _DURATION.match(text or "")
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a duration like 30s, 10m, 12h, 2d")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def is_placeholder(secret: str) -> bool:
    """Whether `secret` is empty, a stand-in, or one of the sandbox's published values (any case)."""
    if secret.strip().lower() in {value.lower() for value in _PLACEHOLDERS}:
        return True
    # Standard Webhooks (and PortOne's SDK) read a signing secret leniently: `whsec_` optional and
    # characters outside base64 skipped, so the published key has more spellings than one.
    key = _webhook_key(secret)
    return key is not None and key == _webhook_key(SANDBOX_V2_WEBHOOK_SECRET)


def _webhook_key(secret: str) -> bytes | None:
    """The key bytes a Standard Webhooks verifier derives from `secret`, read as leniently as it does."""
    text = secret.strip()
    text = text[len("whsec_") :] if text.lower().startswith("whsec_") else text
    try:
        key = base64.b64decode(text + "==", validate=False)
    except ValueError:
        return None
    return key or None


_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def _sendable_webhook_url(url: str) -> bool:
    """https:// (http:// to this machine only) to a plain ASCII host name or address, a valid port,
    no user part: anything an HTTP client would refuse or mangle at send time is refused here."""
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # .port raises ValueError when out of range
    except ValueError:
        return False
    if not host or "@" in parts.netloc or any(c.isspace() or ord(c) < 32 for c in url):
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOST_NAME.match(host):
            return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(host))


def is_loopback_url(url: str) -> bool:
    """Whether `url` names this machine: localhost or a loopback address (127.0.0.0/8, ::1)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    if not host:
        return False
    return is_loopback_host(host)


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 with or without brackets) is this machine only."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def workers_refusal(database_url: str, workers: int) -> str | None:
    """Why `workers` API processes cannot share this database, or None. SQLite takes one writer
    process at a time: several API processes on it queue on its lock and answer 503 under load."""
    if workers > 1 and database_url.strip().lower().split(":", 1)[0].split("+", 1)[0] == "sqlite":
        return "SQLite takes one API process: set API_WORKERS=1 or use PostgreSQL"
    return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, created once."""
    return Settings()
