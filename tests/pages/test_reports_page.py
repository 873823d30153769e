"""The reports page: figures per currency, filters, charts, empty state, CSV export by role."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from services.core.models import AuditEntry
from services.refunds import engine as refunds
from services.reporting import export_links
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.pages.conftest import age_sign_in, signed_in
from tests.services.reporting.test_sales import forgery, paid


def _reports(open_app: Callable[..., AppTest], role: str, lang: str = "ko") -> AppTest:
    at = open_app(role, lang=lang)
    at.switch_page("views/reports.py").run()
    assert not at.exception, at.exception
    return at


def _seed(rt: Runtime, sandbox: SandboxControl) -> None:
    krw = paid(rt, sandbox, buyer_name="=cmd|' /C calc'!A0")
    paid(rt, sandbox)
    usd = paid(rt, sandbox, "USD")
    forgery(rt, sandbox)
    refunds.refund(rt, imp_uid=krw, amount="12500", reason="-부분 환불", actor="operator", idempotency_key="p1")
    refunds.refund(rt, imp_uid=usd, amount="0.50", reason="partial", actor="operator", idempotency_key="p2")


def test_empty_database_says_what_to_do(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = _reports(open_app, "viewer")
    assert at.title[0].value == "리포트"
    assert at.info[0].value.startswith("이 기간에는 결제도 환불도 없습니다")
    assert not at.metric and not at.dataframe
    assert [c.value for c in at.caption if c.value.startswith("약 ")] == ["약 0행"]


def test_figures_charts_and_the_currency_filter(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    _seed(dashboard_runtime, sandbox)
    at = _reports(open_app, "viewer")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {
        "결제 (KRW)": "₩100,000",
        "환불 (KRW)": "₩12,500",
        "순매출 (KRW)": "₩87,500",
        "결제 (USD)": "$38.50",
        "환불 (USD)": "$0.50",
        "순매출 (USD)": "$38.00",
    }
    assert "결제 2건 · 환불 1건" in [c.value for c in at.caption]
    assert len(at.get("vega_lite_chart")) == 2  # one chart per currency
    krw_period, krw_channel, usd_period, usd_channel = (df.value for df in at.dataframe)
    assert list(krw_period["순매출"]) == ["₩87,500"]
    assert (list(krw_channel["PG사"]), list(krw_channel["결제수단"])) == (["kcp"], ["card"])
    assert list(usd_channel["결제 금액"]) == ["$38.50"]
    assert not at.info

    at.selectbox(key="reports_currency").select("USD").run()
    assert not at.exception, at.exception
    assert [m.label for m in at.metric] == ["결제 (USD)", "환불 (USD)", "순매출 (USD)"]

    at.radio(key="reports_granularity").set_value("month").run()
    assert not at.exception, at.exception
    assert any(c.value.startswith("월별 집계:") for c in at.caption)
    assert at.dataframe[0].value.iloc[0, 0][:4].isdigit() and len(at.dataframe[0].value.iloc[0, 0]) == 7


def test_viewer_exports_masked_admin_may_include_personal_data(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    _seed(dashboard_runtime, sandbox)
    at = _reports(open_app, "viewer")
    at.selectbox(key="reports_export_kind").select("payments").run()
    assert not [c for c in at.checkbox if c.key == "reports_export_personal"]
    assert "구매자 이름·이메일·전화번호는 가려서 내보냅니다." in [c.value for c in at.caption]
    at.button(key="reports_export_prepare").click().run()
    assert not at.exception, at.exception
    button = at.get("download_button")[0]
    assert button.label == "CSV 내려받기 (4행)"
    data = at.session_state["reports_export"]["data"]
    assert data.startswith(b"\xef\xbb\xbf\xed\x8f\xac")  # BOM, then the Korean header
    assert "'=****************0" in data.decode() and "=cmd" not in data.decode()

    at = _reports(open_app, "admin")
    at.selectbox(key="reports_export_kind").select("refunds").run()
    at.checkbox(key="reports_export_personal").check().run()
    at.button(key="reports_export_prepare").click().run()
    assert not at.exception, at.exception
    text = at.session_state["reports_export"]["data"].decode()
    assert "'=cmd|' /C calc'!A0" in text and "'-부분 환불" in text and ",12500," in text
    # Changing a filter drops the prepared file, so a stale one is never offered.
    at.selectbox(key="reports_export_status_refunds").select("failed").run()
    assert "reports_export" not in at.session_state and not at.get("download_button")
    with dashboard_runtime.db.read() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "export.csv")).all()
    assert [(e.actor, e.target, e.detail["masked"]) for e in entries] == [
        ("viewer", "payments", True),
        ("admin", "refunds", False),
    ]


def test_a_large_export_gets_a_signed_link(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EXPORT_STREAM_THRESHOLD_ROWS", "1")
    _seed(dashboard_runtime, sandbox)
    at = _reports(open_app, "operator", lang="en")
    at.selectbox(key="reports_export_kind").select("payments").run()
    assert not [b for b in at.button if b.key == "reports_export_prepare"]
    at.button(key="reports_export_link").click().run()
    assert not at.exception, at.exception
    [link] = at.get("link_button")
    assert link.proto.label == "Download CSV (new tab)"
    url = urlsplit(link.proto.url)
    assert url.path == "/api/exports/payments.csv"
    at.run()  # the link stays until it is used, expires, its sign-in ends or a filter changes
    assert [b.proto.url for b in at.get("link_button")] == [link.proto.url]
    at.selectbox(key="reports_export_status_payments").select("paid").run()
    assert not at.get("link_button")
    at.button(key="reports_export_link").click().run()
    [link] = at.get("link_button")
    url = urlsplit(link.proto.url)
    checked = export_links.redeem_link(dashboard_runtime, parse_qs(url.query)["token"][0], kind="payments")
    assert checked.actor.username == "operator" and checked.masked and checked.language == "en"
    at.run()  # used: the page no longer offers it
    assert not at.get("link_button")


def test_renders_in_english(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    _seed(dashboard_runtime, sandbox)
    at = _reports(open_app, "viewer", lang="en")
    assert at.title[0].value == "Reports"
    assert {m.label: m.value for m in at.metric}["Net (KRW)"] == "₩87,500"


@pytest.mark.reliability(
    area="access",
    case="an export link made in the dashboard, opened after its maker's sign-in ended",
    outcome="refused (401 link_revoked): the link ends with the sign-in that made it",
)
def test_a_link_ends_with_its_sign_in(
    open_app: Callable[..., AppTest],
    dashboard_runtime: Runtime,
    sandbox: SandboxControl,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    from api.app import create_app
    from tests.servers import serve_in_thread

    monkeypatch.setenv("EXPORT_STREAM_THRESHOLD_ROWS", "1")
    _seed(dashboard_runtime, sandbox)
    at = _reports(open_app, "admin", lang="en")
    at.selectbox(key="reports_export_kind").select("payments").run()
    at.button(key="reports_export_link").click().run()
    [link] = at.get("link_button")
    url = urlsplit(link.proto.url)
    # The sign-in ends (left idle past SESSION_IDLE_MINUTES); the next page run signs it out.
    age_sign_in(
        dashboard_runtime, at, signed_in_ago=0, idle_for=dashboard_runtime.settings.session_idle_minutes * 60 + 1
    )
    at.run()
    assert not signed_in(at)
    served = serve_in_thread(create_app(dashboard_runtime))
    try:
        answer = httpx.get(f"{served.url}{url.path}?{url.query}", timeout=60)
    finally:
        served.stop()
    assert answer.status_code == 401 and answer.json()["error"] == "link_revoked", answer.text[:300]
