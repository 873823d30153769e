"""Helpers shared by the PortOne V2 tests: sandbox V2 checkout and controls, a raw webhook
recorder, Standard Webhooks signing written here independently of both the sandbox and the SDK."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import httpx

from sandbox.v2_config import DEFAULT_V2_API_SECRET, DEFAULT_V2_STORE_ID, DEFAULT_V2_WEBHOOK_SECRET

API_SECRET = DEFAULT_V2_API_SECRET
STORE_ID = DEFAULT_V2_STORE_ID
WEBHOOK_SECRET = DEFAULT_V2_WEBHOOK_SECRET
APPROVED_CARD = "4111-1111-1111-1111"
DECLINED_CARD = "4000-0000-0000-0002"


def auth(secret: str = API_SECRET) -> dict[str, str]:
    return {"Authorization": f"PortOne {secret}"}


def checkout(
    http: httpx.Client, payment_id: str, amount: Decimal | int | str | None, currency: str = "KRW", **extra: Any
) -> dict[str, Any]:
    """A V2 payment through the sandbox checkout; `amount` in major units (None: give `total_amount`)."""
    body: dict[str, Any] = {"version": "v2", "payment_id": payment_id, "currency": currency}
    if amount is not None:
        body["amount"] = str(amount)
    body = {**body, "card_number": APPROVED_CARD, **extra}
    if currency != "KRW":
        body.setdefault("pg", "eximbay")
    response = http.post("/sandbox/checkout", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def configure(http: httpx.Client, **settings: Any) -> dict[str, Any]:
    response = http.post("/sandbox/v2/config", json=settings)
    assert response.status_code == 200, response.text
    return dict(response.json())


def calls(http: httpx.Client) -> dict[str, Any]:
    return dict(http.get("/sandbox/v2/calls").json())


def deliveries(http: httpx.Client, payment_id: str | None = None) -> list[dict[str, Any]]:
    params = {"payment_id": payment_id} if payment_id else None
    return list(http.get("/sandbox/v2/webhooks", params=params).json()["deliveries"])


def sign(secret: str, webhook_id: str, timestamp: int | str, body: str | bytes) -> str:
    """Standard Webhooks `v1,` signature: base64(HMAC-SHA256(base64-decoded secret, id.ts.body))."""
    raw = body if isinstance(body, bytes) else body.encode()
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed(
    body: str | bytes, *, webhook_id: str, secret: str = WEBHOOK_SECRET, at: int | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, webhook_id, timestamp, body),
    }


def v2_gateway(url: str, **overrides: Any) -> Any:
    """The V2 adapter pointed at a sandbox (building one takes ~1 s: share it per module)."""
    from services.portone.v2 import PortOneV2Client

    settings: dict[str, Any] = {"api_secret": API_SECRET, "store_id": STORE_ID, "timeout": 3.0, **overrides}
    return PortOneV2Client(base_url=url, **settings)


@contextmanager
def gateway_swapped(runtime: Any, gateway: Any) -> Iterator[Any]:
    """The runtime serving through `gateway` for the test; its own gateway is restored (and closed
    by the runtime fixture) afterwards."""
    original = runtime.gateway
    runtime.gateway = gateway
    try:
        yield runtime
    finally:
        runtime.gateway = original


def delivered(http: httpx.Client, payment_id: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The payment's deliveries once `count` of them are delivered (the sandbox notes an attempt only
    after the receiver has answered, which may be after the receiver's own work is visible)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [d for d in deliveries(http, payment_id) if d["state"] == "delivered"]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(found)} of {count} deliveries for {payment_id} were delivered")
        time.sleep(0.02)
