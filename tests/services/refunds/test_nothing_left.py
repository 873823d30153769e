"""A cancel PortOne refuses because nothing is left (V1 `code: 1`, "이미 전액취소된 주문입니다."): the
payment was fully cancelled elsewhere (PortOne's console) between our read and our cancel. That is
NotRefundable "nothing left", never a failure of ours."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import select

from services.core.errors import NotRefundable
from services.core.models import Order, Payment, Refund, RefundStatus
from services.payments.verification import verify_payment
from services.refunds.engine import refund
from services.runtime import Runtime
from tests.factories import SandboxControl


def _paid(runtime: Runtime, sandbox: SandboxControl, merchant_uid: str) -> str:
    with runtime.db.write() as session:
        session.add(Order(merchant_uid=merchant_uid, name="체카 탁송비", amount=Decimal(50000), currency="KRW",
                          customer_email="kim@example.com", customer_name="김체카"))  # fmt: skip
    paid = sandbox.checkout(merchant_uid, "50000")
    assert paid["success"] is True, paid
    imp_uid = str(paid["imp_uid"])
    verify_payment(runtime, imp_uid=imp_uid, source="complete")
    return imp_uid


def test_a_cancel_refused_as_already_fully_cancelled_is_nothing_left(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid = _paid(runtime, sandbox, "nothing-left-1")
    # Our cancel reaches PortOne 1.5 s late; meanwhile the whole payment is cancelled in the console.
    sandbox.configure(latency_ms=1500, latency_only="POST /payments/cancel")
    outcome: dict[str, object] = {}

    def ours() -> None:
        try:
            outcome["result"] = refund(runtime, imp_uid=imp_uid, amount=None, reason="고객 요청", actor="kim",
                                       idempotency_key="nothing-left-1")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            outcome["error"] = exc

    worker = threading.Thread(target=ours)
    worker.start()
    time.sleep(0.6)
    sandbox.console_cancel(imp_uid)
    worker.join(15)
    sandbox.configure(latency_ms=0)

    [refused] = [c for c in sandbox.calls()["cancels"] if c.get("outcome") == "refused"]
    assert refused["message"] == "이미 전액취소된 주문입니다."
    error = outcome.get("error")
    assert isinstance(error, NotRefundable), outcome
    assert error.nothing_left
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None and (payment.status, payment.cancel_amount) == ("cancelled", Decimal(50000))
        attempts = session.scalars(select(Refund).where(Refund.payment_id == payment.id)).all()
    ours_attempt = [r for r in attempts if r.source != "portone"]
    assert [(r.status, r.error_code) for r in ours_attempt] == [(RefundStatus.FAILED, "1")]


@pytest.fixture
def portone_version() -> str:
    return "v1"
