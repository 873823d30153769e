"""The payment detail page through AppTest: PortOne's live record beside ours with differences
highlighted, PortOne unreachable, the timeline, and the refund entry point by role."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from streamlit.testing.v1 import AppTest

from dashboard.format import plain
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from tests.factories import SandboxControl


def _paid(runtime: Runtime, sandbox: SandboxControl) -> tuple[str, str]:
    order = orders.create_order(
        runtime, customer_email="kim@example.com", customer_name="김체카", customer_phone="010-1234-5678"
    )
    paid = sandbox.checkout(
        order.merchant_uid, order.amount, buyer_name="김체카", buyer_email="kim@example.com", buyer_tel="010-1234-5678"
    )
    payments.complete(runtime, imp_uid=str(paid["imp_uid"]), merchant_uid=order.merchant_uid)
    return str(paid["imp_uid"]), order.merchant_uid


def _detail(open_app: Callable[..., AppTest], role: str, imp_uid: str | None = None) -> AppTest:
    at = open_app(role)
    if imp_uid is not None:
        at.session_state["payment_detail.imp_uid"] = imp_uid
    at.switch_page("views/payment_detail.py").run()
    assert not at.exception, at.exception
    return at


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def test_without_a_payment_it_says_where_to_find_one(open_app: Callable[..., AppTest]) -> None:
    at = _detail(open_app, "viewer")
    assert "결제 내역에서 행을 선택하거나" in at.info[0].value
    at.text_input(key="payment_detail.lookup").input("imp_unknown")
    at.button(key="payment_detail.open").click().run()
    assert "정확히 일치하는 결제가 없습니다" in at.warning[0].value


def test_a_console_cancel_shows_as_a_highlighted_difference(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, merchant_uid = _paid(dashboard_runtime, sandbox)
    at = open_app("viewer")
    at.switch_page("views/payment_detail.py").run()
    at.text_input(key="payment_detail.lookup").input(merchant_uid)  # found by order number
    at.button(key="payment_detail.open").click().run()
    assert at.subheader[0].value == plain(imp_uid)  # shown as text
    assert "일치합니다" in at.success[0].value

    # Cancelled in PortOne's console; the API is not running, so no webhook reaches us.
    sandbox.console_cancel(imp_uid, "20000")
    at.run()
    assert not at.exception, at.exception
    assert "다릅니다" in at.error[0].value and "취소 금액" in at.error[0].value
    compare = _frame(at, "differs").set_index("field")
    assert compare.loc["취소 금액", "ours"] == "₩0"
    assert compare.loc["취소 금액", "portone"] == "₩20,000"
    assert compare.loc["취소 금액", "differs"] == "⚠️"
    assert compare.loc["결제 금액", "differs"] == ""
    assert compare.loc["구매자 이메일", "ours"] == "k***@example.com"  # a viewer sees it masked
    refundable = next(m for m in at.metric if m.label == "환불 가능 금액")
    assert refundable.value == "₩30,000"  # PortOne's live remainder
    timeline = _frame(at, "event")
    assert {"주문 생성", "결제 금액 사전등록", "결제 완료"} <= set(timeline["event"])
    # A viewer has no way to refund from here.
    assert not [b for b in at.button if b.key == "payment_detail.refund"]


def test_portone_unreachable_still_shows_our_record(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, _ = _paid(dashboard_runtime, sandbox)
    sandbox.configure(fail_next=100)
    at = _detail(open_app, "operator", imp_uid)
    sandbox.configure(fail_next=0)
    assert "포트원에 연결할 수 없어 우리 기록만 보여줍니다" in at.warning[0].value
    compare = _frame(at, "differs").set_index("field")
    assert compare.loc["결제 금액", "ours"] == "₩50,000" and compare.loc["결제 금액", "portone"] == "—"
    assert compare.loc["구매자 이메일", "ours"] == "kim@example.com"


def test_an_operator_refunds_from_the_detail_in_a_dialog(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, _ = _paid(dashboard_runtime, sandbox)
    at = _detail(open_app, "operator", imp_uid)
    assert at.get("link_button")[0].proto.url.endswith(f"/sandbox/receipts/{imp_uid}")
    at.button(key="payment_detail.refund").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "결제 상세"  # the refund opens here, in a dialog
    dialog = "payment_detail.refund_dialog"
    assert at.text_input(key=f"{dialog}.amount").value == "50000"  # the refundable remainder


def test_unknown_payment(open_app: Callable[..., AppTest]) -> None:
    at = open_app("viewer")
    at.query_params["imp_uid"] = "imp_nope"
    at.switch_page("views/payment_detail.py").run()
    assert f"우리 기록에 '{plain('imp_nope')}' 결제가 없습니다" in at.warning[0].value
