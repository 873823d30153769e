"""`POST /portone/webhook/v2` served by uvicorn with the sandbox delivering real signed V2 webhooks
to it: processed after a re-fetch; forged, tampered, stale, unsigned, oversized and replayed
deliveries refused with a clear JSON error, each recorded. Also: the existing order, complete and
refund routes work unchanged on the V2 adapter."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.routes.webhooks import v2_router as router
from services.core.models import Payment, WebhookEvent
from services.portone.v2 import PortOneV2Client
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order, wait_for_webhooks
from tests.servers import serve_in_thread
from tests.v2_support import calls, checkout, configure, delivered, gateway_swapped, signed, v2_gateway

FORGED_SECRET = "whsec_" + "Zm9yZ2VkLXNlY3JldA=="


@pytest.fixture(scope="module")
def shared_v2(sandbox_server: str) -> Iterator[PortOneV2Client]:
    gateway = v2_gateway(sandbox_server)
    yield gateway
    gateway.close()


@pytest.fixture
def v2_api(runtime: Runtime, sandbox: SandboxControl, shared_v2: PortOneV2Client) -> Iterator[httpx.Client]:
    """Our API (with the V2 router included) on loopback, PortOne V2 delivering webhooks to it."""
    with gateway_swapped(runtime, shared_v2):
        app = create_app(runtime)
        app.include_router(router)
        served = serve_in_thread(app)
        configure(sandbox.http, webhook_url=f"{served.url}/portone/webhook/v2")
        try:
            with httpx.Client(base_url=served.url, timeout=30) as client:
                yield client
        finally:
            served.stop()


def _events(runtime: Runtime) -> list[WebhookEvent]:
    with runtime.db.read() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def test_delivered_webhook_is_processed_and_bad_ones_are_refused(
    v2_api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(v2_api, currency="USD")
    payment_id = order["merchant_uid"]
    checkout(sandbox.http, payment_id, order["amount"], "USD")
    # The checkout sends Transaction.Ready (the window opened, webhook readme-v2.md) and then
    # Transaction.Paid: this test follows the Paid delivery.
    wait_for_webhooks(runtime, payment_id, count=2)
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == payment_id))
        assert payment is not None and payment.status == "paid" and payment.amount == Decimal("38.50")
    [delivery] = [d for d in delivered(sandbox.http, payment_id, count=2) if d["type"] == "Transaction.Paid"]
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200
    body, headers = delivery["body"], attempt["headers"]

    def post(content: str | bytes, with_headers: dict[str, str]) -> httpx.Response:
        return v2_api.post("/portone/webhook/v2", content=content, headers=with_headers)

    gets = calls(sandbox.http)["counts"]["GET /payments/{paymentId}"]
    refused: list[tuple[httpx.Response, int, str]] = [
        (post(body, headers), 409, "replayed"),
        (post(body.replace("Transaction.Paid", "Transaction.Cancelled"), headers), 400, "bad_signature"),
        (post(body, signed(body, webhook_id="msg_forged", secret=FORGED_SECRET)), 400, "bad_signature"),
        (post(body, signed(body, webhook_id="msg_old", at=int(time.time()) - 3600)), 400, "stale_timestamp"),
        (post(body, {"content-type": "application/json"}), 400, "unsigned"),
        (post(b"{" + b" " * 70_000 + b"}", signed(b"{}", webhook_id="msg_big")), 413, "too_large"),
    ]
    for response, status, error in refused:
        answer: dict[str, Any] = response.json()
        assert (response.status_code, answer["error"]) == (status, error), answer
        assert answer["message"] and answer["result"] == "rejected" and answer["event_id"]
    assert calls(sandbox.http)["counts"]["GET /payments/{paymentId}"] == gets  # nothing was fetched
    events = [e for e in _events(runtime) if e.claimed_status != "Transaction.Ready"]  # the Ready one: above
    assert [e.result for e in events] == ["processed", *["rejected"] * len(refused)]
    assert {e.id for e in events[1:]} == {r.json()["event_id"] for r, _, _ in refused}


def test_orders_complete_and_refunds_work_unchanged_on_v2(
    v2_api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(v2_api, currency="USD")
    payment_id = order["merchant_uid"]
    assert checkout(sandbox.http, payment_id, "38.51", "USD")["code"] == "PRE_REGISTERED_AMOUNT_MISMATCH"
    checkout(sandbox.http, payment_id, "38.50", "USD")
    done = v2_api.post("/api/payments/complete", json={"imp_uid": payment_id, "merchant_uid": payment_id})
    assert done.status_code == 200 and done.json()["amount"] == 38.5 and done.text.count("38.50") == 1
    refund = v2_api.post(f"/api/payments/{payment_id}/refunds", json={"amount": "10.25", "reason": "부분 환불"},
                         headers=auth_headers())  # fmt: skip
    assert refund.status_code == 201, refund.text
    assert (refund.json()["refunded_total"], refund.json()["remaining"]) == (10.25, 28.25)
    [cancel] = calls(sandbox.http)["cancels"]
    assert (cancel["body"]["amount"], cancel["body"]["currentCancellableAmount"]) == (1025, 3850)
    # Transaction.Ready (the window opened), Transaction.Paid, Transaction.PartialCancelled
    wait_for_webhooks(runtime, payment_id, count=3)
    with runtime.db.read() as session:
        not_ready = WebhookEvent.claimed_status.is_distinct_from("Transaction.Ready")
        assert session.scalar(select(func.count()).select_from(WebhookEvent).where(not_ready)) == 2
        payment = session.scalar(select(Payment).where(Payment.imp_uid == payment_id))
        assert payment is not None and payment.cancel_amount == Decimal("10.25")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_webhook_answered_503_on_a_locked_database_is_processed_when_portone_retries_it(
    database_url: str, sandbox: SandboxControl, sandbox_server: str
) -> None:
    from tests.factories import make_runtime
    from tests.services.webhooks.test_v2 import BUSY_TIMEOUT_SECONDS, _paid_order, _WriteLockOnPaymentRead

    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox_server,
        portone_api_version="v2",
        sqlite_busy_timeout_seconds=BUSY_TIMEOUT_SECONDS,
    )
    transport = _WriteLockOnPaymentRead(database_url.removeprefix("sqlite:///"))
    gateway = v2_gateway(sandbox_server, transport=transport)
    served = serve_in_thread(create_app(rt))
    try:
        with gateway_swapped(rt, gateway), httpx.Client(base_url=served.url, timeout=30) as client:
            payment_id, body = _paid_order(rt, sandbox)
            first = client.post("/portone/webhook/v2", content=body, headers=signed(body, webhook_id="msg_api_locked"))
            assert first.status_code == 503, first.text
            holder = transport.holder
            assert holder is not None and holder.wait(timeout=30) == 0
            for pipe in (holder.stdin, holder.stdout):
                if pipe is not None:
                    pipe.close()
            retried = client.post(
                "/portone/webhook/v2", content=body, headers=signed(body, webhook_id="msg_api_locked")
            )
            assert retried.status_code == 200, retried.text
            with rt.db.read() as session:
                assert session.scalar(select(Payment.status).where(Payment.imp_uid == payment_id)) == "paid"
    finally:
        served.stop()
        gateway.close()
        rt.close()
