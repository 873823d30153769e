"""Helpers of the fault matrix: the end-state check (our records equal PortOne's) and the steps
every row repeats (a payment made at PortOne, a webhook delivered by the sandbox)."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import select

from services.core.models import Order, Payment, RefundStatus
from services.runtime import Runtime
from tests.factories import SandboxControl, new_order

READS_FAILING = 10  # more failed reads in a row than our client's read retries


def _portone_token(sandbox: SandboxControl) -> str:
    answer = sandbox.http.post(
        "/users/getToken", json={"imp_key": "sandbox-imp-key", "imp_secret": "sandbox-imp-secret"}
    )
    answer.raise_for_status()
    return str(answer.json()["response"]["access_token"])


def _portone_payment_of_order(sandbox: SandboxControl, token: str, merchant_uid: str) -> dict[str, Any] | None:
    from services.core.jsonutil import loads

    answer = sandbox.http.get(f"/payments/find/{merchant_uid}", headers={"Authorization": f"Bearer {token}"})
    if answer.status_code == 404:
        return None
    answer.raise_for_status()
    return dict(loads(answer.content)["response"])


def assert_state_equals_portone(runtime: Runtime, sandbox: SandboxControl) -> None:
    """Our records equal PortOne's, read through its public V1 API like any client would:

    - every order of ours that PortOne took money for has that payment recorded (none lost);
    - every payment we hold has PortOne's status, amount and refunded total;
    - its succeeded refunds are exactly PortOne's cancellations (ids and total), and no refund
      attempt is left pending or unknown (recovery finished)."""
    token = _portone_token(sandbox)
    with runtime.db.read() as session:
        merchant_uids = session.scalars(select(Order.merchant_uid)).all()
        recorded = {p.merchant_uid: p.imp_uid for p in session.scalars(select(Payment)).all()}
    assert merchant_uids, "no order to compare"
    for merchant_uid in merchant_uids:
        found = _portone_payment_of_order(sandbox, token, merchant_uid)
        if found is not None and found["status"] in ("paid", "cancelled"):
            assert recorded.get(merchant_uid) == found["imp_uid"], f"{merchant_uid}: PortOne has {found['imp_uid']}"
    with runtime.db.read() as session:
        payments = session.scalars(select(Payment)).all()
        assert payments, "no payment recorded"
        for payment in payments:
            portone = sandbox.payment(payment.imp_uid)
            ours = (payment.status, payment.amount, payment.cancel_amount)
            theirs = (
                portone["status"],
                Decimal(str(portone["amount"])),
                Decimal(str(portone["cancel_amount"])),
            )
            assert ours == theirs, payment.imp_uid
            open_attempts = [r.id for r in payment.refunds if r.status in (RefundStatus.PENDING, RefundStatus.UNKNOWN)]
            assert not open_attempts, f"{payment.imp_uid}: refund attempts {open_attempts} still unsettled"
            succeeded = [r for r in payment.refunds if r.status == RefundStatus.SUCCEEDED]
            assert sum((r.amount for r in succeeded), Decimal(0)) == payment.cancel_amount, payment.imp_uid
            assert sorted(str(r.portone_cancellation_id) for r in succeeded) == sorted(
                str(c["cancellation_id"]) for c in portone.get("cancel_history") or ()
            ), payment.imp_uid


def paid_at_portone(api: httpx.Client, sandbox: SandboxControl) -> tuple[str, str]:
    """An order of ours, paid at PortOne; no webhook sent (the test delivers its own)."""
    sandbox.configure(webhook_url=None)
    order = new_order(api)
    return sandbox.checkout(order["merchant_uid"], order["amount"])["imp_uid"], order["merchant_uid"]


def paid_rows(runtime: Runtime) -> int:
    with runtime.db.read() as session:
        return len(session.scalars(select(Payment.id).where(Payment.status == "paid")).all())


def deliver_webhook(sandbox: SandboxControl, webhook_url: str, imp_uid: str, timeout: float = 30) -> dict[str, Any]:
    """PortOne (the sandbox) sends a webhook for the payment to `webhook_url`, retrying as it does;
    returns the delivery once it is delivered or has given up."""
    sandbox.configure(webhook_url=webhook_url)
    answer = sandbox.http.post("/sandbox/webhooks/send", json={"imp_uid": imp_uid})
    answer.raise_for_status()
    [delivery] = answer.json()["deliveries"]
    return wait_for_delivery(sandbox, delivery["id"], timeout=timeout)


def wait_for_delivery(
    sandbox: SandboxControl, delivery_id: int, *, until: tuple[str, ...] = ("delivered", "failed"), timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        deliveries = sandbox.http.get("/sandbox/webhooks").json()["deliveries"]
        [delivery] = [d for d in deliveries if d["id"] == delivery_id]
        if delivery["state"] in until:
            return dict(delivery)
        assert time.monotonic() < deadline, f"delivery {delivery_id} still {delivery['state']}"
        time.sleep(0.05)


def applied_cancels(sandbox: SandboxControl, imp_uid: str) -> int:
    """Cancels PortOne applied for this payment (the V2 call log names it `payment_id`)."""
    return len(
        [
            c
            for c in sandbox.calls()["cancels"]
            if c.get("imp_uid", c.get("payment_id")) == imp_uid and c["outcome"] == "applied"
        ]
    )
