"""V2 checkout through `POST /sandbox/checkout` with `"version": "v2"`, virtual account deposits and
console cancels of V2 payments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.testing import RunningSandbox
from tests.v2_support import auth, checkout


@pytest.fixture
def http(sandbox: RunningSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=10, trust_env=False) as client:
        yield client


def _payment(http: httpx.Client, payment_id: str) -> dict[str, Any]:
    response = http.get(f"/payments/{payment_id}", headers=auth())
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_card_checkout_answers_like_request_payment(http: httpx.Client) -> None:
    answer = checkout(http, "order-krw", 50000, buyer_name="김체카", buyer_tel="010-1234-5678", name="체카 탁송비")
    assert answer["transactionType"] == "PAYMENT" and answer["paymentId"] == "order-krw"
    assert answer["status"] == "PAID" and "code" not in answer
    payment = _payment(http, "order-krw")
    assert payment["transactionId"] == answer["txId"]
    assert payment["amount"]["total"] == 50000 and payment["amount"]["paid"] == 50000
    assert payment["channel"]["pgProvider"] == "KCP_V2" and payment["method"]["type"] == "PaymentMethodCard"
    assert payment["method"]["card"]["number"] == "411111******1111"
    assert payment["customer"] == {"name": "김체카", "phoneNumber": "010-1234-5678"}
    assert payment["orderName"] == "체카 탁송비"


@pytest.mark.parametrize(
    ("body", "currency", "total"),
    [
        ({"amount": "38.50"}, "USD", 3850),
        ({"amount": "6"}, "USD", 600),
        ({"total_amount": 600}, "USD", 600),
        ({"amount": 50000}, "KRW", 50000),
        ({"amount": "1200"}, "JPY", 1200),
    ],
)
def test_amounts_become_minor_units(http: httpx.Client, body: dict[str, Any], currency: str, total: int) -> None:
    request = {"version": "v2", "payment_id": f"m-{currency}-{total}", "currency": currency,
               "card_number": "4111111111111111", "pg": "kcp" if currency == "KRW" else "eximbay", **body}  # fmt: skip
    assert http.post("/sandbox/checkout", json=request).json()["status"] == "PAID"
    payment = _payment(http, request["payment_id"])
    assert (payment["amount"]["total"], payment["currency"]) == (total, currency)


def test_checkout_refusals(http: httpx.Client) -> None:
    too_precise = http.post("/sandbox/checkout", json={"version": "v2", "payment_id": "r-1", "amount": "38.505",
                                                        "currency": "USD", "card_number": "4111111111111111"})  # fmt: skip
    assert too_precise.status_code == 400
    no_amount = http.post("/sandbox/checkout", json={"version": "v2", "payment_id": "r-1", "card_number": "x"})
    assert no_amount.status_code == 400
    kcp_usd = checkout(http, "r-2", "38.50", "USD", pg="kcp")
    assert kcp_usd["code"] == "INVALID_REQUEST" and kcp_usd["status"] is None
    assert http.get("/payments/r-2", headers=auth()).status_code == 404


def test_declined_then_retried_payment_keeps_its_payment_id(http: httpx.Client) -> None:
    declined = checkout(http, "retry-1", 50000, card_number="4000-0000-0000-0002")
    assert declined["code"] == "FAILURE_TYPE_PG" and declined["pgCode"] == "CARD_DECLINED"
    failed = _payment(http, "retry-1")
    assert failed["status"] == "FAILED" and failed["failure"]["reason"] and failed["failedAt"]
    paid = checkout(http, "retry-1", 50000)
    assert paid["status"] == "PAID" and paid["txId"] != declined["txId"]
    assert _payment(http, "retry-1")["transactionId"] == paid["txId"]
    again = checkout(http, "retry-1", 50000)
    assert again["code"] == "ALREADY_PAID" and again["txId"] is None
    listed = http.get("/payments", headers=auth()).json()
    assert listed["page"]["totalCount"] == 1


def test_virtual_account_then_deposit(http: httpx.Client) -> None:
    issued = checkout(http, "va-1", 30000, pay_method="virtual_account", card_number=None)
    assert issued["status"] == "VIRTUAL_ACCOUNT_ISSUED"
    payment = _payment(http, "va-1")
    assert payment["method"]["type"] == "PaymentMethodVirtualAccount" and payment["method"]["accountNumber"]
    waiting = checkout(http, "va-1", 30000)
    assert waiting["code"] == "ALREADY_PAID_OR_WAITING"
    deposit = http.post("/sandbox/v2/payments/va-1/deposit")
    assert deposit.status_code == 200 and deposit.json()["status"] == "PAID"
    assert http.post("/sandbox/v2/payments/va-1/deposit").status_code == 409
    assert http.post("/sandbox/v2/payments/none/deposit").status_code == 404


def test_console_cancel_in_major_units(http: httpx.Client) -> None:
    checkout(http, "cc-1", "38.50", "USD")
    first = http.post("/sandbox/v2/payments/cc-1/cancel", json={"amount": "10.25", "reason": "콘솔"})
    assert first.status_code == 200 and first.json()["amount"] == 1025
    assert first.json()["payment"]["status"] == "PARTIAL_CANCELLED"
    assert first.json()["payment"]["cancellations"][0]["trigger"] == "CONSOLE"
    bad = http.post("/sandbox/v2/payments/cc-1/cancel", json={"amount": "0.001"})
    assert bad.status_code == 400
    rest = http.post("/sandbox/v2/payments/cc-1/cancel", json={})
    assert rest.json()["amount"] == 2825 and rest.json()["payment"]["status"] == "CANCELLED"
    again = http.post("/sandbox/v2/payments/cc-1/cancel", json={})
    assert again.status_code == 409 and again.json()["type"] == "PAYMENT_ALREADY_CANCELLED"
    raw = http.get("/sandbox/v2/payments/cc-1").json()
    assert raw["amount"]["cancelled"] == 3850


def test_abandoned_and_closed_windows(http: httpx.Client) -> None:
    """The window opened (READY) and was left (stays READY) or closed (FAILED)."""
    left = checkout(http, "v2-left", 50000, outcome="abandon", card_number=None)
    assert left["status"] == "READY" and left["code"] == "WINDOW_ABANDONED"
    payment = _payment(http, "v2-left")
    assert payment["status"] == "READY" and "method" not in payment
    assert checkout(http, "v2-left", 50000)["status"] == "PAID"  # the customer came back
    closed = checkout(http, "v2-closed", 50000, outcome="close", card_number=None)
    assert closed["status"] == "FAILED" and closed["pgCode"] == "PAY_PROCESS_CANCELED"
    assert _payment(http, "v2-closed")["status"] == "FAILED"
