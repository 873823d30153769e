"""Duplicate and out-of-order webhooks racing a /complete for the same payment."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select

from services.core.models import Alert, Payment, Refund
from services.runtime import Runtime
from tests.factories import SandboxControl, new_order


@pytest.mark.reliability(
    area="concurrency",
    case="duplicate and out-of-order webhooks racing /complete for one payment",
    outcome="one payment row, paid and verified; no refund, no alert",
)
def test_complete_and_webhooks_racing_record_one_payment(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    for round_ in range(3):
        order = new_order(api)
        imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
        hook = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"], "status": "paid"}
        stale = {**hook, "status": "ready"}
        calls = [("complete", {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})]
        calls += [("webhook", hook)] * 4 + [("webhook", stale)] * 2
        with ThreadPoolExecutor(max_workers=len(calls)) as pool:
            answers = list(
                pool.map(
                    lambda call: api.post(
                        "/api/payments/complete" if call[0] == "complete" else "/portone/webhook", json=call[1]
                    ),
                    calls,
                )
            )
        assert [a.status_code for a in answers] == [200] * len(calls), [a.text for a in answers]
        with runtime.db.read() as session:
            rows = session.scalars(select(Payment).where(Payment.imp_uid == imp_uid)).all()
            assert len(rows) == 1 and rows[0].status == "paid" and rows[0].verified, round_
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Refund)) == 0
        assert session.scalar(select(func.count()).select_from(Alert)) == 0


@pytest.mark.reliability(
    area="concurrency",
    case="forged amount raced by webhooks",
    outcome="cancelled at PortOne exactly once, alerted, never shown as paid",
)
def test_forgery_raced_by_webhooks_is_cancelled_once(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    sandbox.configure(enforce_prepare=False)
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "500")["imp_uid"]
    hook = {"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"], "status": "paid"}
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(
            pool.map(
                lambda i: (
                    api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
                    if i == 0
                    else api.post("/portone/webhook", json=hook)
                ),
                range(6),
            )
        )
    assert answers[0].status_code == 400 and answers[0].json()["error"] == "forgery"
    assert all(a.status_code == 200 for a in answers[1:]), [a.text for a in answers]
    assert len(sandbox.calls()["cancels"]) == 1
    with runtime.db.read() as session:
        alerts = session.scalars(select(Alert)).all()
        assert [a.kind for a in alerts] == ["amount_mismatch"]
