"""Which events are queued, and what their message says: a high or critical alert, a refund
waiting for a second operator, a scheduled reconciliation that failed or stopped; each once, with
a link to the dashboard and no personal data. Real databases, the sandbox, a loopback receiver."""

from __future__ import annotations

import threading
import time
import tomllib
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.alerts.store import SEVERITY, AlertKind, raise_alert
from services.auth.access import Actor
from services.core.errors import ForgeryDetected
from services.core.models import Alert, NotificationOutbox, Role, utcnow
from services.notifications.dispatch import dispatch_due
from services.notifications.labels import ALERT_KIND_KO, SEVERITY_KO
from services.payments import orders
from services.payments import verification as payments
from services.reconciliation import schedule
from services.refunds import bulk
from services.refunds import desk as refund_desk
from services.refunds.bulk import BulkInputRow
from services.refunds.outcomes import RefundOutcome
from services.runtime import Runtime
from tests.factories import SandboxControl, make_runtime
from tests.services.notifications.smtp_server import free_port
from tests.webhook_receiver import WebhookReceiver

BUYER = {"customer_name": "김체카", "customer_email": "buyer.kim@example.com", "customer_phone": "010-9876-5432"}
KO_ALERTS = Path(__file__).resolve().parents[3] / "dashboard" / "messages" / "ko" / "alerts.toml"


def _queued(rt: Runtime) -> list[NotificationOutbox]:
    with rt.db.read() as session:
        return list(session.scalars(select(NotificationOutbox).order_by(NotificationOutbox.id)).all())


def _after_the_window() -> object:
    return utcnow() + timedelta(seconds=61)


def _texts(receiver: WebhookReceiver) -> list[str]:
    return [str(body["text"]) for body in receiver.bodies()]


def test_a_forged_payment_is_told_once_with_a_link_and_no_personal_data(
    slack_rt: Runtime, sandbox: SandboxControl, receiver: WebhookReceiver
) -> None:
    sandbox.configure(enforce_prepare=False)  # PortOne lets the browser pay another amount
    order = orders.create_order(slack_rt, **BUYER)
    imp_uid = str(sandbox.checkout(order.merchant_uid, Decimal(100))["imp_uid"])  # paid 100 won, not the fee
    with pytest.raises(ForgeryDetected):
        payments.complete(slack_rt, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    with slack_rt.db.read() as session:
        alert = session.scalars(select(Alert).where(Alert.kind == AlertKind.AMOUNT_MISMATCH)).one()

    assert dispatch_due(slack_rt).sent == []  # still gathering what else happens within the minute
    assert receiver.received == []
    result = dispatch_due(slack_rt, now=_after_the_window())
    assert result.sent == [f"alert:{alert.id}"]
    [text] = _texts(receiver)
    assert text.startswith("[체카 결제] 긴급 critical: 금액 불일치(위변조) (amount_mismatch)")
    assert f"http://localhost:8501/alerts?alert={alert.id}" in text
    for personal in (*BUYER.values(), "buyer.kim", "9876"):
        assert personal not in text
    assert receiver.received[0]["content_type"] == "application/json"

    assert dispatch_due(slack_rt, now=utcnow() + timedelta(hours=1)).sent == []  # told once
    assert len(receiver.received) == 1


def test_the_same_alert_raised_twice_is_one_message(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    for _ in range(2):
        with slack_rt.db.write() as session:
            raise_alert(
                session, kind=AlertKind.REFUND_MISMATCH, imp_uid="imp_twice", merchant_uid="m_twice", message="again"
            )
    assert len(_queued(slack_rt)) == 1
    dispatch_due(slack_rt, now=_after_the_window())
    dispatch_due(slack_rt, now=utcnow() + timedelta(minutes=5))
    assert len(receiver.received) == 1


def test_alerts_within_a_minute_are_one_message(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    kinds = [AlertKind.AMOUNT_MISMATCH, AlertKind.UNKNOWN_TO_PORTONE, AlertKind.ORDER_PAID_TWICE]
    for number, kind in enumerate(kinds):
        with slack_rt.db.write() as session:
            raise_alert(session, kind=kind, imp_uid=f"imp_batch_{number}", merchant_uid=None, message="x")
    result = dispatch_due(slack_rt, now=_after_the_window())
    assert len(result.sent) == 3
    [text] = _texts(receiver)
    assert text.splitlines()[0] == "[체카 결제] 알림 3건 / 3 notifications"
    ids = [row.event_key.removeprefix("alert:") for row in _queued(slack_rt)]
    for alert_id in ids:
        assert f"/alerts?alert={alert_id}" in text
    assert "포트원에 없음 (unknown_to_portone)" in text and "중복 결제된 주문 (order_paid_twice)" in text


def test_low_and_medium_alerts_are_not_sent(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    with slack_rt.db.write() as session:
        raise_alert(session, kind=AlertKind.STUCK_READY, imp_uid="imp_low", merchant_uid=None, message="x")
        raise_alert(session, kind=AlertKind.WEBHOOK_GAP, imp_uid="imp_medium", merchant_uid=None, message="x")
    assert {SEVERITY[AlertKind.STUCK_READY], SEVERITY[AlertKind.WEBHOOK_GAP]} == {"low", "medium"}
    assert _queued(slack_rt) == []
    dispatch_due(slack_rt, now=_after_the_window())
    assert receiver.received == []


def test_nothing_is_queued_when_no_channel_is_configured(runtime: Runtime) -> None:
    with runtime.db.write() as session:
        raise_alert(session, kind=AlertKind.AMOUNT_MISMATCH, imp_uid="imp_quiet", merchant_uid=None, message="x")
    assert _queued(runtime) == []
    assert dispatch_due(runtime, now=_after_the_window()).sent == []


def test_a_refund_waiting_for_a_second_operator_is_one_message(
    slack_rt: Runtime, sandbox: SandboxControl, receiver: WebhookReceiver
) -> None:
    strict = slack_rt.settings.model_copy(update={"refund_approval_threshold": {"KRW": Decimal("30000")}})
    rt = Runtime(settings=strict, db=slack_rt.db, gateway=slack_rt.gateway)
    order = orders.create_order(rt, **BUYER)
    imp_uid = str(sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"])
    payments.complete(rt, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
    kim = Actor("kim", Role.OPERATOR)
    for _ in range(2):  # a double click replays the request: still one event
        asked = refund_desk.request_refund(
            rt, actor=kim, imp_uid=imp_uid, amount="40000", reason="이중 결제", idempotency_key="big-1"
        )
    assert asked.outcome == RefundOutcome.AWAITING_APPROVAL
    dispatch_due(rt, now=_after_the_window())
    [text] = _texts(receiver)
    assert f"환불 승인 대기 #{asked.request_id}" in text and "40000 KRW" in text
    assert f"http://localhost:8501/refunds?request={asked.request_id}" in text
    for personal in (*BUYER.values(), "kim", imp_uid):
        assert personal not in text


def test_a_bulk_batch_waiting_for_approval_is_one_message(
    slack_rt: Runtime, sandbox: SandboxControl, receiver: WebhookReceiver
) -> None:
    strict = slack_rt.settings.model_copy(update={"refund_approval_threshold": {"KRW": Decimal("60000")}})
    rt = Runtime(settings=strict, db=slack_rt.db, gateway=slack_rt.gateway)
    uids = []
    for _ in range(2):
        order = orders.create_order(rt, **BUYER)
        uids.append(str(sandbox.checkout(order.merchant_uid, order.amount)["imp_uid"]))
        payments.complete(rt, imp_uid=uids[-1], merchant_uid=order.merchant_uid)
    rows = [BulkInputRow(line, uid, amount="40000") for line, uid in enumerate(uids, start=1)]
    batch = "<batch> & *typed*"  # an operator's text: never in the message
    results = bulk.submit_bulk(rt, actor=Actor("kim", Role.OPERATOR), rows=rows, default_reason="일괄", batch_id=batch)
    assert [r.outcome for r in results] == [RefundOutcome.AWAITING_APPROVAL] * 2
    dispatch_due(rt, now=_after_the_window())
    [text] = _texts(receiver)
    assert "일괄 환불 승인 대기" in text and "http://localhost:8501/refunds" in text
    assert "<batch>" not in text and "typed" not in text


def test_a_stopped_schedule_is_told_through_its_alert(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    state = schedule.check_stale(slack_rt, watching_since=utcnow() - timedelta(hours=2))
    assert state.stale
    schedule.check_stale(slack_rt, watching_since=utcnow() - timedelta(hours=2))  # still one alert, one event
    dispatch_due(slack_rt, now=_after_the_window())
    [text] = _texts(receiver)
    assert "높음 high: 정기 대조 멈춤 (reconcile_stale)" in text


def test_a_failed_scheduled_run_is_told(database_url: str, receiver: WebhookReceiver) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"  # PortOne cannot be asked: the run fails
    rt = make_runtime(
        database_url=database_url,
        portone_api_url=unreachable,
        notify_slack_webhook_url=receiver.url,
        portone_timeout_seconds=1.0,
    )
    try:
        assert schedule.serve(rt, stop=threading.Event(), max_runs=1) == 1
        keys = [row.event_key for row in _queued(rt)]
        assert any(key.startswith("reconcile:") for key in keys), keys
        dispatch_due(rt, now=_after_the_window())
        [text] = _texts(receiver)
        assert "정기 대조 실패" in text and "scheduled reconciliation" in text
    finally:
        rt.close()


def test_raising_an_alert_never_waits_for_the_receiver(slack_rt: Runtime, receiver: WebhookReceiver) -> None:
    receiver.delay = 3.0  # a slow receiver: only the dispatcher would wait for it
    started = time.monotonic()
    with slack_rt.db.write() as session:
        raise_alert(session, kind=AlertKind.AMOUNT_MISMATCH, imp_uid="imp_fast", merchant_uid=None, message="x")
    assert time.monotonic() - started < 1.0
    assert receiver.received == [] and len(_queued(slack_rt)) == 1


def test_every_alert_kind_has_the_dashboards_korean_name() -> None:
    words = tomllib.loads(KO_ALERTS.read_text(encoding="utf-8"))["alerts"]
    assert ALERT_KIND_KO == {str(kind): words[f"kind_{kind}"] for kind in AlertKind}
    assert {severity: words[f"severity_{severity}"] for severity in SEVERITY_KO} == SEVERITY_KO


def test_enqueue_writes_one_row_per_key_on_both_databases(slack_rt: Runtime) -> None:
    from services.notifications.outbox import enqueue

    for _ in range(2):
        with slack_rt.db.write() as session:
            enqueue(session, key="alert:999", kind="x", severity="high", summary="s", link_path="/alerts")
    with slack_rt.db.read() as session:
        assert session.scalar(select(func.count()).select_from(NotificationOutbox)) == 1
