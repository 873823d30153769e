"""Payments PortOne refunds in full only (help/core-service/how-to-use/impossible-partial-cancel.md),
through AppTest: an escrow payment is offered only its whole remainder on the refunds page and the
payment detail says why; a partial refund PortOne refuses (a foreign card) reaches the operator in
Korean with the advice to refund in full."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from services.core.models import Payment
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from services.system.demo import seed_demo
from tests.factories import SandboxControl

FOREIGN_CARD = "5555-5555-5555-4444"


def _paid(runtime: Runtime, sandbox: SandboxControl, **checkout: Any) -> tuple[str, str]:
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, buyer_name="김체카", **checkout)["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid, order.merchant_uid


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in (at.success, at.info, at.warning, at.error) for e in kind)


def _load(open_app: Callable[..., AppTest], identifier: str) -> AppTest:
    at = open_app("operator")
    at.switch_page("views/refunds.py").run()
    at.text_input(key="refunds.identifier").input(identifier)
    at.button(key="refunds.load").click().run()
    assert not at.exception, at.exception
    return at


def test_an_escrow_payment_is_offered_only_its_whole_remainder(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, merchant_uid = _paid(dashboard_runtime, sandbox, escrow=True)
    at = _load(open_app, merchant_uid)
    amount = at.text_input(key="refunds.amount")
    assert amount.value == "50000" and amount.disabled
    assert "에스크로 결제는 포트원이 부분 환불을 받지 않아" in _texts(at)
    at.text_area(key="refunds.reason").input("고객 요청")
    at.button(key="refunds.start").click().run()
    dialog = "\n".join(m.value for m in at.markdown)
    assert "₩50,000" in dialog and "₩0" in dialog  # the whole of it, nothing left after

    detail = open_app("operator")
    detail.session_state["payment_detail.imp_uid"] = imp_uid
    detail.switch_page("views/payment_detail.py").run()
    assert not detail.exception, detail.exception
    assert "에스크로 결제라 포트원이 부분 환불을 받지 않습니다" in _texts(detail)


def test_an_ordinary_payment_keeps_its_editable_amount(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    _imp_uid, merchant_uid = _paid(dashboard_runtime, sandbox)
    at = _load(open_app, merchant_uid)
    assert not at.text_input(key="refunds.amount").disabled
    assert "부분 환불을 받지 않" not in _texts(at)


def test_a_partial_refund_portone_refuses_is_explained_with_the_advice_to_refund_in_full(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    sandbox.configure(partial_cancel_refused_cards=[FOREIGN_CARD])
    _imp_uid, merchant_uid = _paid(dashboard_runtime, sandbox, card_number=FOREIGN_CARD)
    at = _load(open_app, merchant_uid)
    at.text_input(key="refunds.amount").input("20000")
    at.text_area(key="refunds.reason").input("고객 요청")
    at.button(key="refunds.start").click().run()
    at.button(key="refunds.single.confirm").click().run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "포트원이 부분 환불을 거절했습니다" in text and "부분취소가 불가능" in text
    assert "남은 금액 전부로 다시 환불하세요" in text
    assert "refund the whole remainder" not in text  # Korean only on a Korean page


def test_the_demo_escrow_payment_is_offered_only_its_whole_amount(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    seed_demo(dashboard_runtime, days=20)
    with dashboard_runtime.db.read() as session:
        [imp_uid] = [p.imp_uid for p in session.scalars(select(Payment)) if (p.raw or {}).get("escrow") is True]
    at = _load(open_app, imp_uid)
    amount = at.text_input(key="refunds.amount")
    assert amount.disabled and amount.value == "50000"
    assert "에스크로 결제는 포트원이 부분 환불을 받지 않아" in _texts(at)
