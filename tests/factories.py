"""Test helpers: build a runtime on a given database, drive the sandbox, wait for webhooks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from services.auth.sessions import SignIn, new_session_id
from services.core.config import Settings
from services.core.migrate import upgrade
from services.core.models import WebhookEvent
from services.runtime import Runtime, build_runtime

APPROVED_CARD = "4111-1111-1111-1111"
DECLINED_CARD = "4000-0000-0000-0002"
INTERNAL_TOKEN = "test-internal-token"


def make_runtime(*, database_url: str, portone_api_url: str, **overrides: Any) -> Runtime:
    settings = Settings(
        database_url=database_url,
        portone_mode="sandbox",
        portone_api_url=portone_api_url,
        internal_api_token=INTERNAL_TOKEN,
        portone_timeout_seconds=overrides.pop("portone_timeout_seconds", 3.0),
        **overrides,
    )
    upgrade(database_url)
    return build_runtime(settings)


V2_STATUSES = {
    "PAID": "paid",
    "PARTIAL_CANCELLED": "paid",
    "CANCELLED": "cancelled",
    "FAILED": "failed",
    "READY": "ready",
    "VIRTUAL_ACCOUNT_ISSUED": "ready",
    "PAY_PENDING": "ready",
}
# Sandbox settings named differently on its V2 side.
V2_SETTING_NAMES = {"enforce_prepare": "enforce_pre_register"}


@dataclass
class SandboxControl:
    """The sandbox's controls and a PortOne reader for assertions, speaking the API version under
    test (`version`): tests read the same V1-shaped answers either way."""

    url: str
    http: httpx.Client
    version: str = "v1"

    @property
    def _controls(self) -> str:
        return "/sandbox/v2" if self.version == "v2" else "/sandbox"

    def reset(self) -> None:
        self.http.post("/sandbox/reset").raise_for_status()

    def configure(self, **settings: Any) -> dict[str, Any]:
        if self.version == "v2":
            settings = {V2_SETTING_NAMES.get(key, key): value for key, value in settings.items()}
        response = self.http.post(f"{self._controls}/config", json=settings)
        response.raise_for_status()
        return dict(response.json())

    def checkout(
        self, merchant_uid: str, amount: Decimal | int | str, currency: str = "KRW", **extra: Any
    ) -> dict[str, Any]:
        """Pay like the customer's browser; answers like V1's IMP.request_pay callback."""
        body = {
            "merchant_uid": merchant_uid,
            "amount": str(amount),
            "currency": currency,
            "card_number": APPROVED_CARD,
            **extra,
        }
        if currency != "KRW":
            body.setdefault("pg", "eximbay")
        if self.version == "v2":
            body.update(version="v2", payment_id=merchant_uid)
        response = self.http.post("/sandbox/checkout", json=body)
        response.raise_for_status()
        answer = dict(response.json())
        if self.version == "v2":
            status = str(answer.get("status") or "")
            return {
                "success": "code" not in answer and status == "PAID",
                "imp_uid": answer.get("paymentId") if status else None,
                "merchant_uid": merchant_uid,
                "status": V2_STATUSES.get(status, status.lower()),
                "error_msg": answer.get("message"),
            }
        return answer

    def console_cancel(self, imp_uid: str, amount: Decimal | int | str | None = None, reason: str = "콘솔 취소") -> Any:
        body: dict[str, Any] = {"reason": reason}
        if amount is not None:
            body["amount"] = str(amount)
        response = self.http.post(f"{self._controls}/payments/{imp_uid}/cancel", json=body)
        response.raise_for_status()
        return response.json()

    def calls(self) -> dict[str, Any]:
        response = self.http.get(f"{self._controls}/calls")
        response.raise_for_status()
        return dict(response.json())

    def payment(self, imp_uid: str) -> dict[str, Any]:
        """PortOne's record, read through its public API like any client would (V1-shaped)."""
        from services.core.jsonutil import loads

        if self.version == "v2":
            return self._v2_payment(imp_uid)
        token = self.http.post(
            "/users/getToken", json={"imp_key": "sandbox-imp-key", "imp_secret": "sandbox-imp-secret"}
        ).json()["response"]["access_token"]
        response = self.http.get(f"/payments/{imp_uid}", headers={"Authorization": f"Bearer {token}"})
        response.raise_for_status()
        return dict(loads(response.content)["response"])

    def _v2_payment(self, payment_id: str) -> dict[str, Any]:
        from services.core.money import from_minor_units
        from tests.v2_support import auth

        response = self.http.get(f"/payments/{payment_id}", headers=auth())
        response.raise_for_status()
        data = response.json()
        currency = data["currency"]
        return {
            "status": V2_STATUSES.get(data["status"], data["status"].lower()),
            "amount": from_minor_units(int(data["amount"]["total"]), currency),
            "cancel_amount": from_minor_units(int(data["amount"]["cancelled"]), currency),
            "currency": currency,
            "cancel_history": [
                {"cancellation_id": c["id"]} for c in data.get("cancellations", []) if c.get("status") == "SUCCEEDED"
            ],
        }


def auth_headers(key: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {INTERNAL_TOKEN}", "Idempotency-Key": key or uuid.uuid4().hex}


def new_order(api: httpx.Client, currency: str = "KRW", **extra: Any) -> dict[str, Any]:
    body = {
        "customer_email": "kim@example.com",
        "customer_name": "김체카",
        "customer_phone": "010-1234-5678",
        "currency": currency,
        **extra,
    }
    response = api.post("/api/orders", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def wait_for_webhooks(runtime: Runtime, imp_uid: str, count: int = 1, timeout: float = 15) -> None:
    """Wait until `count` deliveries for this payment have been processed (or rejected)."""
    deadline = time.monotonic() + timeout
    while True:
        with runtime.db.read() as session:
            done = session.scalar(
                select(func.count())
                .select_from(WebhookEvent)
                .where(WebhookEvent.imp_uid == imp_uid, WebhookEvent.processed_at.is_not(None))
            )
        if (done or 0) >= count:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"only {done} of {count} webhooks for {imp_uid} were processed in {timeout}s")
        time.sleep(0.05)


ROOT = Path(__file__).resolve().parents[1]


def reconcile_cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    """`python -m cli reconcile *args --json --quiet` to its end in its own process: exit 0
    and the one JSON summary line it prints, parsed."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "cli", "reconcile", *args, "--json", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.strip().splitlines()
    summary: dict[str, Any] = json.loads(line)
    return summary


def sign_in_as(username: str, *, signed_in_ago: float = 0.0, idle_for: float = 0.0) -> SignIn:
    """A dashboard sign-in of `username` (what dashboard.auth hands to services), begun `signed_in_ago`
    seconds ago, its last action `idle_for` seconds ago."""
    now = time.time()
    return SignIn(
        session_id=new_session_id(), username=username, signed_in_at=now - signed_in_ago, last_seen=now - idle_for
    )
