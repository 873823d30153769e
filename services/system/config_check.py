"""`python -m cli check-config`: is this configuration fit to run on? Every setting, the database
(and its schema), PortOne (V1 token; V2 store read), notification channels (never sends), the
number of API processes against the database, and the public addresses.

Each check gives one `Finding`: ok, warning (runs, but look at it) or failed (will not run right).
No finding carries a secret: messages are built from fixed words, names of settings and
non-secret values, and `redact` takes out every secret value besides, should an answer echo one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from services.core.config import Settings, is_loopback_host, workers_refusal
from services.core.db import make_engine
from services.system.health import (
    PORTONE_PROBE_TIMEOUT_SECONDS,
    DatabaseHealth,
    PortOneHealth,
    check_database_engine,
    probe_portone_v1,
    probe_portone_v2,
    uses_v2,
)

Outcome = Literal["ok", "warning", "failed"]
MIGRATE = "run `python -m cli migrate`"


@dataclass(frozen=True)
class Finding:
    check: str  # settings, mode, database, schema, portone_v1, portone_v2, notifications, ...
    outcome: Outcome
    message: str


def settings_problems(exc: Exception) -> list[str]:
    """One plain line per refused setting, naming the variable, never its value."""
    if isinstance(exc, ValidationError):
        lines = []
        for error in exc.errors():
            message = str(error["msg"]).removeprefix("Value error, ")
            name = ".".join(str(part) for part in error["loc"]).upper()
            lines.append(message if not name or message.startswith(name.split(".")[0]) else f"{name}: {message}")
        return lines
    # pydantic-settings' SettingsError: 'error parsing value for field "fee_table" from source ...'
    field = re.search(r'field "([a-z0-9_]+)"', str(exc))
    if field:
        return [f"{field.group(1).upper()}: not valid JSON (lists and tables are written in JSON)"]
    return [f"the settings could not be read ({type(exc).__name__})"]


def redact(text: str, settings: Settings) -> str:
    """`text` with every secret setting's value (and the database password) replaced by ***."""
    secrets = [
        value.get_secret_value() for value in (getattr(settings, name) for name in type(settings).model_fields)
        if isinstance(value, SecretStr)
    ]  # fmt: skip
    try:
        password = make_url(settings.database_url).password
    except ArgumentError:
        password = None
    secrets += [str(password)] if password else []
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# -- the checks ---------------------------------------------------------------------------------


def _mode(settings: Settings) -> list[Finding]:
    mode = settings.portone_mode
    if mode == "sandbox":
        return [
            Finding("mode", "warning", "sandbox: the local PortOne double with published keys (demo and tests only)")
        ]
    findings = [Finding("mode", "ok", f"{mode}: PortOne's {'live' if mode == 'live' else 'test'} API")]
    for name in ("api_public_url", "dashboard_url"):
        url = getattr(settings, name)
        if urlsplit(url).scheme != "https":
            findings.append(
                Finding(
                    "public_urls",
                    "warning",
                    f"{name.upper()} is not https:// in {mode} mode: browsers and sign-in cookies need HTTPS "
                    "in front (a reverse proxy)",
                )
            )
    return findings


def _api_workers(settings: Settings, backend: str | None) -> Finding:
    workers = settings.api_workers
    refusal = workers_refusal(settings.database_url, workers) if backend == "sqlite" else None
    if refusal:
        return Finding("api_workers", "failed", refusal)
    return Finding("api_workers", "ok", f"{workers} API process{'es' if workers > 1 else ''}")


def _in_memory(path: str | None, query: Mapping[str, object]) -> bool:
    """`sqlite://`, `sqlite:///:memory:` and file URIs with mode=memory (or a file named :memory:)."""
    name = (path or "").removeprefix("file:").split("?", 1)[0]
    return name in ("", ":memory:") or query.get("mode") == "memory" or "mode=memory" in (path or "")


def _engine(settings: Settings) -> tuple[Engine | None, Finding | None]:
    """An engine for the check alone (PostgreSQL: a short connect timeout), or why there is none."""
    try:
        url = make_url(settings.database_url)
    except ArgumentError:
        return None, Finding("database", "failed", "DATABASE_URL is not a database URL (postgresql+psycopg://...)")
    backend = url.get_backend_name()
    if backend == "sqlite":
        path = url.database
        if _in_memory(path, url.query) and settings.portone_mode != "sandbox":
            return None, Finding(
                "database", "failed", "DATABASE_URL is an SQLite database in memory: nothing is kept when the "
                "process ends, and each process has its own; give a file (sqlite:///path) or PostgreSQL"
            )  # fmt: skip
        if path and path != ":memory:" and not Path(path).exists():
            return None, Finding("database", "warning", f"the SQLite file {path} does not exist yet: {MIGRATE}")
        options: dict[str, object] = {}
    else:
        options = {"connect_args": {"connect_timeout": int(PORTONE_PROBE_TIMEOUT_SECONDS)}, "pool_size": 1}
    try:
        return make_engine(settings.database_url, **options), None  # type: ignore[arg-type]
    except ArgumentError:  # NoSuchModuleError included: a driver that is not installed
        return None, Finding(
            "database", "failed", f"DATABASE_URL names a driver this installation lacks ({url.drivername})"
        )


def _database(settings: Settings) -> tuple[str | None, list[Finding]]:
    engine, problem = _engine(settings)
    if engine is None:
        return None, [problem] if problem else []
    try:
        health = check_database_engine(engine, settings.database_url)
    finally:
        engine.dispose()
    return health.backend, _database_findings(health)


def _database_findings(health: DatabaseHealth) -> list[Finding]:
    cannot_write = None
    if health.cannot_write:
        grant = (
            "grant it SELECT, INSERT, UPDATE, DELETE on our tables and USAGE on their sequences"
            if health.backend == "postgresql"
            else "make the file and its folder writable by the user the processes run as"
        )
        cannot_write = Finding("database", "failed", f"the database user cannot write ({health.cannot_write}): {grant}")
    if not health.reachable:
        return [
            cannot_write or Finding("database", "failed", f"cannot reach the {health.backend} database: {health.error}")
        ]
    findings = [cannot_write or Finding("database", "ok", f"{health.backend} answered in {health.latency_ms:g} ms")]
    head = ", ".join(health.heads)
    if health.schema == "at_head":
        findings.append(Finding("schema", "ok", f"at revision {health.revision} (this code's head)"))
    elif health.schema == "behind":
        at = f"at revision {health.revision}" if health.revision else "empty (no schema yet)"
        findings.append(Finding("schema", "warning", f"{at}, this code's head is {head}: {MIGRATE}"))
    else:
        findings.append(
            Finding(
                "schema",
                "failed",
                f"the database is newer than this code (revision {health.revision}, unknown here; this code's head "
                f"is {head}): run the code that migrated it, or restore a backup",
            )
        )
    return findings


def database_not_ready(health: DatabaseHealth) -> str | None:
    """Why a command must not run on this database (unreachable, no schema, behind or ahead of this
    code), in check-config's words; None when it is at this code's head."""
    if health.ok:
        return None
    return next(f"{f.check}: {f.message}" for f in _database_findings(health) if f.outcome != "ok")


def _portone(result: PortOneHealth, *, at_start: bool = False) -> Finding:
    """At start-up (`at_start`) PortOne unreachable is a warning: the stack must start and answer
    webhooks through a PortOne blip (/readyz says not ready meanwhile). Refusing our key or store,
    or answering not as PortOne does, is a failure either way: waiting will not mend it."""
    name = f"portone_{result.api}"
    version = result.api.upper()
    where = f"PortOne {version} at {result.api_url}"
    if result.ok:
        proof = "gave an access token" if result.api == "v1" else "let us read the store's payments"
        return Finding(name, "ok", f"{where} {proof} ({result.latency_ms:g} ms)")
    if not result.reachable:
        if at_start:
            return Finding(name, "warning", f"{where} unreachable: {result.error} (starting anyway: /readyz "
                           "says not ready until PortOne answers)")  # fmt: skip
        return Finding(name, "failed", f"{where} unreachable: {result.error}")
    if result.not_portone:
        return Finding(name, "failed", f"{where} answered, but not as PortOne does ({result.error}): check the "
                       "address")  # fmt: skip
    if result.api == "v1":
        refused = "PORTONE_IMP_KEY / PORTONE_IMP_SECRET"
    elif result.refused == "store":
        refused = "PORTONE_V2_STORE_ID for this API secret"
    else:
        refused = "PORTONE_V2_API_SECRET"
    return Finding(name, "failed", f"{where} refused {refused} ({result.error})")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return bool(re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", host)) and ".." not in host


def _notifications(settings: Settings) -> list[Finding]:
    findings = []
    if settings.notify_slack_enabled:  # Settings already refused an address that cannot be sent to
        findings.append(Finding("notifications", "ok", "Slack: an https webhook address is set (nothing sent)"))
    email = {
        "NOTIFY_SMTP_HOST": settings.notify_smtp_host,
        "NOTIFY_EMAIL_FROM": settings.notify_email_from,
        "NOTIFY_EMAIL_TO": settings.notify_email_to,
    }
    given = [name for name, value in email.items() if value.strip()]
    if given and len(given) < len(email):
        missing = ", ".join(name for name in email if name not in given)
        findings.append(
            Finding(
                "notifications", "failed", f"e-mail is half set: {', '.join(given)} set but {missing} empty (none sent)"
            )
        )
    elif given:
        host = settings.notify_smtp_host.strip()
        user, password = settings.notify_smtp_user, settings.notify_smtp_password.get_secret_value()
        if not _is_host(host):
            findings.append(Finding("notifications", "failed", "NOTIFY_SMTP_HOST is not a host name or address"))
        elif user and not password:
            findings.append(
                Finding("notifications", "failed", "NOTIFY_SMTP_USER is set but NOTIFY_SMTP_PASSWORD is empty")
            )
        else:
            login = "with login" if user else "without login"
            tls = "STARTTLS" if settings.notify_smtp_starttls else "no STARTTLS"
            plain = " (this machine)" if is_loopback_host(host) else ""
            count = len(settings.notify_email_recipients)
            findings.append(
                Finding(
                    "notifications",
                    "ok",
                    f"e-mail: {host}:{settings.notify_smtp_port}{plain}, {tls}, {login}, {count} recipient"
                    f"{'s' if count > 1 else ''} (nothing sent)",
                )
            )
        if password and not user:
            findings.append(
                Finding(
                    "notifications", "warning", "NOTIFY_SMTP_PASSWORD is set but NOTIFY_SMTP_USER is empty: no login"
                )
            )
    if not findings:
        outcome: Outcome = "ok" if settings.portone_mode == "sandbox" else "warning"
        findings.append(
            Finding(
                "notifications", outcome, "no channel set: alerts are seen only on the dashboard "
                "(NOTIFY_SLACK_WEBHOOK_URL, or NOTIFY_SMTP_HOST with NOTIFY_EMAIL_FROM and NOTIFY_EMAIL_TO)"
            )
        )  # fmt: skip
    return findings


def _webhook_senders(settings: Settings) -> Finding:
    allowed = settings.webhook_allowed_ips
    bad = []
    for position, entry in enumerate(allowed, start=1):
        try:
            ipaddress.ip_address(entry.strip())
        except ValueError:
            bad.append(str(position))
    if bad:
        return Finding(
            "webhook_senders",
            "failed",
            f"WEBHOOK_ALLOWED_IPS entries {', '.join(bad)} are not single IP addresses (ranges are not "
            "supported): webhooks from them would all be refused",
        )
    if allowed:
        return Finding("webhook_senders", "ok", f"webhooks accepted from {len(allowed)} listed addresses")
    outcome: Outcome = "warning" if settings.is_live else "ok"
    return Finding("webhook_senders", outcome, "WEBHOOK_ALLOWED_IPS is empty: webhooks accepted from any address "
                   "(each is still checked with PortOne)")  # fmt: skip


def run_checks(settings: Settings, *, at_start: bool = False) -> list[Finding]:
    """Every check but the settings' own validation (a `Settings` exists, so that passed);
    `at_start`: run by the stack's start (`check-config --at-start`), see `_portone`."""
    findings = _mode(settings)
    backend, database = _database(settings)
    if backend is None:
        try:
            backend = make_url(settings.database_url).get_backend_name()
        except ArgumentError:
            backend = None
    findings += [_api_workers(settings, backend), *database]
    findings.append(_portone(probe_portone_v1(settings), at_start=at_start))
    if uses_v2(settings):
        findings.append(_portone(probe_portone_v2(settings), at_start=at_start))
    findings += _notifications(settings)
    findings.append(_webhook_senders(settings))
    return [Finding(f.check, f.outcome, redact(f.message, settings)) for f in findings]
