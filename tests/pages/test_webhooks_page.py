"""The webhook log page: empty state, filters, paging, the raw body behind an expander, replay by role."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from services.core.kst import KST
from services.core.models import Payment, WebhookEvent
from services.runtime import Runtime
from services.webhooks import v1 as webhooks
from tests.factories import SandboxControl
from tests.services.reporting.test_sales import paid


def _webhooks(open_app: Callable[..., AppTest], role: str, lang: str = "ko") -> AppTest:
    at = open_app(role, lang=lang)
    at.switch_page("views/webhooks.py").run()
    assert not at.exception, at.exception
    return at


def _deliver(rt: Runtime, body: str, content_type: str = "application/json") -> int:
    return webhooks.receive(rt, body=body.encode(), content_type=content_type, source_ip="52.78.100.19").event_id


def _seed(rt: Runtime, sandbox: SandboxControl) -> tuple[str, int]:
    imp_uid = paid(rt, sandbox)
    event = _deliver(rt, json.dumps({"imp_uid": imp_uid, "merchant_uid": "m", "status": "paid"}))
    _deliver(rt, "imp_uid=imp_000000000000&status=paid", "application/x-www-form-urlencoded")
    _deliver(rt, "{broken")
    return imp_uid, event


def test_empty_database(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    at = _webhooks(open_app, "viewer")
    assert at.title[0].value == "웹훅 로그"
    assert at.info[0].value.startswith("이 조건에 맞는 웹훅이 없습니다")
    at = _webhooks(open_app, "operator", lang="en")
    assert at.title[0].value == "Webhook log"
    assert at.info[0].value.startswith("No webhooks match")


def test_list_filters_and_a_viewer_cannot_replay(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, event = _seed(dashboard_runtime, sandbox)
    at = _webhooks(open_app, "viewer")
    table = at.dataframe[0].value
    assert list(table["결과"]) == ["거부됨", "거부됨", "처리됨"]
    assert list(table["보낸 곳"]) == ["52.78.100.19"] * 3
    assert list(table["포트원 확인"]) == ["확인 안 됨", "확인 안 됨", "확인됨"]
    assert list(table["웹훅이 말한 상태"])[-1] == "결제완료 (paid)"
    assert "처리됨 1 · 거부됨 2 · 오류 0 · 처리 전 0" in [c.value for c in at.caption]
    assert not [b for b in at.button if b.key == "webhooks_replay"]
    assert "조회 권한으로는 웹훅을 다시 처리할 수 없습니다." in [c.value for c in at.caption]
    assert at.expander[0].label == "원본 본문"
    assert at.expander[0].code[0].value == "{broken"

    at.selectbox(key="webhooks_result").select("processed").run()
    assert list(at.dataframe[0].value["imp_uid"]) == [imp_uid]
    assert json.loads(at.expander[0].code[0].value)["imp_uid"] == imp_uid
    at.selectbox(key="webhooks_result").select("").run()
    at.text_input(key="webhooks_imp_uid").input(imp_uid[:9]).run()
    assert list(at.dataframe[0].value["번호"]) == [f"#{event}"]
    at.text_input(key="webhooks_imp_uid").input("").run()
    yesterday = datetime.now(KST).date() - timedelta(days=1)
    at.date_input(key="webhooks_range").set_value((yesterday - timedelta(days=3), yesterday)).run()
    assert not at.exception, at.exception
    assert at.info[0].value.startswith("이 조건에 맞는 웹훅이 없습니다")


def test_operator_replays_one_and_nothing_changes(
    open_app: Callable[..., AppTest], dashboard_runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid, event = _seed(dashboard_runtime, sandbox)
    at = _webhooks(open_app, "operator")
    at.selectbox(key="webhooks_pick").select(event).run()
    at.button(key="webhooks_replay").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value.startswith("다시 처리했습니다: 새 기록 #")
    top = at.dataframe[0].value.iloc[0]
    assert (top["보낸 곳"], top["결과"], top["imp_uid"]) == (f"replay #{event} by operator", "처리됨", imp_uid)
    with dashboard_runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None and (payment.status, payment.cancel_amount) == ("paid", 0)
        assert session.scalar(select(WebhookEvent).order_by(WebhookEvent.id.desc())).verified


def test_pages_of_fifty(open_app: Callable[..., AppTest], dashboard_runtime: Runtime) -> None:
    ids = [_deliver(dashboard_runtime, "{}") for _ in range(53)]
    at = _webhooks(open_app, "viewer", lang="en")
    assert len(at.dataframe[0].value) == 50
    at.button(key="webhooks_next").click().run()
    assert list(at.dataframe[0].value["No."]) == [f"#{i}" for i in reversed(ids[:3])]
    assert not [b for b in at.button if b.key == "webhooks_next"]
    at.button(key="webhooks_first").click().run()
    assert at.dataframe[0].value.iloc[0]["No."] == f"#{ids[-1]}"
