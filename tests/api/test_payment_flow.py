"""The whole payment flow over real HTTP on loopback: our API, the sandbox, a real database."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from services.core.models import Alert, Order, Payment, Refund, RefundStatus
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order, wait_for_webhooks


@pytest.fixture(params=["v1", "v2"])
def portone_version(request: pytest.FixtureRequest) -> str:
    """The whole flow runs against PortOne V1 and V2 alike."""
    return str(request.param)


def _refund(api: httpx.Client, imp_uid: str, amount: str | None, key: str | None = None) -> httpx.Response:
    body: dict[str, object] = {"reason": "고객 요청 환불"}
    if amount is not None:
        body["amount"] = amount
    return api.post(f"/api/payments/{imp_uid}/refunds", json=body, headers=auth_headers(key))


def _refund_number(api: httpx.Client, imp_uid: str, amount_json: str) -> httpx.Response:
    """Send the amount as a JSON number, written digit for digit."""
    content = '{"reason": "부분 환불", "amount": ' + amount_json + "}"
    headers = {**auth_headers(), "Content-Type": "application/json"}
    return api.post(f"/api/payments/{imp_uid}/refunds", content=content, headers=headers)


def _assert_db_agrees_with_sandbox(runtime: Runtime, sandbox: SandboxControl, imp_uid: str) -> None:
    portone = sandbox.payment(imp_uid)
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        succeeded = [r for r in payment.refunds if r.status == RefundStatus.SUCCEEDED]
        assert payment.status == portone["status"]
        assert payment.amount == Decimal(str(portone["amount"]))
        assert payment.cancel_amount == Decimal(str(portone["cancel_amount"]))
        assert payment.currency == portone["currency"]
        assert sum((r.amount for r in succeeded), Decimal(0)) == payment.cancel_amount
        assert sorted(r.portone_cancellation_id for r in succeeded) == sorted(
            c["cancellation_id"] for c in portone["cancel_history"]
        )


@pytest.mark.parametrize(
    ("currency", "fee", "first", "second", "too_much"),
    [("KRW", "50000", "20000", "10000", "20001"), ("USD", "38.50", "10.25", "28.25", "0.01")],
)
def test_order_checkout_complete_webhook_and_partial_refunds(
    api: httpx.Client,
    runtime: Runtime,
    sandbox: SandboxControl,
    currency: str,
    fee: str,
    first: str,
    second: str,
    too_much: str,
) -> None:
    order = new_order(api, currency)
    assert order["currency"] == currency
    assert Decimal(str(order["amount"])) == Decimal(fee)

    paid = sandbox.checkout(order["merchant_uid"], fee, currency)
    assert paid["success"] is True, paid
    imp_uid = paid["imp_uid"]

    completed = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "paid"
    assert Decimal(str(completed.json()["amount"])) == Decimal(fee)
    wait_for_webhooks(runtime, imp_uid)

    r1 = _refund_number(api, imp_uid, first)
    assert r1.status_code == 201, r1.text
    assert Decimal(str(r1.json()["refunded_total"])) == Decimal(first)
    assert Decimal(str(r1.json()["remaining"])) == Decimal(fee) - Decimal(first)

    r2 = _refund(api, imp_uid, second)  # a decimal string this time
    assert r2.status_code == 201, r2.text
    assert Decimal(str(r2.json()["refunded_total"])) == Decimal(first) + Decimal(second)

    refused = _refund(api, imp_uid, too_much)
    assert refused.status_code == 409, refused.text

    _assert_db_agrees_with_sandbox(runtime, sandbox, imp_uid)
    with runtime.db.read() as session:
        order_row = session.scalar(select(Order).where(Order.merchant_uid == order["merchant_uid"]))
        assert order_row is not None
        expected = "refunded" if currency == "USD" else "partially_refunded"
        assert order_row.status == expected
    cancels = [c for c in sandbox.calls()["cancels"] if c.get("outcome") == "applied"]
    assert len(cancels) == 2


@pytest.mark.reliability(
    area="hostile input",
    case="amount tampered in the browser (forgery)",
    outcome="cancelled at PortOne, alerted, never shown as paid",
)
def test_forgery_is_cancelled_alerted_and_never_paid(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    sandbox.configure(enforce_prepare=False)
    order = new_order(api)
    paid = sandbox.checkout(order["merchant_uid"], "100")  # tampered: the order says 50000
    assert paid["success"] is True
    imp_uid = paid["imp_uid"]

    answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert answer.status_code == 400
    assert answer.json()["error"] == "forgery"
    wait_for_webhooks(runtime, imp_uid, count=1)
    again = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert again.status_code == 400 and again.json()["error"] == "forgery"

    assert sandbox.payment(imp_uid)["status"] == "cancelled"
    assert len([c for c in sandbox.calls()["cancels"] if c.get("outcome") == "applied"]) == 1
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None and payment.verified is False and payment.status == "cancelled"
        order_row = session.scalar(select(Order).where(Order.merchant_uid == order["merchant_uid"]))
        assert order_row is not None and order_row.status == "forgery"
        alerts = session.scalars(select(Alert).where(Alert.imp_uid == imp_uid)).all()
        assert [a.kind for a in alerts] == ["amount_mismatch"]
        assert alerts[0].db_value == "50000 KRW" and alerts[0].portone_value == "100 KRW"


def test_prepared_amount_is_enforced_by_portone(api: httpx.Client, sandbox: SandboxControl) -> None:
    order = new_order(api)
    refused = sandbox.checkout(order["merchant_uid"], "100")
    assert refused["success"] is False


@pytest.mark.reliability(
    area="concurrency",
    case="20 concurrent refunds over the API on one payment",
    outcome="exactly 16 reach PortOne, the rest refused; never above what was paid",
)
def test_twenty_concurrent_refunds_never_exceed_what_was_paid(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    assert (
        api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]}).status_code
        == 200
    )

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: _refund(api, imp_uid, "3000"), range(20)))

    codes = sorted(a.status_code for a in answers)
    assert codes.count(201) == 16, [a.text for a in answers if a.status_code not in (201, 409)]
    assert codes.count(409) == 4
    portone = sandbox.payment(imp_uid)
    assert Decimal(str(portone["cancel_amount"])) == Decimal(48000)
    cancels = sandbox.calls()["cancels"]
    assert len(cancels) == 16 and all(c["outcome"] == "applied" for c in cancels)
    _assert_db_agrees_with_sandbox(runtime, sandbox, imp_uid)


@pytest.mark.reliability(
    area="fault",
    case="cancel times out after PortOne applied it",
    outcome="recorded once as succeeded; one cancel sent; state equals PortOne",
)
def test_cancel_timing_out_after_portone_applied_it_is_recorded_once(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    # Our client times out after 3 s; the sandbox applies the cancel, then answers after 6 s.
    sandbox.configure(cancel_timeout_after_apply=1, cancel_hang_seconds=6)

    answer = _refund(api, imp_uid, "20000")
    assert answer.status_code == 201, answer.text
    assert answer.json()["status"] == "succeeded"
    assert answer.json()["cancellation_id"]

    assert len(sandbox.calls()["cancels"]) == 1
    with runtime.db.read() as session:
        refunds = session.scalars(select(Refund)).all()
        assert [(r.status, r.amount) for r in refunds] == [("succeeded", Decimal(20000))]
    # The next refund sees the right remainder.
    assert _refund(api, imp_uid, "30001").status_code == 409
    assert _refund(api, imp_uid, "30000").status_code == 201
    _assert_db_agrees_with_sandbox(runtime, sandbox, imp_uid)


def test_idempotency_key_replays_the_first_answer(api: httpx.Client, sandbox: SandboxControl) -> None:
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})

    first = _refund(api, imp_uid, "1000", key="same-intent")
    again = _refund(api, imp_uid, "1000", key="same-intent")
    assert first.status_code == again.status_code == 201
    assert again.json()["replayed"] is True
    assert again.json()["refund_id"] == first.json()["refund_id"]
    assert len(sandbox.calls()["cancels"]) == 1
    reused = _refund(api, imp_uid, "2000", key="same-intent")
    assert reused.status_code == 400
    assert "different refund" in reused.json()["message"]


def test_refund_of_the_whole_remainder_when_amount_is_absent(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl
) -> None:
    order = new_order(api, "USD")
    imp_uid = sandbox.checkout(order["merchant_uid"], "38.50", "USD")["imp_uid"]
    api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert _refund(api, imp_uid, "0.50").status_code == 201
    full = _refund(api, imp_uid, None)
    assert full.status_code == 201, full.text
    assert Decimal(str(full.json()["amount"])) == Decimal("38.00")
    assert Decimal(str(full.json()["remaining"])) == 0
    assert sandbox.payment(imp_uid)["status"] == "cancelled"
    nothing_left = _refund(api, imp_uid, None)
    assert nothing_left.status_code == 409
    _assert_db_agrees_with_sandbox(runtime, sandbox, imp_uid)


def test_a_virtual_account_refund_names_the_missing_account_then_pays_into_the_one_given(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, portone_version: str
) -> None:
    order = new_order(api)
    issued = sandbox.checkout(order["merchant_uid"], order["amount"], pay_method="vbank", card_number=None)
    imp_uid = issued["imp_uid"]
    sandbox.http.post(f"{sandbox._controls}/payments/{imp_uid}/deposit").raise_for_status()
    completed = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert completed.status_code == 200 and completed.json()["status"] == "paid", completed.text

    missing = _refund(api, imp_uid, "10000", key="va-api-1")
    assert missing.status_code == 422, missing.text
    assert missing.json()["error"] == "refund_account_required" and "refund_account" in missing.json()["message"]
    assert sandbox.calls()["cancels"] == []

    account = {"bank": "04", "holder": "김체카", "number": "123456-78-901234"}
    unknown_bank = api.post(
        f"/api/payments/{imp_uid}/refunds",
        json={"reason": "환불", "amount": "10000", "refund_account": {**account, "bank": "BK04"}},
        headers=auth_headers("va-api-2"),
    )
    assert unknown_bank.status_code == 400 and "bank" in unknown_bank.json()["message"]
    assert "78901234" not in unknown_bank.text

    done = api.post(
        f"/api/payments/{imp_uid}/refunds",
        json={"reason": "환불", "amount": "10000", "refund_account": account},
        headers=auth_headers("va-api-3"),
    )
    assert done.status_code == 201, done.text
    assert done.json()["refund_account"] == {"bank": "04", "holder": "김체카", "number": "**********1234"}
    assert "78901234" not in done.text
    _assert_db_agrees_with_sandbox(runtime, sandbox, imp_uid)


def test_a_forged_virtual_account_deposit_alerts_that_the_customers_account_is_needed(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, portone_version: str
) -> None:
    """PortOne cannot pay a virtual-account deposit back without the customer's account, so the
    forgery guard cannot cancel it by itself: it is alerted, asking for that account, never paid."""
    sandbox.configure(enforce_prepare=False)
    order = new_order(api)
    issued = sandbox.checkout(order["merchant_uid"], "100", pay_method="vbank", card_number=None)  # order: 50000
    imp_uid = issued["imp_uid"]
    sandbox.http.post(f"{sandbox._controls}/payments/{imp_uid}/deposit").raise_for_status()

    answer = api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    assert answer.status_code == 400 and answer.json()["error"] == "forgery", answer.text
    assert "account" in answer.json()["message"]
    assert sandbox.calls()["cancels"] == []  # nothing sent without the account
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None and payment.verified is False
        kinds = {a.kind: a for a in session.scalars(select(Alert).where(Alert.imp_uid == imp_uid))}
    assert set(kinds) == {"amount_mismatch", "forgery_refund_account_needed"}
    assert "account" in kinds["forgery_refund_account_needed"].message

    # An operator refunds it into the customer's account: the alert is resolved.
    account = {"bank": "04", "holder": "김체카", "number": "123456-78-901234"}
    done = api.post(
        f"/api/payments/{imp_uid}/refunds",
        json={"reason": "위변조 환불", "refund_account": account},
        headers=auth_headers("va-forged"),
    )
    assert done.status_code == 201, done.text
    with runtime.db.read() as session:
        alert = session.scalar(
            select(Alert).where(Alert.imp_uid == imp_uid, Alert.kind == "forgery_refund_account_needed")
        )
        assert alert is not None and alert.status == "resolved"
