"""The test payment page: sandbox pays end to end, test mode explains the browser's part, live offers nothing."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from dashboard.format import plain
from services.core.models import Order, Payment
from services.payments.test_payment import DECLINED_TEST_CARD
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.pages.conftest import APP_TIMEOUT, sign_in_state

PAGE = "views/test_payment.py"
PAGE_FILE = str(Path(__file__).resolve().parents[2] / PAGE)


def _page(open_app: Callable[..., AppTest], role: str = "operator", lang: str = "ko") -> AppTest:
    at = open_app(role, lang=lang)
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _payments(rt: Runtime) -> list[Payment]:
    with rt.db.read() as session:
        return list(session.scalars(select(Payment)))


def test_sandbox_krw_payment_arrives_and_links_to_its_detail(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    at = _page(open_app)
    assert at.title[0].value == "테스트 결제"
    at.button(key="test_payment_submit").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.startswith("결제가 승인되고 확인되었습니다")
    assert any(":green-badge[결제완료]" in m.value for m in at.markdown)
    assert any("₩50,000" in m.value for m in at.markdown)
    [payment] = _payments(dashboard_runtime)
    assert (payment.status, payment.amount, payment.currency, payment.verified) == ("paid", Decimal(50000), "KRW", True)
    assert any(plain(payment.imp_uid) in m.value for m in at.markdown)

    at.button(key="test_payment_detail").click().run()
    assert at.session_state["detail_imp_uid"] == payment.imp_uid


def test_sandbox_usd_and_a_declined_card(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    at = _page(open_app, lang="en")
    at.selectbox(key="test_payment_currency").select("USD")
    at.button(key="test_payment_submit").click().run()
    assert not at.exception, at.exception
    assert any("$38.50" in m.value for m in at.markdown)
    at.radio(key="test_payment_card").set_value(DECLINED_TEST_CARD)
    at.button(key="test_payment_submit").click().run()
    assert not at.exception, at.exception
    assert at.error[0].value.startswith("The payment was not approved")
    assert any(":red-badge[" in m.value for m in at.markdown)
    assert sorted((p.currency, p.status) for p in _payments(dashboard_runtime)) == [("USD", "failed"), ("USD", "paid")]


def test_viewer_has_no_test_payment(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = open_app("viewer")
    with pytest.raises(ValueError, match="test_payment"):
        at.switch_page(PAGE)  # not in the viewer's navigation
    direct = AppTest.from_file(PAGE_FILE, default_timeout=APP_TIMEOUT)
    sign_in_state(direct, dashboard_runtime, "viewer")
    direct.run()
    assert not direct.exception
    assert direct.error[0].value.startswith("이 화면을 열 권한이 없습니다")
    assert not direct.button


@pytest.fixture
def real_keys(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxControl) -> None:
    for name, value in {
        "PORTONE_IMP_KEY": "real-key-1",
        "PORTONE_IMP_SECRET": "real-secret-1",
        "INTERNAL_API_TOKEN": "real-internal-token",
        "EXPORT_LINK_SECRET": "real-export-secret-0123456789",
    }.items():
        monkeypatch.setenv(name, value)
    sandbox.configure(imp_key="real-key-1", imp_secret="real-secret-1")


def test_live_mode_shows_nothing_actionable(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    real_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORTONE_MODE", "live")
    at = open_app("operator")
    assert not at.exception, at.exception
    assert at.error[0].value.startswith("실결제(LIVE) 모드입니다")  # the app's LIVE banner
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(PAGE)  # not in the navigation in live mode
    # Opened directly anyway, the page offers nothing to fill in or press.
    direct = AppTest.from_file(str(Path(__file__).resolve().parents[2] / PAGE), default_timeout=60)
    sign_in_state(direct, dashboard_runtime, "operator")
    direct.run()
    assert not direct.exception, direct.exception
    assert direct.warning[0].value.startswith("실결제(LIVE) 모드에서는 테스트 결제를 할 수 없습니다")
    assert not direct.button and not direct.text_input and not direct.selectbox


def test_test_mode_creates_the_order_and_completes_the_browsers_payment(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    real_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORTONE_MODE", "test")
    at = _page(open_app)
    assert not [b for b in at.button if b.key == "test_payment_detail"]
    at.button(key="test_payment_submit").click().run()
    assert not at.exception, at.exception
    with dashboard_runtime.db.read() as session:
        order = session.scalar(select(Order))
        assert order is not None and session.scalar(select(func.count()).select_from(Payment)) == 0
    assert any("4111-1111-1111-1111" in m.value and "12/30" in m.value and "123" in m.value for m in at.markdown)
    [code] = at.code
    assert f'"merchant_uid": "{order.merchant_uid}"' in code.value and '"amount": 50000' in code.value

    paid = sandbox.checkout(order.merchant_uid, order.amount)  # the customer's browser pays
    at.text_input(key="test_payment_imp_uid").input(paid["imp_uid"])
    at.button(key="test_payment_confirm").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value == "결제를 확인했습니다. 포트원 상태: 결제완료"
    [payment] = _payments(dashboard_runtime)
    assert (payment.imp_uid, payment.status) == (paid["imp_uid"], "paid")
