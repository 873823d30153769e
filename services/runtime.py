"""The objects a process needs once: settings, database and PortOne gateway."""

from __future__ import annotations

from dataclasses import dataclass

from services.core.config import Settings, get_settings
from services.core.db import Database
from services.notifications.outbox import NOTIFY
from services.portone.dual import DualGateway
from services.portone.types import PortOneGateway
from services.portone.v1 import PortOneV1Client


@dataclass
class Runtime:
    settings: Settings
    db: Database
    gateway: PortOneGateway

    def close(self) -> None:
        self.gateway.close()
        self.db.dispose()


def make_gateway(settings: Settings) -> PortOneGateway:
    """V1, or V2 for new payments with V1's still served (a merchant moving between them)."""
    v1 = PortOneV1Client(
        base_url=settings.portone_api_url,
        imp_key=settings.portone_imp_key.get_secret_value(),
        imp_secret=settings.portone_imp_secret.get_secret_value(),
        timeout=settings.portone_timeout_seconds,
    )
    if settings.portone_api_version == "v1":
        return v1
    # Imported here: PortOne's V2 SDK takes about a second to import, which every process
    # (dashboard, CLI, each worker a test starts) would pay even when V2 is off.
    from services.portone.v2 import PortOneV2Client

    v2 = PortOneV2Client(
        base_url=settings.portone_v2_api_url,
        api_secret=settings.portone_v2_api_secret.get_secret_value(),
        store_id=settings.portone_v2_store_id or None,
        timeout=settings.portone_timeout_seconds,
    )
    return DualGateway(v1=v1, v2=v2, new_payments="v2")


def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or get_settings()
    db = Database(
        settings.database_url,
        session_info={NOTIFY: settings.notify_slack_enabled or settings.notify_email_enabled},
        sqlite_busy_timeout_ms=int(settings.sqlite_busy_timeout_seconds * 1000),
    )
    return Runtime(settings=settings, db=db, gateway=make_gateway(settings))
