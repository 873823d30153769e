"""Payment windows opened and left (`ready`) or closed (`failed`) next to the attempt that paid.

At PortOne the window's opening creates a `ready` payment under the merchant_uid; a customer who
leaves keeps it `ready`, closing the window makes it `failed` (sdk/ko/v1-sdk/javascript-sdk/payrt.md),
and V2 announces the opening with `Transaction.Ready` (opi/ko/integration/webhook/readme-v2.md).
Another attempt's `ready` or `failed` never moves an order back from paid or refunded.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Alert, AlertStatus, Order, Payment
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order, wait_for_webhooks


def _order_status(runtime: Runtime, merchant_uid: str) -> str:
    with runtime.db.read() as session:
        order = session.scalar(select(Order).where(Order.merchant_uid == merchant_uid))
        assert order is not None
        return str(order.status)


def _open_alerts(runtime: Runtime) -> list[tuple[str, str | None, str]]:
    with runtime.db.read() as session:
        rows = session.execute(
            select(Alert.kind, Alert.imp_uid, Alert.message).where(Alert.status != AlertStatus.RESOLVED)
        ).all()
    return [(str(kind), uid, message) for kind, uid, message in rows]


def _pay_and_settle(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, order: dict[str, Any],
                    final: str) -> str:  # fmt: skip
    paid = sandbox.checkout(order["merchant_uid"], order["amount"])
    assert paid["success"] is True, paid
    imp_uid = str(paid["imp_uid"])
    done = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert done.status_code == 200, done.text
    wait_for_webhooks(runtime, imp_uid)
    if final != "paid":
        body = {"reason": "고객 요청 환불", **({"amount": "10000"} if final == "partially_refunded" else {})}
        refunded = api.post(f"/api/payments/{imp_uid}/refunds", json=body, headers=auth_headers())
        assert refunded.status_code == 201, refunded.text
    assert _order_status(runtime, order["merchant_uid"]) == final
    return imp_uid


@pytest.mark.parametrize("final", ["paid", "partially_refunded", "refunded"])
def test_a_late_ready_never_moves_an_order_back(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, final: str
) -> None:
    """The customer had a virtual account issued, then paid by card; the account's `ready` webhook
    arrives late. The order stays where the card payment put it."""
    order = new_order(api)
    sandbox.configure(webhook_hold=True)
    issued = sandbox.checkout(order["merchant_uid"], order["amount"], pay_method="vbank", card_number=None)
    assert issued["status"] == "ready", issued
    sandbox.configure(webhook_hold=False)
    _pay_and_settle(api, runtime, sandbox, order, final)

    sandbox.http.post("/sandbox/webhooks/flush", json={}).raise_for_status()
    wait_for_webhooks(runtime, issued["imp_uid"])

    assert _order_status(runtime, order["merchant_uid"]) == final
    with runtime.db.read() as session:
        ready = session.scalar(select(Payment).where(Payment.imp_uid == issued["imp_uid"]))
        assert ready is not None and ready.status == "ready"


@pytest.mark.parametrize("outcome", ["abandon", "close"])
def test_an_abandoned_or_closed_window_beside_the_paid_one_leaves_the_order_paid(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, outcome: str
) -> None:
    """Two tabs: one window left open or closed, the other paid. The left one's callback reaches
    /complete afterwards: it is recorded as PortOne has it, the order stays paid, nothing alerts."""
    order = new_order(api)
    left = sandbox.checkout(order["merchant_uid"], order["amount"], outcome=outcome, card_number=None)
    assert left["status"] == ("ready" if outcome == "abandon" else "failed"), left
    _pay_and_settle(api, runtime, sandbox, order, "paid")

    late = api.post("/api/payments/complete", json={"imp_uid": left["imp_uid"], "merchant_uid": order["merchant_uid"]})
    assert late.status_code == 409, late.text  # not paid: reported as PortOne has it
    assert late.json()["status"] == left["status"]

    assert _order_status(runtime, order["merchant_uid"]) == "paid"
    assert _open_alerts(runtime) == []


def test_an_abandoned_card_window_leaves_a_new_order_pending(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A card window left open is no virtual account: the order is not `awaiting_deposit`."""
    order = new_order(api)
    left = sandbox.checkout(order["merchant_uid"], order["amount"], outcome="abandon", card_number=None)
    seen = api.post("/api/payments/complete", json={"imp_uid": left["imp_uid"], "merchant_uid": order["merchant_uid"]})
    assert seen.status_code == 409 and seen.json()["status"] == "ready", seen.text
    assert _order_status(runtime, order["merchant_uid"]) == "pending"
    assert _open_alerts(runtime) == []


@pytest.mark.parametrize("portone_version", ["v2"])
def test_v2_transaction_ready_is_taken_quietly(api: httpx.Client, runtime: Runtime, sandbox: SandboxControl) -> None:
    """V2 sends Transaction.Ready when the window opens: processed (re-fetched) without moving the
    order or raising anything; the customer then pays and the order is paid."""
    order = new_order(api)
    merchant_uid = order["merchant_uid"]
    left = sandbox.checkout(merchant_uid, order["amount"], outcome="abandon", card_number=None)
    assert left["status"] == "ready", left
    wait_for_webhooks(runtime, merchant_uid)
    assert _order_status(runtime, merchant_uid) == "pending"
    assert _open_alerts(runtime) == []

    paid = sandbox.checkout(merchant_uid, order["amount"])
    assert paid["success"] is True, paid
    wait_for_webhooks(runtime, merchant_uid, count=3)  # Ready, Ready, Paid
    assert _order_status(runtime, merchant_uid) == "paid"
    assert _open_alerts(runtime) == []
