"""Health of what the dashboard depends on: the database (and its schema) and PortOne.

Never raises for a dependency that is down: it reports it, with the reason and the time taken.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from services.auth.access import Actor, Permission, require
from services.core.errors import GatewayError, GatewayNotFound, GatewayRejected, GatewayUnauthorized
from services.core.migrate import alembic_config
from services.runtime import Runtime, make_gateway

# A health check must answer quickly even when PortOne hangs.
PORTONE_PROBE_TIMEOUT_SECONDS = 5.0
# A merchant_uid no order ever has: reading its pre-registration needs a valid token, changes nothing.
PROBE_MERCHANT_UID = "chekar-health-probe"


@dataclass(frozen=True)
class DatabaseHealth:
    reachable: bool
    backend: str  # sqlite | postgresql
    revision: str | None  # the schema revision the database is at
    heads: tuple[str, ...]  # the newest revision(s) this code ships
    latency_ms: float | None
    error: str | None

    @property
    def at_head(self) -> bool:
        return self.reachable and self.revision is not None and self.revision in self.heads and len(self.heads) == 1

    @property
    def ok(self) -> bool:
        return self.reachable and self.at_head


@dataclass(frozen=True)
class PortOneHealth:
    reachable: bool  # PortOne answered
    authorized: bool  # ... and accepted our REST API key and secret
    api_url: str
    latency_ms: float | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.reachable and self.authorized


@dataclass(frozen=True)
class Health:
    mode: str  # sandbox | test | live
    checked_at: datetime
    database: DatabaseHealth
    portone: PortOneHealth

    @property
    def is_live(self) -> bool:
        return self.mode == "live"

    @property
    def ok(self) -> bool:
        return self.database.ok and self.portone.ok


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def check_database(rt: Runtime) -> DatabaseHealth:
    backend = rt.db.engine.dialect.name
    heads = tuple(sorted(ScriptDirectory.from_config(alembic_config(rt.db.url)).get_heads()))
    started = time.perf_counter()
    try:
        with rt.db.engine.connect() as connection:
            connection.execute(text("select 1"))
            revision = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as exc:
        return DatabaseHealth(False, backend, None, heads, None, f"{type(exc).__name__}: {exc}".splitlines()[0])
    return DatabaseHealth(True, backend, revision, heads, _ms(started), None)


def check_portone(rt: Runtime) -> PortOneHealth:
    """Ask for a new access token (a fresh client, so no cached token hides an outage) and read once.

    "Not found" for the probe means PortOne answered and accepted the token: healthy.
    """
    settings = rt.settings.model_copy(update={"portone_timeout_seconds": PORTONE_PROBE_TIMEOUT_SECONDS})
    gateway = make_gateway(settings)
    started = time.perf_counter()
    try:
        gateway.get_prepared(PROBE_MERCHANT_UID)
    except (GatewayNotFound, GatewayRejected):
        pass
    except GatewayUnauthorized as exc:
        return PortOneHealth(True, False, settings.portone_api_url, _ms(started), str(exc))
    except GatewayError as exc:
        return PortOneHealth(False, False, settings.portone_api_url, _ms(started), str(exc))
    except Exception as exc:  # a health check reports; it never takes the page down
        return PortOneHealth(False, False, settings.portone_api_url, _ms(started), f"{type(exc).__name__}: {exc}")
    finally:
        gateway.close()
    return PortOneHealth(True, True, settings.portone_api_url, _ms(started), None)


def check(rt: Runtime, *, actor: Actor) -> Health:
    require(actor, Permission.VIEW)
    return Health(
        mode=rt.settings.portone_mode,
        checked_at=datetime.now(UTC),
        database=check_database(rt),
        portone=check_portone(rt),
    )
