"""The objects a process needs once: settings, database and PortOne gateway."""

from __future__ import annotations

from dataclasses import dataclass

from services.config import Settings, get_settings
from services.db import Database
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
    return PortOneV1Client(
        base_url=settings.portone_api_url,
        imp_key=settings.portone_imp_key.get_secret_value(),
        imp_secret=settings.portone_imp_secret.get_secret_value(),
        timeout=settings.portone_timeout_seconds,
    )


def build_runtime(settings: Settings | None = None) -> Runtime:
    settings = settings or get_settings()
    return Runtime(settings=settings, db=Database(settings.database_url), gateway=make_gateway(settings))
