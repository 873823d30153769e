"""The payments list's row refund action through AppTest: an operator's click on a row's "↩ 환불"
cell opens the refund dialog on the list, confirming refunds once, and the list shows the new
state; a viewer has no such cell; any other cell still opens the detail."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from services.core.models import Refund
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from tests.factories import SandboxControl

DIALOG = "payments.refund_dialog"
DECLINED_CARD = "4000-0000-0000-0002"


def _pay(runtime: Runtime, sandbox: SandboxControl, **checkout: str) -> str:
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, buyer_name="김체카", **checkout)["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid


def _open(open_app: Callable[..., AppTest], role: str) -> AppTest:
    at = open_app(role)
    at.switch_page("views/payments.py").run()
    assert not at.exception, at.exception
    return at


def _click_cell(at: AppTest, imp_uid: str, column: str) -> AppTest:
    table = at.dataframe[0]
    row = list(table.value["imp_uid"]).index(imp_uid)
    at.session_state[table.key] = {"selection": {"rows": [], "columns": [], "cells": [[row, column]]}}
    return at.run()


def _row(at: AppTest, imp_uid: str) -> dict[str, object]:
    frame = at.dataframe[0].value
    return dict(frame[frame["imp_uid"] == imp_uid].iloc[0])


def _refunds(runtime: Runtime) -> list[Refund]:
    with runtime.db.read() as session:
        return list(session.scalars(select(Refund)))


def test_from_a_row_to_refunded_in_two_clicks_shown_in_place(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _pay(dashboard_runtime, sandbox)
    at = _open(open_app, "operator")
    assert _row(at, imp_uid)["refund"] == "↩ 환불"
    _click_cell(at, imp_uid, "refund")  # click 1
    assert not at.exception, at.exception
    assert at.title[0].value == "결제 내역"  # the dialog opens on the list
    assert at.text_input(key=f"{DIALOG}.amount").value == "50000"
    assert at.radio(key=f"{DIALOG}.reason").value == "customer_request"
    key = at.session_state[f"{DIALOG}.intent"].key
    at.button(key=f"{DIALOG}.confirm").click().run()  # click 2
    assert not at.exception, at.exception
    assert [(r.amount, r.reason, r.idempotency_key) for r in _refunds(dashboard_runtime)] == [
        (Decimal(50000), "고객 요청 취소", key)
    ]
    assert not at.session_state[f"{DIALOG}.dialog_open"]
    assert at.title[0].value == "결제 내역"
    assert "환불했습니다: ₩50,000" in "\n".join(s.value for s in at.success)
    assert "환불했습니다" in "\n".join(str(toast.value) for toast in at.toast)
    row = _row(at, imp_uid)  # the list shows the new state, and the action is gone
    assert row["state"] == ["cancelled"] and row["refunded"] == "₩50,000" and row["refund"] == ""
    # The click was forgotten: the next run neither reopens the dialog nor refunds again.
    at.run()
    assert not at.session_state[f"{DIALOG}.dialog_open"]
    assert len(_refunds(dashboard_runtime)) == 1 and len(sandbox.calls()["cancels"]) == 1


def test_only_refundable_rows_offer_the_action_and_other_cells_open_the_detail(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    paid = _pay(dashboard_runtime, sandbox)
    declined = _pay(dashboard_runtime, sandbox, card_number=DECLINED_CARD)
    at = _open(open_app, "operator")
    assert _row(at, declined)["refund"] == ""
    _click_cell(at, paid, "amount")
    assert not at.exception, at.exception
    assert at.title[0].value == "결제 상세"
    assert at.query_params["imp_uid"] == paid


def test_a_viewer_sees_no_refund_action(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    _pay(dashboard_runtime, sandbox)
    at = _open(open_app, "viewer")
    assert "refund" not in at.dataframe[0].value.columns
    at.session_state[f"{DIALOG}.dialog_open"] = True  # even forged open, no dialog is drawn
    at.run()
    assert not [b for b in at.button if b.key == f"{DIALOG}.confirm"]
