"""The alerts page: empty state, filters, an alert beside its payment, handling by role."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from dashboard.format import plain
from services.alerts.store import AlertKind, raise_alert
from services.core.models import Alert, Payment
from services.payments.verification import verify_payment
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.services.reporting.test_sales import forgery, paid


def _alerts(open_app: Callable[..., AppTest], role: str, lang: str = "ko") -> AppTest:
    at = open_app(role, lang=lang)
    at.switch_page("views/alerts.py").run()
    assert not at.exception, at.exception
    return at


def _seed(rt: Runtime, sandbox: SandboxControl) -> tuple[str, str]:
    forged = forgery(rt, sandbox)
    stray = str(sandbox.checkout("not_our_order_9", "12000")["imp_uid"])
    verify_payment(rt, imp_uid=stray, source="webhook")
    return forged, stray


def _handling_buttons(at: AppTest) -> set[str]:
    return {b.key for b in at.button if b.key in ("alerts_resync", "alerts_acknowledge", "alerts_resolve")}


def test_empty_database(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = _alerts(open_app, "operator")
    assert at.title[0].value == "알림"
    assert at.info[0].value.startswith("미처리 알림이 없습니다")
    assert not at.dataframe
    at.radio(key="alerts_status").set_value("resolved").run()
    assert at.info[0].value == "해결된 알림이 아직 없습니다."
    at = _alerts(open_app, "viewer", lang="en")
    assert at.title[0].value == "Alerts"
    assert at.info[0].value.startswith("No open alerts")


def test_viewer_sees_alerts_and_filters_but_no_actions(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    forged, stray = _seed(dashboard_runtime, sandbox)
    at = _alerts(open_app, "viewer")
    table = at.dataframe[0].value
    assert list(table["결제"]) == [forged, stray]  # critical first
    assert list(table["종류"]) == ["금액 불일치(위변조)", "주문 없는 결제"]
    assert at.radio(key="alerts_status").options[0] == "미처리 (2)"
    assert [x.value for x in at.text] == ["₩50,000", "₩100"]  # our record beside PortOne's
    assert list(table["우리 기록"])[0] == "₩50,000"
    assert at.info[0].value.startswith("결제 금액이나 통화가 주문과 다릅니다")  # what it means, in Korean
    assert any(c.value.startswith("기술 정보: ") for c in at.caption)
    assert _handling_buttons(at) == set()
    assert "조회 권한으로는 알림을 처리할 수 없습니다." in [c.value for c in at.caption]

    at.selectbox(key="alerts_severity").select("high").run()
    assert list(at.dataframe[0].value["결제"]) == [stray]
    at.selectbox(key="alerts_severity").select("").run()
    at.selectbox(key="alerts_kind").select("refund_mismatch").run()
    assert at.info[0].value.startswith("조건에 맞는 알림이 없습니다")

    at = _alerts(open_app, "viewer")
    at.button(key="alerts_open_payment").click().run()
    assert at.session_state["detail_imp_uid"] == forged


def test_operator_acknowledges_then_resolves_with_a_required_note(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    forged, _ = _seed(dashboard_runtime, sandbox)
    at = _alerts(open_app, "operator")
    assert _handling_buttons(at) == {"alerts_resync", "alerts_acknowledge", "alerts_resolve"}
    at.button(key="alerts_acknowledge").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.endswith("확인함으로 표시했습니다.")
    assert len(at.dataframe[0].value) == 1  # one open alert left

    at.radio(key="alerts_status").set_value("acknowledged").run()
    assert list(at.dataframe[0].value["담당"]) == ["operator"]
    assert _handling_buttons(at) == {"alerts_resync", "alerts_resolve"}
    at.button(key="alerts_resolve").click().run()
    assert at.error[0].value.startswith("해결하려면 메모를 적어 주세요")
    at.text_area(key="alerts_note").input("PG사 확인: 위변조 결제 취소 완료").run()
    at.button(key="alerts_resolve").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.endswith("해결 처리했습니다.")
    with dashboard_runtime.db.read() as session:
        alert = session.scalar(select(Alert).where(Alert.imp_uid == forged))
        assert alert is not None
        assert (alert.status, alert.acknowledged_by, alert.resolved_by, alert.resolution_note) == (
            "resolved",
            "operator",
            "operator",
            "PG사 확인: 위변조 결제 취소 완료",
        )
    at.radio(key="alerts_status").set_value("resolved").run()
    assert _handling_buttons(at) == set()
    assert f"해결: operator — {plain('PG사 확인: 위변조 결제 취소 완료')}" in [c.value for c in at.caption]


def test_resync_resolves_a_difference_portone_has_fixed(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    rt = dashboard_runtime
    imp_uid = paid(rt, sandbox)
    sandbox.console_cancel(imp_uid)
    with rt.db.write() as session:
        merchant_uid = session.scalar(select(Payment.merchant_uid).where(Payment.imp_uid == imp_uid))
        raise_alert(
            session,
            kind=AlertKind.WEBHOOK_GAP,
            imp_uid=imp_uid,
            merchant_uid=merchant_uid,
            message="PortOne changed the payment and no webhook told us",
            db_value="paid",
            portone_value="cancelled",
        )
    at = _alerts(open_app, "admin", lang="en")
    at.button(key="alerts_resync").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.startswith("PortOne (")
    assert at.success[0].value.endswith("now agree. The alert was resolved automatically.")
    assert at.info[0].value.startswith("No open alerts")


def _navigation_titles(at: AppTest) -> list[str]:
    # AppTest keeps st.navigation's pages only in this private mapping (Streamlit is pinned).
    return [page["page_name"] for page in at._registered_pages.values()]


def test_open_alerts_are_counted_in_the_navigation(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    assert "알림" in _navigation_titles(open_app("viewer"))
    _seed(dashboard_runtime, sandbox)
    titles = _navigation_titles(open_app("viewer"))
    assert "알림 (2)" in titles and "알림" not in titles, titles
    assert "Alerts (2)" in _navigation_titles(open_app("operator", lang="en"))


def test_operator_marks_a_refund_overdue_at_portone_failed_with_a_note(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A refund PortOne accepted as REQUESTED two hours ago and never finished (seeded as the refund
    engine records it): the sweep raises the alert; the operator marks the refund failed with a note."""
    from datetime import timedelta

    from services.core.models import Refund, utcnow
    from services.refunds import settlement

    imp_uid = paid(dashboard_runtime, sandbox)
    with dashboard_runtime.db.write() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None
        session.add(
            Refund(payment=payment, amount=payment.amount, currency=payment.currency, reason="고객 요청",
                   requested_by="operator", idempotency_key="overdue-1", status="unknown",
                   error_code=settlement.PENDING_AT_PORTONE, portone_cancellation_id="c-requested",
                   cancel_amount_before=0, created_at=utcnow() - timedelta(hours=2))
        )  # fmt: skip
    assert settlement.alert_overdue_requests(dashboard_runtime) == 1
    at = _alerts(open_app, "operator")
    assert list(at.dataframe[0].value["종류"]) == ["포트원 환불 처리 지연"]
    at.button(key="alerts_fail_refund").click().run()
    assert at.error[0].value.startswith("해결하려면 메모를 적어 주세요")
    at.text_area(key="alerts_note").input("카드사 확인: 취소 불가").run()
    at.button(key="alerts_fail_refund").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.endswith("알림을 해결 처리했습니다.")
    with dashboard_runtime.db.read() as session:
        refund = session.scalar(select(Refund).where(Refund.idempotency_key == "overdue-1"))
        alert = session.scalar(select(Alert).where(Alert.kind == "refund_cancel_overdue"))
        assert refund is not None and alert is not None
        assert refund.status == "failed" and "카드사 확인: 취소 불가" in (refund.error_message or "")
        assert (alert.status, alert.resolved_by) == ("resolved", "operator")


def test_a_link_to_an_alert_opens_that_alert(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    """Notifications link to /alerts?alert=<id>: the page opens on that alert, not the first one."""
    _seed(dashboard_runtime, sandbox)
    with dashboard_runtime.db.read() as session:
        second = max(session.scalars(select(Alert.id)))
    at = open_app("operator")
    at.query_params["alert"] = str(second)
    at.switch_page("views/alerts.py").run()
    assert not at.exception, at.exception
    assert [h.value for h in at.subheader if h.value.startswith("알림 #")] == [f"알림 #{second}"]
    at.query_params["alert"] = "999999"  # an alert that is not there: the list, and a word why
    at.run()
    assert not at.exception, at.exception
    assert any("#999999" in w.value for w in at.warning)
