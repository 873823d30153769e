"""Money paths under attack: operators, late webhooks, paid-twice orders, refused and unreadable cancels.
Against the sandbox over HTTP, on SQLite and PostgreSQL; nothing of ours is mocked."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import select

from services.auth.access import Actor
from services.core.errors import GatewayError
from services.core.models import Alert, Refund, RefundStatus, Role
from services.payments import orders
from services.payments import verification as payments
from services.refunds import desk as refund_desk
from services.refunds import engine as refunds
from services.refunds.outcomes import RefundOutcome
from services.runtime import Runtime
from tests.factories import SandboxControl, auth_headers, new_order

KIM = Actor("kim", Role.OPERATOR)


def _paid(runtime: Runtime, sandbox: SandboxControl) -> str:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, "KRW")["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def test_one_operator_refunding_two_payments_at_once_does_not_bypass_the_second_operator(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """Two browser tabs, one operator: ₩50,000 + ₩50,000 against a ₩60,000 threshold. One after the
    other, the second waits for approval (test_the_approval_window_is_configurable); at the same
    moment both read 'refunded alone: 0' before either refund row exists, so both are sent."""
    settings = runtime.settings.model_copy(update={"refund_approval_threshold": {"KRW": Decimal(60000)}})
    rt = Runtime(settings=settings, db=runtime.db, gateway=runtime.gateway)
    first, second = _paid(rt, sandbox), _paid(rt, sandbox)
    # PortOne reads take a moment (as they do in production): the window between the desk's
    # threshold check and the refund row being recorded is that read.
    sandbox.configure(latency_ms=800, latency_only="GET /payments/")
    answers: dict[str, object] = {}
    start = threading.Barrier(2)

    def refund(imp_uid: str, key: str) -> None:
        start.wait()
        try:
            answers[key] = refund_desk.request_refund(
                rt, actor=KIM, imp_uid=imp_uid, amount=None, reason="고객 요청", idempotency_key=key
            )
        except Exception as exc:  # noqa: BLE001 - reported below
            answers[key] = exc

    threads = [threading.Thread(target=refund, args=(uid, f"tab-{n}")) for n, uid in enumerate((first, second))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    finally:
        sandbox.configure(latency_ms=0, latency_only=None)
    outcomes = sorted(str(getattr(a, "outcome", a)) for a in answers.values())
    sent = list(sandbox.calls()["cancels"])
    # ₩100,000 refunded alone by one operator is above ₩60,000: one of them must wait for approval.
    assert outcomes == [RefundOutcome.AWAITING_APPROVAL, RefundOutcome.REFUNDED], (outcomes, len(sent))
    assert len(sent) == 1


def _order_status(rt: Runtime, merchant_uid: str) -> str:
    return str(orders.order_state(rt, merchant_uid).status)


def _vbank_then_card(rt: Runtime, sandbox: SandboxControl) -> tuple[str, str, str]:
    """The customer is issued a virtual account, then pays the order by card instead."""
    order = orders.create_order(rt, customer_email="a@example.com", customer_name="김체카")
    vbank = str(sandbox.checkout(order.merchant_uid, order.amount, "KRW", pay_method="vbank")["imp_uid"])
    assert payments.complete(rt, imp_uid=vbank, merchant_uid=order.merchant_uid).status == "ready"
    card = str(sandbox.checkout(order.merchant_uid, order.amount, "KRW")["imp_uid"])
    assert payments.complete(rt, imp_uid=card, merchant_uid=order.merchant_uid).status == "paid"
    assert _order_status(rt, order.merchant_uid) == "paid"
    return order.merchant_uid, vbank, card


def test_a_late_webhook_of_an_unused_virtual_account_does_not_move_a_paid_order_back(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The virtual account's late (or repeated) webhook, or reconciliation, re-applies that
    'ready' payment: the PAID order becomes 'awaiting deposit' (sync.apply_payment guards only FAILED)."""
    merchant_uid, vbank, _ = _vbank_then_card(runtime, sandbox)
    payments.verify_payment(runtime, imp_uid=vbank, source="webhook")
    assert _order_status(runtime, merchant_uid) == "paid"


def test_an_order_paid_twice_is_alerted(runtime: Runtime, sandbox: SandboxControl) -> None:
    """The customer transfers to the virtual account anyway: ₩100,000 taken for a ₩50,000 order,
    recorded as two verified payments of a PAID order, and no alert tells ops to refund one."""
    merchant_uid, vbank, _ = _vbank_then_card(runtime, sandbox)
    sandbox.http.post(f"/sandbox/payments/{vbank}/deposit").raise_for_status()
    payments.verify_payment(runtime, imp_uid=vbank, source="webhook")
    with runtime.db.read() as session:
        alerts = list(session.scalars(select(Alert).where(Alert.merchant_uid == merchant_uid)))
    assert alerts, "an order paid twice raised no alert"


def test_a_cancel_refused_for_its_credentials_is_recorded_failed_not_left_pending(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The REST API key is rotated while a cancel is on its way: PortOne answers 401 (its envelope:
    not applied), and getting a new token is refused too. Nothing was refunded, yet the attempt is
    left PENDING (refunds._send catches only GatewayRejected/GatewayUnavailable, not
    GatewayUnauthorized), so the payment's refunds are refused as 'may still apply it' until the
    grace passes and a later refund settles it."""
    imp_uid = _paid(runtime, sandbox)
    sandbox.configure(latency_ms=1000, latency_only="POST /payments/cancel")

    def rotate() -> None:
        time.sleep(0.5)  # the cancel is waiting at PortOne
        sandbox.configure(imp_key="rotated-key", imp_secret="rotated-secret", token_ttl_seconds=0)

    rotator = threading.Thread(target=rotate)
    rotator.start()
    try:
        with pytest.raises(GatewayError):
            refunds.refund(
                runtime, imp_uid=imp_uid, amount=10000, reason="고객 요청", actor="kim", idempotency_key="rot-1"
            )
    finally:
        rotator.join()
    assert [c["outcome"] for c in sandbox.calls()["cancels"]] == ["unauthorized"]  # PortOne applied nothing
    with runtime.db.read() as session:
        attempt = session.scalar(select(Refund).where(Refund.idempotency_key == "rot-1"))
    assert attempt is not None
    assert attempt.status == RefundStatus.FAILED, (attempt.status, attempt.error_message)


def test_a_large_refund_of_a_deposit_we_have_not_heard_of_yet_can_be_filed_for_approval(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A virtual account was paid at PortOne; its webhook has not reached us (our row: ready). A
    small refund goes through (refunds.refund asks PortOne), but a large one is refused outright
    ('ready, not paid') instead of being filed for approval: the desk judges by our stale row."""
    settings = runtime.settings.model_copy(update={"refund_approval_threshold": {"KRW": Decimal(30000)}})
    rt = Runtime(settings=settings, db=runtime.db, gateway=runtime.gateway)
    order = orders.create_order(rt, customer_email="a@example.com", customer_name="김체카")
    vbank = str(sandbox.checkout(order.merchant_uid, order.amount, "KRW", pay_method="vbank")["imp_uid"])
    assert payments.complete(rt, imp_uid=vbank, merchant_uid=order.merchant_uid).status == "ready"
    sandbox.http.post(f"/sandbox/payments/{vbank}/deposit").raise_for_status()  # no webhook reaches us here
    asked = refund_desk.request_refund(
        rt, actor=KIM, imp_uid=vbank, amount="40000", reason="고객 요청", idempotency_key="dep-1"
    )
    assert asked.outcome == RefundOutcome.AWAITING_APPROVAL


def test_a_payment_of_our_order_in_a_currency_we_do_not_know_is_cancelled_by_the_forgery_policy(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """PortOne shows a paid payment of OUR ₩50,000 order in a currency our table does not know.
    It differs from the order, so the forgery policy must cancel it; instead the refund is refused
    by our own currency check (refunds._record_attempt: 'unsupported currency'), the first delivery
    fails (InvalidRequest) and every later one replays that refusal: the payment stays paid."""
    from datetime import UTC, datetime

    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김체카")
    now = int(datetime.now(UTC).timestamp())
    spec = {"status": "paid", "paid_at": now, "started_at": now, "merchant_uid": order.merchant_uid}
    body = {"payments": [{**spec, "amount": "50000", "currency": "IDR"}]}
    response = sandbox.http.post("/sandbox/payments/bulk", json=body)
    response.raise_for_status()
    imp_uid = str(response.json()["imp_uids"][0])

    for _ in range(2):  # the webhook, then PortOne's retry
        try:
            payments.verify_payment(runtime, imp_uid=imp_uid, source="webhook")
        except Exception:  # noqa: BLE001, S112 - the first delivery's 503; PortOne retries
            continue
    assert sandbox.payment(imp_uid)["status"] == "cancelled"


@pytest.mark.parametrize("status", [400, 401, 404, 409])
def test_a_cancel_answered_with_a_4xx_status_and_a_success_envelope_missing_its_fields_is_unknown(
    api: httpx.Client, runtime: Runtime, sandbox: SandboxControl, status: int
) -> None:
    """PortOne applied the cancel; the answer came back with a 4xx status and PortOne's SUCCESS
    envelope (code 0) whose money fields are missing: an answer we cannot read, so an unknown
    outcome settled by reading. V1's _write instead takes any 4xx envelope as a refusal: the API
    says 502 'PortOne refused: refused (code 0)' (a client then refunds again), the attempt is
    recorded FAILED (or left PENDING on 404), and on 401 the cancel is SENT AGAIN with a new token."""
    order = new_order(api)
    imp_uid = sandbox.checkout(order["merchant_uid"], "50000")["imp_uid"]
    api.post("/api/payments/complete", json={"imp_uid": imp_uid, "merchant_uid": order["merchant_uid"]})
    sandbox.configure(
        garble_next=1, garble_only="POST /payments/cancel", garble_body="missing_fields", garble_status=status
    )
    answer = api.post(f"/api/payments/{imp_uid}/refunds", json={"amount": 10000, "reason": "x"}, headers=auth_headers())
    assert sandbox.payment(imp_uid)["cancel_amount"] == 10000  # PortOne applied it
    assert [c["outcome"] for c in sandbox.calls()["cancels"]] == ["applied"]  # sent once, never resent
    assert answer.status_code in (201, 202), answer.text  # settled by reading: succeeded (or unknown)
    with runtime.db.read() as session:
        attempt = session.scalars(select(Refund).where(Refund.requested_by == "api")).one()
    assert attempt.status == RefundStatus.SUCCEEDED, (attempt.status, attempt.error_message)


def test_a_forgery_cancel_that_applied_nothing_is_tried_again_on_the_next_delivery(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A forged payment (₩1,000 against our ₩50,000 order) whose first cancel PortOne did not apply
    (500, then confirmed not applied by reading back): the attempt is failed, and PortOne's next
    delivery cancels it under a new key instead of replaying the failure for ever."""
    from datetime import UTC, datetime

    settings = runtime.settings.model_copy(update={"refund_unknown_grace_seconds": 0.0})
    rt = Runtime(settings=settings, db=runtime.db, gateway=runtime.gateway)
    order = orders.create_order(rt, customer_email="a@example.com", customer_name="김체카")
    now = int(datetime.now(UTC).timestamp())
    spec = {"status": "paid", "paid_at": now, "started_at": now, "merchant_uid": order.merchant_uid}
    response = sandbox.http.post("/sandbox/payments/bulk", json={"payments": [{**spec, "amount": "1000"}]})
    response.raise_for_status()
    imp_uid = str(response.json()["imp_uids"][0])
    sandbox.configure(fail_next=1, fail_only="POST /payments/cancel")
    for _ in range(2):  # the webhook, then PortOne's retry
        try:
            payments.verify_payment(rt, imp_uid=imp_uid, source="webhook")
        except Exception:  # noqa: BLE001, S112 - a delivery's refusal; the next one comes
            continue
    assert sandbox.payment(imp_uid)["status"] == "cancelled"
    with rt.db.read() as session:
        statuses = [r.status for r in session.scalars(select(Refund).order_by(Refund.id))]
    assert statuses == [RefundStatus.FAILED, RefundStatus.SUCCEEDED]
    assert len([c for c in sandbox.calls()["cancels"] if c["outcome"] == "applied"]) == 1
