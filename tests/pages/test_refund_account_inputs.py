"""The approvals queue's refund-account inputs never outlive the request they were typed for."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from services.auth.access import Actor
from services.core.models import Role
from services.payments import orders
from services.payments import verification as payments
from services.refunds import desk as refund_desk
from services.refunds.outcomes import RefundOutcome
from services.runtime import Runtime
from tests.factories import SandboxControl


def _paid_virtual_account(runtime: Runtime, sandbox: SandboxControl, name: str) -> str:
    order = orders.create_order(runtime, customer_email="c@example.com", customer_name=name)
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, pay_method="vbank", card_number=None)["imp_uid"])
    sandbox.http.post(f"/sandbox/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def test_the_next_virtual_account_request_does_not_inherit_the_account_typed_for_the_last(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two virtual-account refunds await approval, for two customers. The approver enters the first
    customer's account and approves it; the queue then shows the second request, its account inputs
    still holding the first customer's account. Approving it must not pay the second customer's
    money into the first customer's account."""
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", '{"KRW": "30000", "USD": "20.00"}')
    strict = Runtime(
        settings=dashboard_runtime.settings.model_copy(update={"refund_approval_threshold": {"KRW": 30000}}),
        db=dashboard_runtime.db,
        gateway=dashboard_runtime.gateway,
    )
    operator = Actor("operator", Role.OPERATOR)
    first = _paid_virtual_account(dashboard_runtime, sandbox, "김첫째")
    second = _paid_virtual_account(dashboard_runtime, sandbox, "이둘째")
    for key, imp_uid in (("q-1", first), ("q-2", second)):
        filed = refund_desk.request_refund(
            strict, actor=operator, imp_uid=imp_uid, amount=None, reason="전액 환불", idempotency_key=key
        )
        assert filed.outcome == RefundOutcome.AWAITING_APPROVAL

    admin = open_app("admin")
    admin.switch_page("views/refunds.py").run()
    assert not admin.exception, admin.exception
    admin.selectbox(key="refunds.queue.refund_bank").set_value("04")
    admin.text_input(key="refunds.queue.refund_holder").input("김첫째")
    admin.text_input(key="refunds.queue.refund_number").input("111111-11-111111")
    admin.button(key="refunds.approve").click().run()
    assert not admin.exception, admin.exception
    [sent] = sandbox.calls()["cancels"]
    assert sent["imp_uid"] == first and sent["refund_account"]["holder"] == "김첫째"

    admin.button(key="refunds.approve").click().run()  # the second request, now the one shown
    assert not admin.exception, admin.exception
    to_second = [c for c in sandbox.calls()["cancels"] if c["imp_uid"] == second]
    assert all(c["refund_account"]["number"] != "11111111111111" for c in to_second), to_second


def test_a_newly_loaded_virtual_account_payment_does_not_inherit_the_last_refund_account(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The operator partly refunds one customer's virtual-account payment into the account they
    typed, then loads another customer's virtual-account payment: its form must start empty, not
    hold the first customer's account (two more clicks pay the second customer's refund into it)."""
    first = _paid_virtual_account(dashboard_runtime, sandbox, "김첫째")
    second = _paid_virtual_account(dashboard_runtime, sandbox, "이둘째")
    at = open_app("operator")
    at.switch_page("views/refunds.py").run()
    at.text_input(key="refunds.identifier").input(first)
    at.button(key="refunds.load").click().run()
    at.text_input(key="refunds.amount").input("10000")
    at.text_area(key="refunds.reason").input("부분 환불")
    at.selectbox(key="refunds.refund_bank").set_value("04")
    at.text_input(key="refunds.refund_holder").input("김첫째")
    at.text_input(key="refunds.refund_number").input("111111-11-111111")
    at.button(key="refunds.start").click().run()
    at.button(key="refunds.single.confirm").click().run()
    assert not at.exception, at.exception
    assert [c["imp_uid"] for c in sandbox.calls()["cancels"]] == [first]

    at.text_input(key="refunds.identifier").input(second)
    at.button(key="refunds.load").click().run()
    assert not at.exception, at.exception
    at.button(key="refunds.start").click().run()
    assert not at.exception, at.exception
    # The new payment's form starts empty: nothing to confirm until its own account and reason are typed.
    assert "refunds.single.confirm" not in [button.key for button in at.button], "confirm offered with A's inputs"
    assert at.error, "no form error for the empty inputs"
    to_second = [c for c in sandbox.calls()["cancels"] if c["imp_uid"] == second]
    assert to_second == [], to_second
