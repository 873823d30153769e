"""The payments page through AppTest: empty state, filters, search, masking, saved views, row
selection into the detail page and into a bulk refund."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

from streamlit.testing.v1 import AppTest

from dashboard.format import plain
from services.core.models import Payment, utcnow
from services.payments import orders
from services.payments import verification as payments
from services.runtime import Runtime
from tests.factories import DECLINED_CARD, SandboxControl


def _pay(
    runtime: Runtime,
    sandbox: SandboxControl,
    name: str,
    email: str,
    phone: str,
    currency: str = "KRW",
    **extra: str,
) -> str:
    order = orders.create_order(
        runtime, customer_email=email, customer_name=name, customer_phone=phone, currency=currency
    )
    paid = sandbox.checkout(
        order.merchant_uid, order.amount, currency, buyer_name=name, buyer_email=email, buyer_tel=phone, **extra
    )
    payments.complete(runtime, imp_uid=str(paid["imp_uid"]), merchant_uid=order.merchant_uid)
    return str(paid["imp_uid"])


def _three(runtime: Runtime, sandbox: SandboxControl) -> tuple[str, str, str]:
    kim = _pay(runtime, sandbox, "김민준", "minjun@example.com", "010-1234-5678")
    smith = _pay(runtime, sandbox, "John Smith", "john@example.com", "+1 415 555 0100", "USD")
    declined = _pay(runtime, sandbox, "박지호", "jiho@example.com", "010-9876-5432", card_number=DECLINED_CARD)
    return kim, smith, declined


def _open(open_app: Callable[..., AppTest], role: str, lang: str = "ko") -> AppTest:
    at = open_app(role, lang=lang)
    at.switch_page("views/payments.py").run()
    assert not at.exception, at.exception
    return at


def _shown(at: AppTest) -> set[str]:
    if not at.dataframe:
        return set()
    return set(at.dataframe[0].value["imp_uid"])


def test_empty_database_says_what_to_do_next(open_app: Callable[..., AppTest]) -> None:
    at = _open(open_app, "viewer")
    assert at.title[0].value == "결제 내역"
    assert "기간을 넓히거나 필터를 지워" in at.info[0].value
    assert not at.dataframe and not at.metric
    at.text_input(key="payments.query").input("imp_nothing").run()
    assert "검색어와 일치하는 결제가 없습니다" in at.info[0].value


def test_filters_and_search_change_the_shown_rows(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    kim, smith, declined = _three(dashboard_runtime, sandbox)
    at = _open(open_app, "operator")
    assert _shown(at) == {kim, smith, declined}
    assert {m.label: m.value for m in at.metric} == {"KRW 순매출": "₩50,000", "USD 순매출": "$38.50"}

    at.multiselect(key="payments.states").set_value(["failed"]).run()
    assert _shown(at) == {declined}
    assert [m.value for m in at.metric] == ["₩0"]
    at.multiselect(key="payments.states").set_value([]).run()
    at.multiselect(key="payments.currencies").set_value(["USD"]).run()
    assert _shown(at) == {smith}
    at.multiselect(key="payments.currencies").set_value([]).run()
    at.selectbox(key="payments.time_basis").set_value("paid").run()
    assert _shown(at) == {kim, smith}  # the declined payment was never paid
    at.selectbox(key="payments.time_basis").set_value("started").run()

    at.text_input(key="payments.query").input("01098765432").run()  # digits only finds 010-9876-5432
    assert _shown(at) == {declined}
    at.text_input(key="payments.query").input("john@").run()
    assert _shown(at) == {smith}
    at.text_input(key="payments.query").input(kim).run()
    assert _shown(at) == {kim}
    at.button(key="payments.reset").click().run()
    assert _shown(at) == {kim, smith, declined}
    assert at.text_input(key="payments.query").value == ""


def test_viewers_see_masked_contacts_and_no_refund_action(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    _pay(dashboard_runtime, sandbox, "김민준", "minjun@example.com", "010-1234-5678")
    viewer = _open(open_app, "viewer")
    frame = viewer.dataframe[0].value
    assert list(frame["email"]) == ["m***@example.com"] and list(frame["phone"]) == ["010-****-5678"]
    assert "가려져 보입니다" in "\n".join(c.value for c in viewer.caption)
    assert not [t for t in viewer.toggle if t.key == "payments.bulk_mode"]
    operator = _open(open_app, "operator")
    frame = operator.dataframe[0].value
    assert list(frame["email"]) == ["minjun@example.com"] and list(frame["phone"]) == ["010-1234-5678"]
    assert operator.toggle(key="payments.bulk_mode") is not None


def test_selecting_a_row_opens_its_detail(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = _pay(dashboard_runtime, sandbox, "김민준", "minjun@example.com", "010-1234-5678")
    at = _open(open_app, "viewer")
    table = at.dataframe[0]
    at.session_state[table.key] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "결제 상세"
    assert at.query_params["imp_uid"] == imp_uid
    assert at.session_state["payment_detail.imp_uid"] == imp_uid
    assert at.subheader[0].value == plain(imp_uid)  # shown as text


def test_rows_picked_for_a_bulk_refund_go_to_the_refunds_page(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    kim, smith, _ = _three(dashboard_runtime, sandbox)
    at = _open(open_app, "operator")
    at.toggle(key="payments.bulk_mode").set_value(True).run()
    frame = at.dataframe[0].value
    rows = [i for i, uid in enumerate(frame["imp_uid"]) if uid in (kim, smith)]
    at.session_state[at.dataframe[0].key] = {"selection": {"rows": rows, "columns": [], "cells": []}}
    at.run()
    assert at.title[0].value == "결제 내역"  # multi-row selection does not open a detail
    at.button(key="payments.bulk_go").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "환불"
    assert set(at.session_state["refunds.bulk_imp_uids"]) == {kim, smith}
    assert "선택한 2건을 일괄 환불합니다" in "\n".join(i.value for i in at.info)


def test_keyset_pages_and_saved_views(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    _bulk_rows(dashboard_runtime, 55)
    at = _open(open_app, "operator")
    first = _shown(at)
    assert len(first) == 50
    at.button(key="payments.table.next").click().run()
    second = _shown(at)
    assert len(second) == 5 and not first & second
    assert at.button(key="payments.table.next").disabled
    at.button(key="payments.table.previous").click().run()
    assert _shown(at) == first

    at.multiselect(key="payments.states").set_value(["failed"]).run()
    at.text_input(key="payments.view_name").input("실패 건")
    at.button(key="payments.view_save").click().run()
    assert not at.exception, at.exception
    at.button(key="payments.reset").click().run()
    assert at.multiselect(key="payments.states").value == []
    at.selectbox(key="payments.view").set_value("실패 건")
    at.button(key="payments.view_load").click().run()
    assert at.multiselect(key="payments.states").value == ["failed"]
    assert _shown(at) == set()
    # Another user does not see it.
    other = _open(open_app, "admin")
    assert other.selectbox(key="payments.view").options == []


def _bulk_rows(runtime: Runtime, count: int) -> None:
    """Many payments for paging: written directly (volume test data only)."""
    now = utcnow()
    with runtime.db.write() as session:
        session.add_all(
            Payment(
                imp_uid=f"imp_page_{index:03d}",
                merchant_uid=f"chekar_page_{index:03d}",
                status="paid",
                amount=Decimal(50000),
                currency="KRW",
                started_at=now - timedelta(minutes=index),
                paid_at=now - timedelta(minutes=index),
                verified=True,
            )
            for index in range(count)
        )


def test_english(open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl) -> None:
    _pay(dashboard_runtime, sandbox, "John Smith", "john@example.com", "+1 415 555 0100", "USD")
    at = _open(open_app, "operator", lang="en")
    assert at.title[0].value == "Payments"
    assert [m.label for m in at.metric] == ["USD net"]


def test_a_range_longer_than_the_limit_is_explained(open_app: Callable[..., AppTest]) -> None:
    from services.core.kst import kst_today

    at = _open(open_app, "viewer")
    today = kst_today()
    at.date_input(key="payments.dates").set_value((today - timedelta(days=120), today)).run()
    assert not at.exception, at.exception
    assert "최대 92일까지" in at.error[0].value
