"""Test payments: the whole path in sandbox mode, a browser's part in test mode, nothing in live mode."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from services.auth.access import Actor
from services.core.config import Settings
from services.core.errors import Forbidden
from services.core.models import AuditEntry, Order, Payment, Role
from services.payments import test_payment
from services.payments.test_payment import LiveModeRefused, SandboxUnavailable
from services.runtime import Runtime, build_runtime
from tests.factories import SandboxControl

OPERATOR = Actor("operator", Role.OPERATOR)
VIEWER = Actor("viewer", Role.VIEWER)


@pytest.mark.parametrize(("currency", "amount", "pg"), [("KRW", "50000", "kcp"), ("USD", "38.50", "eximbay")])
def test_sandbox_payment_end_to_end(
    runtime: Runtime, sandbox: SandboxControl, currency: str, amount: str, pg: str
) -> None:
    result = test_payment.run_sandbox_payment(runtime, actor=OPERATOR, currency=currency)
    assert result.approved and result.status == "paid" and result.imp_uid
    assert (result.order.amount, result.order.currency) == (Decimal(amount), currency)

    portone = sandbox.payment(result.imp_uid)
    assert (portone["status"], portone["pg_provider"], portone["merchant_uid"]) == (
        "paid",
        pg,
        result.order.merchant_uid,
    )
    assert portone["card_number"].startswith("4111")
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == result.imp_uid))
        assert payment is not None and payment.verified and payment.status == "paid"
        assert (payment.amount, payment.currency) == (Decimal(amount), currency)
        order = session.scalar(select(Order).where(Order.merchant_uid == result.order.merchant_uid))
        assert order is not None and order.status == "paid"
        actions = session.scalars(select(AuditEntry.action).where(AuditEntry.actor == "operator")).all()
        assert sorted(actions) == ["test_payment.order_created", "test_payment.paid"]


def test_declined_card_records_a_failed_payment(runtime: Runtime, sandbox: SandboxControl) -> None:
    result = test_payment.run_sandbox_payment(runtime, actor=OPERATOR, card_number=test_payment.DECLINED_TEST_CARD)
    assert not result.approved and result.status == "failed"
    assert result.error_msg and "거절" in result.error_msg
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == result.imp_uid))
        assert payment is not None and payment.status == "failed" and payment.paid_at is None


def test_viewer_may_not_make_test_payments(runtime: Runtime, sandbox: SandboxControl) -> None:
    with pytest.raises(Forbidden):
        test_payment.run_sandbox_payment(runtime, actor=VIEWER)
    with runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0


def _runtime(mode: str, database_url: str, sandbox_url: str) -> Runtime:
    from services.core.migrate import upgrade

    upgrade(database_url)
    real = {"portone_imp_key": "real-key-1", "portone_imp_secret": "real-secret-1", "export_link_secret": "x" * 32}
    settings = Settings(
        database_url=database_url,
        portone_mode=mode,  # type: ignore[arg-type]
        portone_api_url=sandbox_url,  # a stand-in for PortOne: nothing may reach it in live mode
        internal_api_token="real-internal-token",
        **real,  # type: ignore[arg-type]
    )
    return build_runtime(settings)


@pytest.fixture
def live_runtime(database_url: str, sandbox: SandboxControl) -> Iterator[Runtime]:
    rt = _runtime("live", database_url, sandbox.url)
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def testmode_runtime(database_url: str, sandbox: SandboxControl) -> Iterator[Runtime]:
    sandbox.configure(imp_key="real-key-1", imp_secret="real-secret-1")
    rt = _runtime("test", database_url, sandbox.url)
    try:
        yield rt
    finally:
        rt.close()


def test_live_mode_refuses_everything(live_runtime: Runtime, sandbox: SandboxControl) -> None:
    admin = Actor("admin", Role.ADMIN)
    with pytest.raises(LiveModeRefused):
        test_payment.run_sandbox_payment(live_runtime, actor=admin)
    with pytest.raises(LiveModeRefused):
        test_payment.create_test_order(live_runtime, actor=admin, currency="USD")
    with pytest.raises(LiveModeRefused):
        test_payment.complete_browser_payment(live_runtime, actor=admin, imp_uid="imp_1", merchant_uid="m")
    with live_runtime.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Order)) == 0
    assert sandbox.calls()["total"] == 0  # PortOne was never called


def test_test_mode_creates_the_order_and_completes_what_a_browser_paid(
    testmode_runtime: Runtime, sandbox: SandboxControl
) -> None:
    rt = testmode_runtime
    with pytest.raises(SandboxUnavailable):
        test_payment.run_sandbox_payment(rt, actor=OPERATOR)
    order = test_payment.create_test_order(rt, actor=OPERATOR, currency="USD")
    script = test_payment.request_pay_script(rt, order)
    assert f'"merchant_uid": "{order.merchant_uid}"' in script
    assert '"amount": 38.50' in script and '"pg": "eximbay"' in script and '"currency": "USD"' in script
    with pytest.raises(SandboxUnavailable):
        test_payment.pay_in_sandbox(rt, actor=OPERATOR, order=order)

    # The customer's browser runs IMP.request_pay (played here by the sandbox checkout) ...
    paid = sandbox.checkout(order.merchant_uid, order.amount, order.currency)
    # ... and the operator completes the imp_uid it returned.
    verification = test_payment.complete_browser_payment(
        rt, actor=OPERATOR, imp_uid=paid["imp_uid"], merchant_uid=order.merchant_uid
    )
    assert verification.status == "paid" and verification.amount == Decimal("38.50")
