"""PortOne V2 webhooks (version ``2024-04-25``) signed per Standard Webhooks.

Body: ``{"type": "Transaction.Paid", "timestamp": "<event time>", "data": {"storeId", "paymentId",
"transactionId", "cancellationId"?}}``, serialised once so every attempt sends the same bytes.
Headers: ``webhook-id`` (the same on every attempt of one message), ``webhook-timestamp`` (unix
seconds of the attempt) and ``webhook-signature`` (``v1,`` + base64 HMAC-SHA256 over
``{id}.{timestamp}.{body}`` with the base64-decoded secret, ``whsec_`` prefix removed).

The signing here is the sandbox's own code, not the SDK's, so a test that verifies these deliveries
with portone-server-sdk checks two independent implementations against each other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from sandbox.delivery import DeliveryLoop
from sandbox.v2_config import V2ConfigHolder

WEBHOOK_VERSION = "2024-04-25"


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, webhook_id: str, timestamp: int | str, body: str) -> str:
    """The ``webhook-signature`` header value for one attempt."""
    digest = hmac.new(secret_bytes(secret), f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secret: str, webhook_id: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(secret, webhook_id, ts, body),
    }


def new_webhook_id() -> str:
    return "msg_" + secrets.token_hex(13)


@dataclass
class V2Delivery:
    id: int
    webhook_id: str
    event: str  # checkout, deposit, api_cancel, console_cancel, manual
    type: str
    payment_id: str
    body: str
    url: str | None
    retry_delays_ms: list[int]
    state: str = "pending"  # pending|sending|retrying|delivered|failed|no_url|cancelled
    created_at: float = field(default_factory=time.time)
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "webhook_id": self.webhook_id,
            "event": self.event,
            "type": self.type,
            "payment_id": self.payment_id,
            "body": self.body,
            "url": self.url,
            "state": self.state,
            "created_at": self.created_at,
            "attempts": [dict(a) for a in self.attempts],
        }


class V2WebhookDispatcher(DeliveryLoop[V2Delivery]):
    """Signed deliveries as asyncio tasks on the server loop, retried after the configured delays."""

    user_agent = "PortOne-V2-Sandbox-Webhook"

    def __init__(self, holder: V2ConfigHolder) -> None:
        super().__init__()
        self._holder = holder
        self._ids = itertools.count(1)

    def emit(
        self,
        *,
        event: str,
        type_: str,
        payment_id: str,
        transaction_id: str,
        store_id: str,
        notice_urls: list[str] | None = None,
        cancellation_id: str | None = None,
        occurred_at: str,
    ) -> list[V2Delivery]:
        """Queue one message per destination. Must run on the server loop."""
        cfg = self._holder.current
        data: dict[str, str] = {"paymentId": payment_id, "storeId": store_id, "transactionId": transaction_id}
        if cancellation_id is not None:
            data["cancellationId"] = cancellation_id
        body = json.dumps({"type": type_, "timestamp": occurred_at, "data": data}, separators=(",", ":"))
        urls: list[str | None] = list(notice_urls or ()) or [cfg.resolved_webhook_url()]
        created: list[V2Delivery] = []
        with self._lock:
            for url in urls:
                d = V2Delivery(
                    id=next(self._ids),
                    webhook_id=new_webhook_id(),
                    event=event,
                    type=type_,
                    payment_id=payment_id,
                    body=body,
                    url=url,
                    retry_delays_ms=list(cfg.webhook_retry_delays_ms),
                )
                if url is None:
                    d.state = "no_url"
                self._deliveries.append(d)
                created.append(d)
        for d in created:
            if d.url is not None:
                self._spawn(self._deliver(d))
        return created

    def views(self, payment_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [d.view() for d in self._deliveries if payment_id is None or d.payment_id == payment_id]

    async def _post(self, client: httpx.AsyncClient, d: V2Delivery, record: dict[str, Any]) -> httpx.Response:
        cfg = self._holder.current
        headers = signed_headers(cfg.resolved_webhook_secret(), d.webhook_id, d.body)
        record["headers"] = dict(headers)
        return await client.post(
            d.url or "", content=d.body.encode(), headers=headers, timeout=cfg.webhook_timeout_seconds
        )

    async def reset(self) -> None:
        await self.cancel_all()
        with self._lock:
            self._deliveries.clear()
