"""V2 webhooks from the sandbox: the `2024-04-25` body, Standard Webhooks headers whose signature
checks both with this test's own HMAC and with the official SDK, retries keeping the webhook-id."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import portone_server_sdk as portone
import pytest

from sandbox.testing import RunningSandbox
from tests.v2_support import STORE_ID, WEBHOOK_SECRET, auth, checkout, configure, deliveries, sign
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def http(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10, trust_env=False) as client:
        yield client


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    # Every checkout also sends Transaction.Ready (the window opened): the tests here are about the
    # deliveries after it, except test_transaction_ready_is_sent_when_the_window_opens.
    r.ignore_types = {"Transaction.Ready"}
    yield r
    r.close()


def test_paid_webhook_is_signed_per_standard_webhooks(http: httpx.Client, receiver: WebhookReceiver) -> None:
    configure(http, webhook_url=receiver.url)
    answer = checkout(http, "wh-1", 50000)
    [got] = receiver.wait_for(1)
    body, headers = got["raw"], got["headers"]
    assert json.loads(body) == {
        "type": "Transaction.Paid",
        "timestamp": json.loads(body)["timestamp"],
        "data": {"paymentId": "wh-1", "storeId": STORE_ID, "transactionId": answer["txId"]},
    }
    assert headers["content-type"] == "application/json" and headers["webhook-id"].startswith("msg_")
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
    assert headers["webhook-signature"] == sign(WEBHOOK_SECRET, headers["webhook-id"], headers["webhook-timestamp"],
                                                body)  # fmt: skip
    verified = portone.webhook.verify(WEBHOOK_SECRET, body.decode(), headers)
    assert isinstance(verified, portone.webhook.WebhookTransactionPaid)
    assert verified.data.payment_id == "wh-1" and verified.data.transaction_id == answer["txId"]
    with pytest.raises(portone.webhook.WebhookVerificationError):
        portone.webhook.verify("whsec_" + "b3RoZXItc2VjcmV0", body.decode(), headers)


def test_v2_retries_by_default_on_portones_schedule(http: httpx.Client) -> None:
    """readme-v2.md "웹훅 재전송 정책": up to 5 retries, after 1, 4, 16, 64 and 256 minutes."""
    delays = http.get("/sandbox/v2/config").json()["webhook_retry_delays_ms"]
    assert delays == [60_000, 240_000, 960_000, 3_840_000, 15_360_000]


def test_retries_keep_the_id_and_re_sign(http: httpx.Client, receiver: WebhookReceiver, wait: Any) -> None:
    configure(http, webhook_url=receiver.url, webhook_retry_delays_ms=[1100, 50])
    receiver.responses = [500]
    checkout(http, "wh-retry", 1000)
    first, second = receiver.wait_for(2)
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"]
    assert first["raw"] == second["raw"]
    assert first["headers"]["webhook-timestamp"] != second["headers"]["webhook-timestamp"]
    for attempt in (first, second):
        portone.webhook.verify(WEBHOOK_SECRET, attempt["raw"].decode(), attempt["headers"])
    # Transaction.Ready (the window opened) is delivered too: this test follows the Paid one.
    [delivery] = wait(lambda: [d for d in deliveries(http, "wh-retry")
                               if d["state"] == "delivered" and d["type"] == "Transaction.Paid"])  # fmt: skip
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]


def test_cancel_webhooks_carry_the_cancellation(http: httpx.Client, receiver: WebhookReceiver) -> None:
    configure(http, webhook_url=receiver.url)
    checkout(http, "wh-cancel", 50000)
    partial = http.post("/payments/wh-cancel/cancel", headers=auth(), json={"reason": "r", "amount": 1000}).json()
    http.post("/payments/wh-cancel/cancel", headers=auth(), json={"reason": "quiet", "amount": 1000,
                                                                  "skipWebhook": True})  # fmt: skip
    console = http.post("/sandbox/v2/payments/wh-cancel/cancel", json={}).json()
    got = receiver.wait_for(3)
    time.sleep(0.2)
    assert len(receiver.received) == 3  # skipWebhook sent none
    # Each webhook is sent on its own: PortOne promises no order of arrival, and neither does the sandbox.
    by_type = {json.loads(g["raw"])["type"]: g for g in got}
    kinds = {kind: json.loads(g["raw"])["data"].get("cancellationId") for kind, g in by_type.items()}
    assert kinds == {
        "Transaction.Paid": None,
        "Transaction.PartialCancelled": partial["cancellation"]["id"],
        "Transaction.Cancelled": console["cancellation_id"],
    }
    cancelled = by_type["Transaction.Cancelled"]
    verified = portone.webhook.verify(WEBHOOK_SECRET, cancelled["raw"].decode(), cancelled["headers"])
    assert isinstance(verified, portone.webhook.WebhookTransactionCancelledCancelled)


def test_notice_urls_secret_from_config_and_manual_send(http: httpx.Client, receiver: WebhookReceiver) -> None:
    configure(http, webhook_secret="whsec_" + "c2Vjb25kLXNlY3JldA==")
    checkout(http, "wh-notice", 1000, pay_method="virtual_account", card_number=None, notice_urls=[receiver.url])
    [issued] = receiver.wait_for(1)
    assert json.loads(issued["raw"])["type"] == "Transaction.VirtualAccountIssued"
    portone.webhook.verify("whsec_c2Vjb25kLXNlY3JldA==", issued["raw"].decode(), issued["headers"])
    with pytest.raises(portone.webhook.WebhookVerificationError):
        portone.webhook.verify(WEBHOOK_SECRET, issued["raw"].decode(), issued["headers"])
    sent = http.post("/sandbox/v2/webhooks/send", json={"payment_id": "wh-notice", "type": "Transaction.Paid"})
    assert sent.status_code == 200
    assert json.loads(receiver.wait_for(2)[1]["raw"])["type"] == "Transaction.Paid"
    assert http.post("/sandbox/v2/webhooks/send", json={"payment_id": "none"}).status_code == 404
    no_url = checkout(http, "wh-nowhere", 1000)
    assert no_url["status"] == "PAID"
    assert [d["state"] for d in deliveries(http, "wh-nowhere")] == ["no_url", "no_url"]  # Ready, Paid


@pytest.mark.parametrize(
    ("outcome", "types"),
    [
        ("pay", ["Transaction.Ready", "Transaction.Paid"]),
        ("abandon", ["Transaction.Ready"]),
        ("close", ["Transaction.Ready", "Transaction.Failed"]),
    ],
)
def test_transaction_ready_is_sent_when_the_window_opens(
    http: httpx.Client, receiver: WebhookReceiver, outcome: str, types: list[str]
) -> None:
    """`Transaction.Ready`: 결제창이 열렸을 때 (opi/ko/integration/webhook/readme-v2.md)."""
    receiver.ignore_types = set()
    configure(http, webhook_url=receiver.url)
    extra = {"card_number": None} if outcome != "pay" else {}
    checkout(http, f"wh-open-{outcome}", 1000, outcome=outcome, **extra)
    receiver.wait_for(len(types))
    time.sleep(0.3)  # nothing more comes
    got = sorted(json.loads(r["raw"])["type"] for r in receiver.received)
    assert got == sorted(types)
    for r in receiver.received:
        portone.webhook.verify(WEBHOOK_SECRET, r["raw"].decode(), r["headers"])
