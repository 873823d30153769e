"""Review (money paths): failing tests reproducing defects found by an adversarial review.
Against the sandbox over HTTP, on SQLite and PostgreSQL; nothing of ours is mocked."""

from __future__ import annotations

import threading
from decimal import Decimal

from services import orders, payments, refund_desk
from services.access import Actor
from services.models import Role
from services.refund_desk import Outcome
from services.runtime import Runtime
from tests.factories import SandboxControl

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
    sent = [c for c in sandbox.calls()["cancels"]]
    # ₩100,000 refunded alone by one operator is above ₩60,000: one of them must wait for approval.
    assert outcomes == [Outcome.AWAITING_APPROVAL, Outcome.REFUNDED], (outcomes, len(sent))
    assert len(sent) == 1
