"""Payment detail: ours beside PortOne's live record, the differences, the timeline and receipts."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from services.alerts.store import AlertKind, raise_alert
from services.auth.access import Actor
from services.core.errors import InvalidRequest, NotFound
from services.core.models import Role
from services.payments import detail as payment_detail
from services.payments import orders
from services.payments import verification as payments
from services.refunds import desk as refund_desk
from services.runtime import Runtime
from tests.factories import DECLINED_CARD, SandboxControl, new_order, wait_for_webhooks

OPERATOR = Actor("kim", Role.OPERATOR)
VIEWER = Actor("lee", Role.VIEWER)


def _paid(runtime: Runtime, sandbox: SandboxControl) -> tuple[str, str]:
    order = orders.create_order(
        runtime, customer_email="kim@example.com", customer_name="김체카", customer_phone="010-1234-5678"
    )
    paid = sandbox.checkout(
        order.merchant_uid,
        order.amount,
        buyer_name="김체카",
        buyer_email="kim@example.com",
        buyer_tel="010-1234-5678",
    )
    payments.complete(runtime, imp_uid=str(paid["imp_uid"]), merchant_uid=order.merchant_uid)
    return str(paid["imp_uid"]), order.merchant_uid


def test_a_cancel_made_at_portone_shows_as_a_difference(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, _ = _paid(runtime, sandbox)
    same = payment_detail.payment_detail(runtime, actor=OPERATOR, imp_uid=imp_uid)
    assert same.portone_error is None and same.differences == []
    assert same.receipt_url and same.refundable == Decimal(50000)

    # Cancelled in PortOne's console; no webhook reaches us (no API is running in this test).
    sandbox.console_cancel(imp_uid, "20000")
    detail = payment_detail.payment_detail(runtime, actor=OPERATOR, imp_uid=imp_uid)
    differs = {c.field: (c.ours, c.portone) for c in detail.differences}
    assert differs["cancel_amount"] == (Decimal(0), Decimal(20000))
    assert differs["cancellations"] == (0, 1)
    assert "status" not in differs  # a partial cancel leaves the payment paid
    assert detail.refundable == Decimal(30000) and detail.refundable_from_portone
    assert [(amount, url.startswith(sandbox.url)) for _, amount, url in detail.cancel_receipts] == [
        (Decimal(20000), True)
    ]
    assert detail.ours["cancel_amount"] == Decimal(0)  # reading the detail records nothing


def test_portone_unreachable_still_shows_our_record(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, _ = _paid(runtime, sandbox)
    sandbox.configure(fail_next=50)
    detail = payment_detail.payment_detail(runtime, actor=OPERATOR, imp_uid=imp_uid)
    sandbox.configure(fail_next=0)
    assert detail.portone is None and detail.portone_error == "unavailable"
    assert detail.differences == []
    assert detail.ours["amount"] == Decimal(50000) and detail.state == "paid"
    assert detail.refundable == Decimal(50000) and not detail.refundable_from_portone
    assert [e.kind for e in detail.timeline if e.kind.startswith("payment_")] == ["payment_started", "payment_paid"]


def test_viewers_get_masked_personal_data_and_no_raw_payload(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, _ = _paid(runtime, sandbox)
    viewer = payment_detail.payment_detail(runtime, actor=VIEWER, imp_uid=imp_uid)
    operator = payment_detail.payment_detail(runtime, actor=OPERATOR, imp_uid=imp_uid)
    assert (viewer.ours["buyer_email"], viewer.ours["buyer_tel"]) == ("k***@example.com", "010-****-5678")
    assert viewer.portone is not None and viewer.portone["buyer_tel"] == "010-****-5678"
    assert viewer.raw is None and viewer.masked
    assert operator.ours["buyer_email"] == "kim@example.com" and operator.raw is not None


def test_lookup_by_imp_uid_or_merchant_uid(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid, merchant_uid = _paid(runtime, sandbox)
    assert [m.imp_uid for m in payment_detail.find_payments(runtime, actor=VIEWER, text=merchant_uid)] == [imp_uid]
    assert [m.merchant_uid for m in payment_detail.find_payments(runtime, actor=VIEWER, text=imp_uid)] == [merchant_uid]
    assert payment_detail.find_payments(runtime, actor=VIEWER, text=imp_uid[:-2]) == []
    with pytest.raises(InvalidRequest):
        payment_detail.find_payments(runtime, actor=VIEWER, text=" ")
    with pytest.raises(NotFound):
        payment_detail.payment_detail(runtime, actor=VIEWER, imp_uid="imp_unknown")


def test_timeline_has_order_webhooks_refunds_alerts_and_audit(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api)
    imp_uid = str(sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"])
    wait_for_webhooks(runtime, imp_uid)
    refund_desk.request_refund(
        runtime, actor=OPERATOR, imp_uid=imp_uid, amount="10000", reason="고객 요청", idempotency_key="t-1"
    )
    with runtime.db.write() as session:
        raise_alert(
            session,
            kind=AlertKind.REFUND_MISMATCH,
            imp_uid=imp_uid,
            merchant_uid=order["merchant_uid"],
            message="test alert",
        )
    detail = payment_detail.payment_detail(runtime, actor=OPERATOR, imp_uid=imp_uid)
    kinds = [event.kind for event in detail.timeline]
    for kind in ("order_created", "order_prepared", "payment_paid", "webhook", "refund", "alert", "audit"):
        assert kind in kinds, kind
    assert kinds.index("order_created") < kinds.index("payment_paid") < kinds.index("refund")
    seconds = [e.at.replace(microsecond=0) for e in detail.timeline]
    assert seconds == sorted(seconds)
    refund_event = next(e for e in detail.timeline if e.kind == "refund")
    assert (refund_event.outcome, refund_event.actor) == ("succeeded", "kim")
    webhook = next(e for e in detail.timeline if e.kind == "webhook")
    assert webhook.outcome == "processed"
    assert {e.summary for e in detail.timeline if e.kind == "audit"} >= {"order.created", "refund.succeeded"}
    assert [(r.amount, r.status, r.requested_by) for r in detail.refunds] == [(Decimal(10000), "succeeded", "kim")]
    assert detail.refunds[0].receipt_url is not None


def test_a_declined_payment_has_nothing_to_refund(runtime: Runtime, sandbox: SandboxControl) -> None:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김")
    declined = str(sandbox.checkout(order.merchant_uid, order.amount, card_number=DECLINED_CARD)["imp_uid"])
    payments.complete(runtime, imp_uid=declined, merchant_uid=order.merchant_uid)
    detail = payment_detail.payment_detail(runtime, actor=OPERATOR, imp_uid=declined)
    assert (detail.state, detail.refundable) == ("failed", Decimal(0))
    assert any(e.kind == "payment_failed" for e in detail.timeline)
