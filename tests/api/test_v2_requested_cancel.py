"""A V2 cancel PortOne accepted as REQUESTED whose answer was lost is settled, not judged unapplied."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Refund
from services.refunds import settlement
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, make_runtime, new_order


@pytest.fixture
def portone_version() -> str:
    return "v2"


@pytest.fixture
def runtime(database_url: str, sandbox: SandboxControl) -> Iterator[Runtime]:
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=sandbox.url,
        portone_api_version="v2",
        refund_unknown_grace_seconds=0.5,
    )
    try:
        yield rt
    finally:
        rt.close()


def _refund(api: httpx.Client, payment_id: str, amount: str, key: str) -> httpx.Response:
    return api.post(
        f"/api/payments/{payment_id}/refunds", json={"reason": "고객 요청", "amount": amount}, headers=auth_headers(key)
    )


def test_a_lost_answer_to_a_cancel_portone_shows_requested_is_not_judged_unapplied(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A partially refunded V2 payment (PARTIAL_CANCELLED, so its object lists every cancellation).
    The next cancel is accepted by PortOne as REQUESTED (an asynchronous PG) but its answer is lost.
    Reading back shows that cancellation REQUESTED, for this amount: PortOne is still applying it.
    Past the grace the attempt must not be judged 'not applied' (failed) and a new refund of the
    same money let through: once the PG finishes, the customer would be refunded twice."""
    order = new_order(api)
    payment_id = str(sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"])
    done = api.post("/api/payments/complete", json={"imp_uid": payment_id, "merchant_uid": order["merchant_uid"]})
    assert done.is_success, done.text
    assert _refund(api, payment_id, "10000", "r13-req-1").status_code == 201

    sandbox.configure(cancel_requested_next=1, garble_next=1, garble_only="POST /payments/{paymentId}/cancel")
    lost = _refund(api, payment_id, "20000", "r13-req-2")
    assert lost.status_code == 202, lost.text
    time.sleep(0.6)  # past the grace
    settlement.settle_with_lease(runtime, imp_uid=payment_id)
    with runtime.db.read() as session:
        statuses = [(r.status, r.amount) for r in session.scalars(select(Refund).order_by(Refund.id))]
    again = _refund(api, payment_id, "20000", "r13-req-3")  # the operator, told it failed, refunds again
    sandbox.http.post(f"/sandbox/v2/payments/{payment_id}/pending-cancellations/complete").raise_for_status()
    refunded = sandbox.payment(payment_id)["cancel_amount"]
    assert statuses[1][0] != "failed", statuses
    assert again.status_code == 409, again.text
    assert refunded == 30000, f"PortOne refunded {refunded} for 10000 + 20000 asked"
