"""The webhook sender allow-list (`WEBHOOK_ALLOWED_IPS`), one gate for every webhook route (V1 and V2).

The sender is the connection's address as uvicorn reports it: uvicorn replaces it with the
X-Forwarded-For address only for connections from its trusted proxies (`--forwarded-allow-ips`,
127.0.0.1 by default), so a client elsewhere cannot name itself a PortOne sender.
"""

from __future__ import annotations

from fastapi import Request

from api.deps import RuntimeDep
from services.core.errors import Forbidden


def sender_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def require_listed_sender(request: Request, runtime: RuntimeDep) -> None:
    """Dependency: Forbidden (403) when an allow-list is set and the sender is not on it."""
    allowed = runtime.settings.webhook_allowed_ips
    if allowed and sender_ip(request) not in allowed:
        raise Forbidden("webhooks are accepted only from PortOne's addresses")
