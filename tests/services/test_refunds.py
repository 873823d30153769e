"""Refund service: unknown outcomes are settled by asking PortOne, never by sending again."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import select

from services import orders, payments, refunds
from services.errors import GatewayUnavailable
from services.models import Alert, Refund, RefundStatus
from services.runtime import Runtime
from tests.factories import SandboxControl


def _paid_payment(runtime: Runtime, sandbox: SandboxControl) -> str:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


@pytest.mark.reliability(
    area="fault",
    case="PortOne silent after a cancel, then unreachable while settling",
    outcome="refund unknown and alerted; settled later by asking PortOne; never resent",
)
def test_unknown_outcome_waits_for_portone_then_is_settled_without_resending(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid_payment(runtime, sandbox)
    # The cancel is applied but its answer never comes, and PortOne stays unreachable a while.
    sandbox.configure(cancel_timeout_after_apply=1, cancel_hang_seconds=8)

    def portone_goes_down() -> None:
        time.sleep(1.0)  # after the cancel was received, before our 3 s timeout
        sandbox.configure(fail_next=50)

    outage = threading.Thread(target=portone_goes_down)
    outage.start()
    result = refunds.refund(
        runtime, imp_uid=imp_uid, amount="20000", reason="고객 요청", actor="kim", idempotency_key="k-unknown"
    )
    outage.join()
    assert result.status == RefundStatus.UNKNOWN
    with runtime.db.read() as session:
        alert = session.scalar(select(Alert).where(Alert.imp_uid == imp_uid))
        assert alert is not None and alert.kind == "refund_outcome_unknown"

    sandbox.configure(fail_next=0)
    # The same intent again never resends: it asks PortOne and replays how the attempt ended.
    again = refunds.refund(
        runtime, imp_uid=imp_uid, amount="20000", reason="고객 요청", actor="kim", idempotency_key="k-unknown"
    )
    assert again.replayed and again.status == RefundStatus.SUCCEEDED
    assert refunds.settle_open_attempts(runtime, imp_uid=imp_uid) == 0  # nothing left open
    with runtime.db.read() as session:
        rows = session.scalars(select(Refund)).all()
        assert [(r.status, r.amount) for r in rows] == [("succeeded", Decimal(20000))]
        assert rows[0].portone_cancellation_id
    assert len(sandbox.calls()["cancels"]) == 1
    follow_up = refunds.refund(
        runtime, imp_uid=imp_uid, amount="30000", reason="나머지", actor="kim", idempotency_key="k-rest"
    )
    assert follow_up.status == RefundStatus.SUCCEEDED and follow_up.remaining == 0


@pytest.mark.reliability(
    area="fault",
    case="PortOne unreachable before a refund is sent",
    outcome="refund refused (503), nothing sent, nothing recorded as refunded",
)
def test_portone_unreachable_before_sending_changes_nothing(runtime: Runtime, sandbox: SandboxControl) -> None:
    imp_uid = _paid_payment(runtime, sandbox)
    sandbox.configure(fail_next=50)
    with pytest.raises(GatewayUnavailable):
        refunds.refund(runtime, imp_uid=imp_uid, amount="1000", reason="x", actor="kim", idempotency_key="k1")
    sandbox.configure(fail_next=0)
    assert sandbox.calls()["cancels"] == []
    again = refunds.refund(runtime, imp_uid=imp_uid, amount="1000", reason="x", actor="kim", idempotency_key="k1")
    assert again.status == RefundStatus.SUCCEEDED and not again.replayed


@pytest.mark.reliability(
    area="fault",
    case="a refunding process crashed holding the payment's lease",
    outcome="lease expires; the next refund proceeds and settles the open attempt",
)
def test_lease_left_by_a_crashed_process_expires(runtime: Runtime, sandbox: SandboxControl) -> None:
    from datetime import timedelta

    from services.models import Payment, utcnow

    imp_uid = _paid_payment(runtime, sandbox)
    with runtime.db.write() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        payment.refund_lock_owner = "crashed-process"
        payment.refund_lock_expires_at = utcnow() + timedelta(seconds=1)
    result = refunds.refund(runtime, imp_uid=imp_uid, amount="1000", reason="x", actor="kim", idempotency_key="k2")
    assert result.status == RefundStatus.SUCCEEDED


def test_a_full_refund_of_a_fully_refunded_payment_says_nothing_is_left(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    from services.errors import NotRefundable

    imp_uid = _paid_payment(runtime, sandbox)
    refunds.refund(runtime, imp_uid=imp_uid, amount=None, reason="고객 요청", actor="kim", idempotency_key="all-1")
    with pytest.raises(NotRefundable, match="nothing left") as refused:
        refunds.refund(runtime, imp_uid=imp_uid, amount=None, reason="고객 요청", actor="kim", idempotency_key="all-2")
    assert refused.value.nothing_left
