"""The webhook sender allow-list (`WEBHOOK_ALLOWED_IPS`), one gate for every webhook route (V1 and V2).

The sender is the connection's address as uvicorn reports it: uvicorn replaces it with the
X-Forwarded-For address only for connections from its trusted proxies (`--forwarded-allow-ips`,
127.0.0.1 by default), so a client elsewhere cannot name itself a PortOne sender.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from services.core.config import Settings


def sender_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def refuse_unlisted_sender(request: Request, settings: Settings) -> JSONResponse | None:
    """A 403 answer when an allow-list is set and the sender is not on it; None to go on."""
    allowed = settings.webhook_allowed_ips
    if allowed and sender_ip(request) not in allowed:
        return JSONResponse(
            {"error": "forbidden", "message": "webhooks are accepted only from PortOne's addresses"}, status_code=403
        )
    return None
