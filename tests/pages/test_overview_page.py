"""The overview page: empty state with its next step, figures per currency, alerts and the chart."""

from __future__ import annotations

from collections.abc import Callable

from streamlit.testing.v1 import AppTest

from services.auth.access import Actor
from services.core.models import Role
from services.payments import test_payment
from services.refunds import engine as refunds
from services.runtime import Runtime

OPERATOR = Actor("operator", Role.OPERATOR)


def _overview(open_app: Callable[..., AppTest], role: str, lang: str = "ko") -> AppTest:
    at = open_app(role, lang=lang)
    at.switch_page("views/overview.py").run()
    assert not at.exception, at.exception
    return at


def test_empty_database_says_what_to_do_next(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = _overview(open_app, "operator")
    assert at.title[0].value == "개요"
    assert at.info[0].value.startswith("아직 결제가 없습니다 — 테스트 결제를 실행")
    assert [m.value for m in at.metric] == ["0", "0", "0", "0"]  # open alerts by severity
    assert any(c.value.startswith("아직 수신된 웹훅이 없습니다") for c in at.caption)
    at.button(key="overview_test_payment").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "테스트 결제"


def test_empty_database_for_a_viewer_offers_no_test_payment(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime
) -> None:
    at = _overview(open_app, "viewer")
    assert at.info[0].value == "아직 결제가 없습니다. 결제가 들어오면 여기에 표시됩니다."
    assert not [b for b in at.button if b.key == "overview_test_payment"]


def test_figures_per_currency_with_a_partial_refund(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime
) -> None:
    rt = dashboard_runtime
    krw = test_payment.run_sandbox_payment(rt, actor=OPERATOR, currency="KRW")
    test_payment.run_sandbox_payment(rt, actor=OPERATOR, currency="KRW")
    test_payment.run_sandbox_payment(rt, actor=OPERATOR, currency="USD")
    assert krw.imp_uid
    refunds.refund(rt, imp_uid=krw.imp_uid, amount="12500", reason="부분 환불", actor="operator", idempotency_key="r1")

    at = _overview(open_app, "admin")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["오늘 결제 (KRW)"] == "₩100,000"
    assert metrics["오늘 순매출 (KRW)"] == "₩87,500"
    assert metrics["오늘 결제 (USD)"] == "$38.50"
    assert metrics["오늘 순매출 (USD)"] == "$38.50"
    assert metrics["긴급"] == "0"
    assert "2건 결제 · 환불 ₩12,500 (1건)" in [c.value for c in at.caption]

    krw_table, usd_table = (df.value for df in at.dataframe)
    assert list(krw_table["기간"]) == ["오늘", "최근 7일", "이번 달"]
    assert list(krw_table["결제 건수"]) == ["2", "2", "2"]
    assert list(krw_table["환불 금액"]) == ["₩12,500"] * 3
    assert list(krw_table["순매출"]) == ["₩87,500"] * 3
    assert list(usd_table["결제 금액"]) == ["$38.50"] * 3
    assert len(at.get("vega_lite_chart")) == 2  # one daily chart per currency
    assert not at.info  # no empty state


def test_renders_in_english(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    test_payment.run_sandbox_payment(dashboard_runtime, actor=OPERATOR, currency="USD")
    at = _overview(open_app, "viewer", lang="en")
    assert at.title[0].value == "Overview"
    assert {m.label: m.value for m in at.metric}["Paid today (USD)"] == "$38.50"


def test_refresh_drops_the_cached_figures(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = _overview(open_app, "viewer")
    assert at.info  # empty, and cached for 30 s
    test_payment.run_sandbox_payment(dashboard_runtime, actor=OPERATOR, currency="KRW")
    at.run()
    assert at.info  # still the cached figures
    at.button(key="overview_refresh").click().run()
    assert not at.exception, at.exception
    assert not at.info
    assert {m.label: m.value for m in at.metric}["오늘 결제 (KRW)"] == "₩50,000"
