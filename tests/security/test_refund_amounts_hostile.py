"""Refund amounts of any shape against the real sandbox (hypothesis): refused with a clear domain
error, or refunded, and never more in total than was paid."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from services.core.errors import PaymentsError
from services.core.models import Payment, RefundStatus
from services.payments import orders
from services.payments import verification as payments
from services.refunds import engine as refunds
from services.runtime import Runtime
from tests.factories import SandboxControl

AMOUNTS = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.text(max_size=12),
    st.sampled_from(["-1", "0", "0.5", "1e3", "1E+4", "49999.999", "  7000 ", "NaN", "Infinity", "5,000", "１０００"]),
    st.sampled_from(["0.01", "1.005", "38.50", "38.51", "-0.01", "10.1", "0.001", "1e-2", "3850"]),  # USD-sized
)


@pytest.mark.reliability(
    area="hostile input",
    case="refund amounts of any shape (hypothesis, against the sandbox)",
    outcome="a domain error with a message, or a refund in whole won / cents; never above what was paid; total = PortOne's",
)
@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_refund_amounts_of_any_shape(runtime: Runtime, sandbox: SandboxControl, data: st.DataObject) -> None:
    currency = data.draw(st.sampled_from(["KRW", "USD"]), label="currency")  # no decimals; cents
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김", currency=currency)
    imp_uid = sandbox.checkout(order.merchant_uid, order.amount, currency)["imp_uid"]
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    for number in range(4):
        amount = data.draw(AMOUNTS, label=f"amount {number}")
        try:
            result = refunds.refund(
                runtime,
                imp_uid=imp_uid,
                amount=amount,
                reason="고객 요청",
                actor="kim",
                idempotency_key=f"{imp_uid}-{number}",
            )
        except PaymentsError as exc:
            assert str(exc)  # refused with something to show the operator
            event(f"refused: {type(exc).__name__}")
            continue
        assert result.status in (RefundStatus.SUCCEEDED, RefundStatus.REJECTED)
        event(f"refund {result.status}")
    portone = sandbox.payment(imp_uid)
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        succeeded = sum((r.amount for r in payment.refunds if r.status == RefundStatus.SUCCEEDED), Decimal(0))
        assert all(
            r.amount == r.amount.quantize(Decimal(1) if currency == "KRW" else Decimal("0.01"))
            for r in payment.refunds
            if r.status == RefundStatus.SUCCEEDED
        )
    assert succeeded == Decimal(str(portone["cancel_amount"])) <= order.amount
