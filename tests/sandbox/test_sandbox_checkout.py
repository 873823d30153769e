"""POST /sandbox/checkout (IMP.request_pay), prepare enforcement, currencies, vbank."""

from __future__ import annotations

from typing import Any

import pytest

CALLBACK_KEYS = {"success", "imp_uid", "merchant_uid", "paid_amount", "status", "currency",
                 "pay_method", "pg_provider", "error_code", "error_msg"}  # fmt: skip


def test_approved_card(client: Any) -> None:
    rsp = client.checkout("order-ok", 50000)
    assert CALLBACK_KEYS <= set(rsp)
    assert rsp["success"] is True
    assert rsp["status"] == "paid"
    assert rsp["paid_amount"] == 50000
    assert rsp["pg_provider"] == "kcp" and rsp["pay_method"] == "card"
    assert rsp["error_code"] is None and rsp["error_msg"] is None
    assert client.payment(rsp["imp_uid"])["status"] == "paid"


@pytest.mark.parametrize("card", ["4000-0000-0000-0002", "4000000000000002"])
def test_declined_card_creates_failed_payment(client: Any, card: str) -> None:
    rsp = client.checkout("order-declined", 50000, card_number=card)
    assert rsp["success"] is False
    assert rsp["status"] == "failed"
    assert rsp["error_msg"]
    p = client.payment(rsp["imp_uid"])
    assert p["status"] == "failed"
    assert p["fail_reason"] == rsp["error_msg"]
    assert p["failed_at"] > 0 and p["paid_at"] == 0
    assert p["card_number"] == "400000******0002"


def test_invalid_card_number_fails(client: Any) -> None:
    rsp = client.checkout("order-bad-card", 1000, card_number="4111-1111-1111-1112")
    assert rsp["success"] is False and rsp["status"] == "failed"


def test_eximbay_usd_exact_decimals(client: Any) -> None:
    r = client.http.post("/sandbox/checkout", json={
        "merchant_uid": "order-usd", "amount": 38.5, "currency": "USD", "pg": "eximbay",
        "card_number": "4111111111111111"})  # fmt: skip
    rsp = r.json()
    assert rsp["success"] and rsp["pg_provider"] == "eximbay" and rsp["currency"] == "USD"
    assert '"paid_amount":38.5' in r.text
    got = client.get(f"/payments/{rsp['imp_uid']}")
    assert '"amount":38.5,' in got.text
    p = got.json()["response"]
    assert p["currency"] == "USD" and p["pg_provider"] == "eximbay" and p["card_name"] == "VISA"

    eur = client.checkout("order-eur", "10.25", currency="EUR", pg="eximbay")
    assert eur["success"] and eur["paid_amount"] == 10.25
    jpy = client.checkout("order-jpy", 1200, currency="JPY", pg="eximbay.MID123")
    assert jpy["success"] and jpy["pg_provider"] == "eximbay"


@pytest.mark.parametrize(
    ("amount", "currency", "pg"),
    [
        ("10.255", "USD", "eximbay"),
        ("100.5", "KRW", None),
        ("12.5", "JPY", "eximbay"),
        ("0", "KRW", None),
        ("-5", "KRW", None),
        ("10", "XXX", "eximbay"),
        ("10", "USD", "kcp"),
    ],
)
def test_invalid_amount_or_currency_refused(client: Any, amount: str, currency: str,
                                            pg: str | None) -> None:  # fmt: skip
    kw = {"currency": currency} | ({"pg": pg} if pg else {})
    rsp = client.checkout("order-invalid", amount, **kw)
    assert rsp["success"] is False
    assert rsp["imp_uid"] is None
    assert rsp["error_msg"]


def test_prepare_mismatch_refused(client: Any) -> None:
    client.post("/payments/prepare", json={"merchant_uid": "order-prep", "amount": 50000})
    forged = client.checkout("order-prep", 100)
    assert forged["success"] is False
    assert forged["imp_uid"] is None
    assert "사전등록" in forged["error_msg"] and "금액" in forged["error_msg"]
    assert client.get("/payments/find/order-prep").status_code == 404
    ok = client.checkout("order-prep", 50000)
    assert ok["success"] is True


def test_prepare_currency_mismatch_refused(client: Any) -> None:
    client.post("/payments/prepare", json={"merchant_uid": "order-cur", "amount": "38.5",
                                           "currency": "USD"})  # fmt: skip
    wrong = client.checkout("order-cur", "38.5", currency="EUR", pg="eximbay")
    assert wrong["success"] is False and "통화" in wrong["error_msg"]
    assert client.checkout("order-cur", "38.50", currency="USD", pg="eximbay")["success"]


def test_enforce_prepare_off_allows_forgery(client: Any) -> None:
    client.post("/payments/prepare", json={"merchant_uid": "order-forged", "amount": 50000})
    client.config(enforce_prepare=False)
    rsp = client.checkout("order-forged", 100)
    assert rsp["success"] is True
    assert client.payment(rsp["imp_uid"])["amount"] == 100


def test_paid_merchant_uid_cannot_be_paid_twice(client: Any) -> None:
    client.paid("order-twice")
    again = client.checkout("order-twice")
    assert again["success"] is False and again["imp_uid"] is None
    client.config(allow_duplicate_merchant_uid=True)
    assert client.checkout("order-twice")["success"] is True


def test_vbank_ready_then_deposit(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url)
    rsp = client.checkout("order-vbank", 30000, pay_method="vbank", card_number=None)
    assert rsp["success"] is True and rsp["status"] == "ready"
    imp_uid = rsp["imp_uid"]
    p = client.payment(imp_uid)
    assert p["status"] == "ready" and p["pay_method"] == "vbank"
    assert p["vbank_num"] and p["vbank_name"] and p["vbank_code"] and p["vbank_holder"]
    assert p["vbank_date"] > p["vbank_issued_at"] > 0
    assert p["paid_at"] == 0 and p["card_number"] is None
    receiver.wait_for(1)

    r = client.http.post(f"/sandbox/payments/{imp_uid}/deposit")
    assert r.status_code == 200 and r.json()["status"] == "paid"
    assert client.payment(imp_uid)["paid_at"] > 0
    bodies = [r["body"] for r in receiver.wait_for(2)]
    assert [b["status"] for b in bodies] == ["ready", "paid"]
    assert all(b["imp_uid"] == imp_uid and b["merchant_uid"] == "order-vbank" for b in bodies)
    assert client.http.post(f"/sandbox/payments/{imp_uid}/deposit").status_code == 409
    assert client.http.post("/sandbox/payments/imp_000000000000/deposit").status_code == 404


def test_checkout_request_validation(client: Any) -> None:
    assert client.http.post("/sandbox/checkout", json={"amount": 1000}).status_code == 400
    assert client.http.post("/sandbox/checkout", json={"merchant_uid": "x"}).status_code == 400
    assert client.http.post("/sandbox/checkout",
                            json={"merchant_uid": "x", "amount": 1000}).status_code == 400  # fmt: skip
    assert client.http.post("/sandbox/checkout", content=b"{nope",
                            headers={"content-type": "application/json"}).status_code == 400  # fmt: skip


def test_abandoned_window_leaves_a_ready_payment_and_no_webhook(client: Any, receiver: Any, wait: Any) -> None:
    """PortOne creates a `ready` payment when the window opens; a customer who leaves keeps it
    `ready`, and no webhook announces a card `ready` (sdk/ko/v1-sdk/javascript-sdk/payrt.md,
    opi/ko/integration/webhook/readme-v1.md)."""
    client.config(webhook_url=receiver.url)
    left = client.checkout("order-left", 50000, outcome="abandon", card_number=None)
    assert left["success"] is False and left["status"] == "ready" and left["imp_uid"]
    p = client.payment(left["imp_uid"])
    assert p["status"] == "ready" and p["pay_method"] == "card" and p["merchant_uid"] == "order-left"
    assert p["started_at"] > 0 and p["paid_at"] == 0 and p["failed_at"] == 0
    # The customer comes back and pays: a second payment under the same merchant_uid.
    paid = client.paid("order-left", 50000)
    assert paid != left["imp_uid"]
    assert client.payment(left["imp_uid"])["status"] == "ready"
    wait(lambda: client.http.get("/sandbox/webhooks").json()["deliveries"])
    statuses = [d["status"] for d in client.http.get("/sandbox/webhooks").json()["deliveries"]]
    assert statuses == ["paid"]
    assert [d["imp_uid"] for d in client.http.get("/sandbox/webhooks").json()["deliveries"]] == [paid]


def test_closed_window_makes_a_failed_payment_and_no_webhook(client: Any, receiver: Any) -> None:
    client.config(webhook_url=receiver.url)
    closed = client.checkout("order-closed", 50000, outcome="close", card_number=None)
    assert closed["success"] is False and closed["status"] == "failed" and closed["error_msg"]
    p = client.payment(closed["imp_uid"])
    assert p["status"] == "failed" and p["failed_at"] > 0 and p["fail_reason"] == closed["error_msg"]
    assert client.http.get("/sandbox/webhooks").json()["deliveries"] == []
    assert (
        client.http.post("/sandbox/checkout", json={"merchant_uid": "x", "amount": 1, "outcome": "?"}).status_code
        == 400
    )
