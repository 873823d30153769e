"""A refund of a duplicate deposit, a bank the PG cannot refund to, and the order read's amount."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from services.core.models import Order, Refund, RefundStatus
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order, wait_for_webhooks


def _order_status(runtime: Runtime, merchant_uid: str) -> str:
    with runtime.db.read() as session:
        order = session.scalar(select(Order).where(Order.merchant_uid == merchant_uid))
        assert order is not None
        return str(order.status)


def test_refunding_the_duplicate_deposit_leaves_the_order_paid_by_card(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The customer had a virtual account issued, then paid by card (order paid), then deposited into
    the virtual account anyway (a second, duplicate payment). Ops refund the duplicate deposit in full.
    The card payment still stands: the order must stay paid, not become refunded."""
    order = new_order(api)
    merchant_uid = order["merchant_uid"]
    issued = sandbox.checkout(merchant_uid, order["amount"], pay_method="vbank", card_number=None)
    assert issued["status"] == "ready", issued
    card = sandbox.checkout(merchant_uid, order["amount"])
    assert card["success"] is True, card
    done = api.post("/api/payments/complete", json={"imp_uid": card["imp_uid"], "merchant_uid": merchant_uid})
    assert done.status_code == 200, done.text
    assert _order_status(runtime, merchant_uid) == "paid"

    vbank_uid = issued["imp_uid"]
    sandbox.http.post(f"/sandbox/payments/{vbank_uid}/deposit").raise_for_status()
    deposit = api.post("/api/payments/complete", json={"imp_uid": vbank_uid, "merchant_uid": merchant_uid})
    assert deposit.status_code == 200, deposit.text

    account = {"bank": "04", "holder": "김체카", "number": "123456-78-901234"}
    refunded = api.post(
        f"/api/payments/{vbank_uid}/refunds",
        json={"reason": "중복 입금 환불", "refund_account": account},
        headers=auth_headers("review13-duplicate-1"),
    )
    assert refunded.status_code == 201, refunded.text
    wait_for_webhooks(runtime, vbank_uid, count=1)

    assert sandbox.payment(card["imp_uid"])["status"] == "paid"
    assert _order_status(runtime, merchant_uid) == "paid"  # the card payment still stands
    read = api.get(f"/api/orders/{merchant_uid}")
    assert read.status_code == 200 and read.json()["status"] == "paid", read.text


def test_a_bank_the_payments_pg_cannot_refund_to_leaves_nothing_pending(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A 키움페이 virtual-account payment refunded into 한국씨티은행 (a bank 키움페이 has no code for):
    refused with a clear 400 before anything is sent, and nothing is left open. The operator then
    picks another bank and the refund goes through at once, with no alert."""
    order = new_order(api)
    issued = sandbox.checkout(
        order["merchant_uid"], order["amount"], pay_method="vbank", card_number=None, pg="kiwoompay"
    )
    imp_uid = issued["imp_uid"]
    sandbox.http.post(f"/sandbox/payments/{imp_uid}/deposit").raise_for_status()
    done = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert done.status_code == 200, done.text

    account = {"bank": "27", "holder": "김체카", "number": "123456-78-901234"}
    refused = api.post(
        f"/api/payments/{imp_uid}/refunds",
        json={"reason": "환불", "refund_account": account},
        headers=auth_headers("review13-kiwoom-1"),
    )
    assert refused.status_code == 400, refused.text
    assert sandbox.calls()["cancels"] == []
    with runtime.db.read() as session:
        open_attempts = session.scalars(
            select(Refund).where(Refund.status.in_([RefundStatus.PENDING, RefundStatus.UNKNOWN]))
        ).all()
    assert open_attempts == [], [(r.id, r.status, r.error_message) for r in open_attempts]

    other = api.post(
        f"/api/payments/{imp_uid}/refunds",
        json={"reason": "환불", "refund_account": {**account, "bank": "04"}},
        headers=auth_headers("review13-kiwoom-2"),
    )
    assert other.status_code == 201, other.text
    assert other.json()["status"] == "succeeded"


def test_the_order_read_writes_its_amount_as_the_other_routes_do(api: httpx.Client, sandbox: SandboxControl) -> None:
    """POST /api/orders and /complete write a KRW amount as a whole number (50000); the customer
    app's read of the same order writes it with two decimals (50000.00), which KRW does not have."""
    order = new_order(api)
    paid = sandbox.checkout(order["merchant_uid"], order["amount"])
    done = api.post("/api/payments/complete", json={"imp_uid": paid["imp_uid"], "merchant_uid": order["merchant_uid"]})
    assert done.status_code == 200 and f'"amount":{order["amount"]},' in done.text.replace(" ", ""), done.text
    read = api.get(f"/api/orders/{order['merchant_uid']}")
    assert read.status_code == 200, read.text
    assert f'"amount":{order["amount"]},' in read.text.replace(" ", ""), read.text
