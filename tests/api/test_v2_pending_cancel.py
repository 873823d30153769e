"""PortOne V2 may accept a cancel as REQUESTED (an asynchronous PG cancel) and finish it later.

While it is pending the payment read back shows nothing of it, so reading back must not judge it
unapplied (a resend would refund twice): the attempt stays unknown, new refunds wait, and once
PortOne shows the cancellation the attempt is settled as succeeded with one cancel sent.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from services import refunds
from services.models import Payment, Refund
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order


@pytest.fixture
def portone_version() -> str:
    return "v2"


def _refund(api: httpx.Client, imp_uid: str, amount: str) -> httpx.Response:
    return api.post(
        f"/api/payments/{imp_uid}/refunds", json={"reason": "고객 요청", "amount": amount}, headers=auth_headers()
    )


def _refunds(runtime: Runtime) -> list[tuple[str, Decimal]]:
    with runtime.db.read() as session:
        return [(r.status, r.amount) for r in session.scalars(select(Refund).order_by(Refund.id))]


@pytest.mark.reliability(
    area="fault",
    case="V2 cancel accepted as REQUESTED (asynchronous PG cancel)",
    outcome="refund stays unknown, not failed; new refunds wait; settled succeeded once PortOne shows it; one cancel sent",
)
def test_a_requested_cancel_is_never_judged_unapplied(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api)
    payment_id = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    assert api.post(
        "/api/payments/complete", json={"imp_uid": payment_id, "merchant_uid": order["merchant_uid"]}
    ).is_success
    sandbox.configure(cancel_requested_next=1)

    pending = _refund(api, payment_id, "20000")
    assert pending.status_code == 202, pending.text
    assert pending.json()["status"] == "unknown"
    # Reading back shows the payment untouched: the attempt must stay open, not become failed.
    refunds.settle_with_lease(runtime, imp_uid=payment_id)
    assert _refunds(runtime) == [("unknown", Decimal(20000))]
    blocked = _refund(api, payment_id, "1000")
    assert blocked.status_code == 409 and "REQUESTED" in blocked.json()["message"]

    done = sandbox.http.post(f"/sandbox/v2/payments/{payment_id}/pending-cancellations/complete")
    assert done.status_code == 200 and len(done.json()["completed"]) == 1
    refunds.settle_with_lease(runtime, imp_uid=payment_id)
    assert _refunds(runtime) == [("succeeded", Decimal(20000))]

    assert _refund(api, payment_id, "30000").status_code == 201
    assert len(sandbox.calls()["cancels"]) == 2
    portone = sandbox.payment(payment_id)
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == payment_id))
        assert payment is not None and payment.cancel_amount == Decimal(str(portone["cancel_amount"])) == 50000
        succeeded = [r for r in payment.refunds if r.status == "succeeded"]
        assert sorted(r.portone_cancellation_id for r in succeeded) == sorted(
            c["cancellation_id"] for c in portone["cancel_history"]
        )
    assert _refunds(runtime) == [("succeeded", Decimal(20000)), ("succeeded", Decimal(30000))]
