"""Refunding in one dialog from the payment detail page, through AppTest against the sandbox:
prefilled, preset reasons, 기타 needs words, full-only amounts locked, virtual accounts ask for the
account, over the threshold it is filed for approval, a viewer has no action, a double confirm
refunds once, and the page shows the new state after."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from services.core.models import Refund, RefundRequest
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from tests.factories import SandboxControl

DIALOG = "payment_detail.refund_dialog"


def _paid(runtime: Runtime, sandbox: SandboxControl, **checkout: Any) -> str:
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, buyer_name="김체카", **checkout)["imp_uid"])
    if checkout.get("pay_method") == "vbank":
        sandbox.http.post(f"/sandbox/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def _refunds(runtime: Runtime) -> list[Refund]:
    with runtime.db.read() as session:
        return list(session.scalars(select(Refund)))


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in (at.success, at.info, at.warning, at.error, at.toast) for e in kind)


def _metric(at: AppTest, label: str) -> str:
    return str(next(m.value for m in at.metric if m.label == label))


def _detail(open_app: Callable[..., AppTest], role: str, imp_uid: str) -> AppTest:
    at = open_app(role)
    at.session_state["payment_detail.imp_uid"] = imp_uid
    at.switch_page("views/payment_detail.py").run()
    assert not at.exception, at.exception
    return at


def _open_dialog(open_app: Callable[..., AppTest], imp_uid: str, role: str = "operator") -> AppTest:
    at = _detail(open_app, role, imp_uid)
    at.button(key="payment_detail.refund").click().run()
    assert not at.exception, at.exception
    assert at.session_state[f"{DIALOG}.dialog_open"]
    return at


def test_the_dialog_opens_prefilled_and_a_preset_reason_refunds_in_place(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = _open_dialog(open_app, imp_uid)
    amount = at.text_input(key=f"{DIALOG}.amount")
    assert amount.value == "50000" and not amount.disabled  # the whole remainder, editable
    reason = at.radio(key=f"{DIALOG}.reason")
    assert reason.value == "customer_request"  # the first preset, already chosen
    assert list(reason.options) == [
        "고객 요청 취소",
        "중복 결제",
        "탁송 취소·불가",
        "결제 오류",
        "기타",
    ]
    assert not [t for t in at.text_input if t.key == f"{DIALOG}.other"]  # no free text for a preset
    assert "승인" not in at.button(key=f"{DIALOG}.confirm").label

    at.text_input(key=f"{DIALOG}.amount").input("20000")
    at.radio(key=f"{DIALOG}.reason").set_value("duplicate_payment")
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    refunds = _refunds(dashboard_runtime)
    assert [(r.amount, r.reason) for r in refunds] == [(Decimal(20000), "중복 결제")]
    # Closed, and the page reran on the same payment showing the new state.
    assert not at.session_state[f"{DIALOG}.dialog_open"]
    assert at.title[0].value == "결제 상세"
    assert "환불했습니다: ₩20,000" in _texts(at)
    assert _metric(at, "환불된 금액") == "₩20,000"
    assert _metric(at, "환불 가능 금액") == "₩30,000"
    history = next(f.value for f in at.dataframe if "reason" in f.value.columns)
    assert list(history["reason"]) == ["중복 결제"]


def test_other_needs_typed_words_and_stores_them(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = _open_dialog(open_app, imp_uid)
    at.radio(key=f"{DIALOG}.reason").set_value("other").run()
    assert at.text_input(key=f"{DIALOG}.other").value == ""
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    assert "'기타'를 골랐다면 사유를 적어 주세요" in "\n".join(e.value for e in at.error)
    assert _refunds(dashboard_runtime) == [] and sandbox.calls()["cancels"] == []
    assert at.session_state[f"{DIALOG}.dialog_open"]  # still open, to fix
    at.text_input(key=f"{DIALOG}.other").input("차량 점검 일정 변경")
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    assert [r.reason for r in _refunds(dashboard_runtime)] == ["차량 점검 일정 변경"]


def test_a_full_only_payment_cannot_change_the_amount(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox, escrow=True)
    at = _open_dialog(open_app, imp_uid)
    amount = at.text_input(key=f"{DIALOG}.amount")
    assert amount.value == "50000" and amount.disabled
    assert "에스크로 결제는 포트원이 부분 환불을 받지 않아" in _texts(at)
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert [r.amount for r in _refunds(dashboard_runtime)] == [Decimal(50000)]


def test_a_virtual_account_payment_asks_for_the_refund_account(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox, pay_method="vbank", card_number=None)
    at = _open_dialog(open_app, imp_uid)
    assert "고객의 환불 계좌로만 환불합니다" in _texts(at)
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert "은행, 예금주, 계좌번호를 입력하세요" in "\n".join(e.value for e in at.error)
    assert _refunds(dashboard_runtime) == []
    at.selectbox(key=f"{DIALOG}.refund_bank").set_value("04")
    at.text_input(key=f"{DIALOG}.refund_holder").input("김체카")
    at.text_input(key=f"{DIALOG}.refund_number").input("123456-78-901234")
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    refunds = _refunds(dashboard_runtime)
    assert [r.status for r in refunds] == ["succeeded"]
    assert refunds[0].refund_account_masked and "901234" not in refunds[0].refund_account_masked
    sent = sandbox.calls()["cancels"][0]
    assert "123456" in str(sent)  # the full account went to PortOne


def test_over_the_threshold_it_says_so_and_files_for_approval(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", '{"KRW": "30000", "USD": "20.00"}')
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = _open_dialog(open_app, imp_uid)
    assert "다른 운영자가 승인해야" in "\n".join(w.value for w in at.warning)
    assert at.button(key=f"{DIALOG}.confirm").label == "승인 요청 올리기"
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    assert "승인 대기열에 올렸습니다" in _texts(at)
    with dashboard_runtime.db.read() as session:
        requests = list(session.scalars(select(RefundRequest)))
    assert [(r.status, r.reason) for r in requests] == [("awaiting_approval", "고객 요청 취소")]
    assert _refunds(dashboard_runtime) == [] and sandbox.calls()["cancels"] == []
    # Under the threshold the dialog says nothing about approval.
    at.button(key="payment_detail.refund").click().run()
    at.text_input(key=f"{DIALOG}.amount").input("10000").run()
    assert not [w for w in at.warning if "다른 운영자가 승인해야" in w.value]
    assert at.button(key=f"{DIALOG}.confirm").label == "환불하기"


def test_when_the_approval_decision_changes_before_confirming_nothing_is_done_and_the_figures_are_read_again(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The dialog said "nothing is sent to PortOne yet"; the operator's earlier refund then left the approval
    window. Confirming must not refund at once: it is refused in words, and the dialog reads the figures again."""
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", '{"KRW": "30000", "USD": "20.00"}')
    earlier, imp_uid = _paid(dashboard_runtime, sandbox), _paid(dashboard_runtime, sandbox)
    at = _open_dialog(open_app, earlier)
    at.text_input(key=f"{DIALOG}.amount").input("20000").run()
    at.button(key=f"{DIALOG}.confirm").click().run()  # 20,000 refunded alone, under the threshold
    assert [r.amount for r in _refunds(dashboard_runtime)] == [Decimal(20000)]
    at = _open_dialog(open_app, imp_uid)
    at.text_input(key=f"{DIALOG}.amount").input("20000").run()
    assert at.button(key=f"{DIALOG}.confirm").label == "승인 요청 올리기"  # 20,000 + 20,000 > 30,000
    with dashboard_runtime.db.write() as session:  # time passes: the earlier refund leaves the window
        for refund in session.scalars(select(Refund)):
            refund.created_at -= timedelta(days=30)
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    assert "승인 필요 여부가 바뀌었습니다" in _texts(at)
    assert [r.amount for r in _refunds(dashboard_runtime)] == [Decimal(20000)]  # nothing more refunded
    with dashboard_runtime.db.read() as session:
        assert list(session.scalars(select(RefundRequest))) == []  # nor filed
    at.run()  # the dialog's next draw holds the figures read again: now it goes out at once
    assert at.button(key=f"{DIALOG}.confirm").label == "환불하기"


def test_reopening_after_an_answer_that_never_came_asks_the_same_refund_again(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The same payment's dialog reopened after a lost answer keeps its key, so it must keep what was
    sent with it too (amount, reason): asked again it settles the first attempt, never a second refund."""
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = _open_dialog(open_app, imp_uid)
    key = at.session_state[f"{DIALOG}.intent"].key
    at.text_input(key=f"{DIALOG}.amount").input("20000")
    at.radio(key=f"{DIALOG}.reason").set_value("duplicate_payment")
    sandbox.configure(drop_next=1, drop_only="POST /payments/cancel", fail_next=5, fail_only="GET /payments/")
    at.button(key=f"{DIALOG}.confirm").click().run()
    sandbox.configure(drop_next=0, fail_next=0, fail_only=None, drop_only=None)
    assert [(r.amount, r.status) for r in _refunds(dashboard_runtime)] == [(Decimal(20000), "unknown")]

    at.button(key="payment_detail.refund").click().run()
    assert at.session_state[f"{DIALOG}.intent"].key == key
    assert at.text_input(key=f"{DIALOG}.amount").value == "20000"
    assert at.radio(key=f"{DIALOG}.reason").value == "duplicate_payment"
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    assert "already used for a different refund" not in _texts(at)
    assert [(r.amount, r.idempotency_key) for r in _refunds(dashboard_runtime)] == [(Decimal(20000), key)]
    assert sandbox.calls()["cancels"] == []  # the lost one never applied, and it was not sent again


def test_a_viewer_sees_no_refund_action(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = _detail(open_app, "viewer", imp_uid)
    assert not [b for b in at.button if b.key == "payment_detail.refund"]
    # Even with the dialog's state forged open, a viewer's page draws no dialog.
    at.session_state[f"{DIALOG}.dialog_open"] = True
    at.run()
    assert not [b for b in at.button if b.key == f"{DIALOG}.confirm"]


def test_a_double_confirm_refunds_once(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = _open_dialog(open_app, imp_uid)
    key = at.session_state[f"{DIALOG}.intent"].key
    at.text_input(key=f"{DIALOG}.amount").input("20000").run()
    assert at.session_state[f"{DIALOG}.intent"].key == key  # stable while the dialog lives
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert [(r.amount, r.idempotency_key) for r in _refunds(dashboard_runtime)] == [(Decimal(20000), key)]
    # The second click reaching the server while the browser still showed the dialog (and sent
    # its inputs again).
    at.session_state[f"{DIALOG}.dialog_open"] = True
    at.run()
    at.text_input(key=f"{DIALOG}.amount").input("20000")
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    assert "이미 처리된 요청" in _texts(at)
    assert len(_refunds(dashboard_runtime)) == 1
    assert len(sandbox.calls()["cancels"]) == 1
    assert _metric(at, "환불 가능 금액") == "₩30,000"
    # Opening the dialog again is a new intent with a new key, prefilled with the new remainder.
    at.button(key="payment_detail.refund").click().run()
    assert at.session_state[f"{DIALOG}.intent"].key != key
    assert at.text_input(key=f"{DIALOG}.amount").value == "30000"


def test_a_refusal_stays_in_the_dialog_and_the_next_try_is_a_new_intent(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = _open_dialog(open_app, imp_uid)
    key = at.session_state[f"{DIALOG}.intent"].key
    at.text_input(key=f"{DIALOG}.amount").input("60000")
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert "환불 가능 금액 ₩50,000보다 큽니다" in "\n".join(e.value for e in at.error)
    assert at.session_state[f"{DIALOG}.intent"].key == key  # nothing was asked: the same intent
    sandbox.configure(fail_next=100)
    at.text_input(key=f"{DIALOG}.amount").input("10000")
    at.button(key=f"{DIALOG}.confirm").click().run()
    sandbox.configure(fail_next=0)
    assert not at.exception, at.exception
    assert at.session_state[f"{DIALOG}.dialog_open"]
    assert at.error, _texts(at)
    assert at.session_state[f"{DIALOG}.intent"].key != key


def test_the_dialog_speaks_english_and_still_stores_the_korean_reason(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _paid(dashboard_runtime, sandbox)
    at = open_app("operator", lang="en")
    at.session_state["payment_detail.imp_uid"] = imp_uid
    at.switch_page("views/payment_detail.py").run()
    at.button(key="payment_detail.refund").click().run()
    assert not at.exception, at.exception
    assert list(at.radio(key=f"{DIALOG}.reason").options)[:2] == [
        "Cancelled at the customer's request",
        "Duplicate payment",
    ]
    at.radio(key=f"{DIALOG}.reason").set_value("delivery_cancelled")
    at.button(key=f"{DIALOG}.confirm").click().run()
    assert not at.exception, at.exception
    assert [r.reason for r in _refunds(dashboard_runtime)] == ["탁송 취소·불가"]
