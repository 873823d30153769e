"""The PortOne webhook receiver: payments arrive without /complete, console cancels, virtual
accounts, duplicates, out-of-order deliveries, form bodies, and forged deliveries."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Alert, Order, Payment, Refund, WebhookEvent
from services.runtime import Runtime
from tests.factories import SandboxControl, new_order, wait_for_webhooks


def _payment(runtime: Runtime, imp_uid: str) -> Payment:
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None, f"{imp_uid} not recorded"
        return payment


def _order_status(runtime: Runtime, merchant_uid: str) -> str:
    with runtime.db.read() as session:
        order = session.scalar(select(Order).where(Order.merchant_uid == merchant_uid))
        assert order is not None
        return order.status


def test_webhook_alone_records_a_payment_whose_complete_never_came(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    wait_for_webhooks(runtime, imp_uid)
    payment = _payment(runtime, imp_uid)
    assert payment.status == "paid" and payment.verified and payment.amount == Decimal(50000)
    assert _order_status(runtime, order["merchant_uid"]) == "paid"


def test_console_cancel_arrives_as_a_refund_row(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    wait_for_webhooks(runtime, imp_uid)
    sandbox.console_cancel(imp_uid, "15000", reason="콘솔에서 부분 취소")
    wait_for_webhooks(runtime, imp_uid, count=2)
    payment = _payment(runtime, imp_uid)
    assert payment.cancel_amount == Decimal(15000) and payment.status == "paid"
    with runtime.db.read() as session:
        refunds = session.scalars(select(Refund)).all()
        assert [(r.source, r.amount, r.status) for r in refunds] == [("portone", Decimal(15000), "succeeded")]
    assert _order_status(runtime, order["merchant_uid"]) == "partially_refunded"
    sandbox.console_cancel(imp_uid)
    wait_for_webhooks(runtime, imp_uid, count=3)
    assert _payment(runtime, imp_uid).status == "cancelled"
    assert _order_status(runtime, order["merchant_uid"]) == "refunded"


def test_virtual_account_ready_then_deposit(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    order = new_order(api)
    issued = sandbox.checkout(order["merchant_uid"], "50000", pay_method="vbank")
    imp_uid = issued["imp_uid"]
    answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert answer.status_code == 409 and answer.json()["status"] == "ready"
    wait_for_webhooks(runtime, imp_uid)
    assert _order_status(runtime, order["merchant_uid"]) == "awaiting_deposit"
    sandbox.http.post(f"/sandbox/payments/{imp_uid}/deposit").raise_for_status()
    wait_for_webhooks(runtime, imp_uid, count=2)
    assert _payment(runtime, imp_uid).status == "paid"
    assert _order_status(runtime, order["merchant_uid"]) == "paid"


@pytest.mark.reliability(
    area="concurrency",
    case="duplicate and out-of-order V1 webhooks",
    outcome="applied once; state equals PortOne's",
)
def test_duplicate_and_out_of_order_webhooks_apply_once(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    sandbox.configure(webhook_hold=True, webhook_duplicates=2)
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    sandbox.console_cancel(imp_uid, "5000")
    sandbox.console_cancel(imp_uid, "7000")
    sandbox.http.post("/sandbox/webhooks/flush", json={"order": "reverse"}).raise_for_status()
    wait_for_webhooks(runtime, imp_uid, count=9)  # three events, each delivered three times
    payment = _payment(runtime, imp_uid)
    assert payment.cancel_amount == Decimal(12000) and payment.status == "paid"
    with runtime.db.read() as session:
        refunds = session.scalars(select(Refund).order_by(Refund.amount)).all()
        assert [r.amount for r in refunds] == [Decimal(5000), Decimal(7000)]
    assert _order_status(runtime, order["merchant_uid"]) == "partially_refunded"


def test_form_encoded_webhook(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    sandbox.configure(webhook_content_type="form")
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    wait_for_webhooks(runtime, imp_uid)
    with runtime.db.read() as session:
        event = session.scalar(select(WebhookEvent).where(WebhookEvent.imp_uid == imp_uid))
        assert event is not None and event.result == "processed" and event.verified
        assert "x-www-form-urlencoded" in (event.content_type or "")


@pytest.mark.reliability(
    area="hostile input",
    case="V1 webhook naming an unknown imp_uid or claiming a false status",
    outcome="nothing changes (PortOne is asked); delivery logged and alerted",
)
def test_forged_webhook_changes_nothing_and_is_logged(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    wait_for_webhooks(runtime, imp_uid)
    # Claims a cancel that never happened: re-fetching shows the truth, nothing changes.
    lie = api.post(
        "/portone/webhook", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"], "status": "cancelled"}
    )
    assert lie.status_code == 200
    assert "claimed cancelled" in lie.json()["detail"]
    assert _payment(runtime, imp_uid).status == "paid"
    unknown = api.post("/portone/webhook", json={"imp_uid": "imp_000000000000", "status": "paid"})
    assert unknown.status_code == 400
    garbage = api.post("/portone/webhook", content=b"\xff\xfe not json", headers={"Content-Type": "application/json"})
    assert garbage.status_code == 400
    huge = api.post(
        "/portone/webhook", content=b"{" + b" " * 200_000 + b"}", headers={"Content-Type": "application/json"}
    )
    assert huge.status_code == 413
    with runtime.db.read() as session:
        results = [e.result for e in session.scalars(select(WebhookEvent).order_by(WebhookEvent.id))]
    assert results.count("rejected") == 2


def test_payment_for_an_order_we_never_made_is_alerted(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = sandbox.checkout("someone_elses_order_1", "50000")["imp_uid"]
    wait_for_webhooks(runtime, imp_uid)
    with runtime.db.read() as session:
        alert = session.scalar(select(Alert).where(Alert.imp_uid == imp_uid))
        assert alert is not None and alert.kind == "payment_without_order"
