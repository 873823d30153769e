"""The alert desk: who may handle alerts, acknowledge and resolve with a note, re-sync from PortOne."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from services.alerts import desk as alert_desk
from services.alerts.store import AlertKind, raise_alert
from services.auth.access import Actor
from services.core.errors import Conflict, Forbidden, InvalidRequest, NotFound
from services.core.models import AuditEntry, Payment, Role
from services.payments import orders
from services.payments.verification import verify_payment
from services.runtime import Runtime
from tests.factories import SandboxControl
from tests.services.reporting.test_sales import forgery, paid

OPERATOR = Actor("kim", Role.OPERATOR)
VIEWER = Actor("viewer", Role.VIEWER)


def payment_without_order(runtime: Runtime, sandbox: SandboxControl) -> str:
    imp_uid = str(sandbox.checkout("not_our_order_1", "12000")["imp_uid"])
    verify_payment(runtime, imp_uid=imp_uid, source="webhook")
    return imp_uid


def test_viewer_may_look_but_not_handle(runtime: Runtime, sandbox: SandboxControl) -> None:
    forgery(runtime, sandbox)
    page = alert_desk.list_alerts(runtime, actor=VIEWER)
    [alert] = page.rows
    for action in (
        lambda: alert_desk.acknowledge(runtime, actor=VIEWER, alert_id=alert.id),
        lambda: alert_desk.resolve(runtime, actor=VIEWER, alert_id=alert.id, note="봤음"),
        lambda: alert_desk.resync(runtime, actor=VIEWER, alert_id=alert.id),
    ):
        with pytest.raises(Forbidden):
            action()
    assert alert_desk.alert_detail(runtime, actor=VIEWER, alert_id=alert.id).alert.status == "open"


def test_list_filter_page_acknowledge_and_resolve_with_a_note(runtime: Runtime, sandbox: SandboxControl) -> None:
    forged = forgery(runtime, sandbox)
    stray = payment_without_order(runtime, sandbox)
    page = alert_desk.list_alerts(runtime, actor=VIEWER, page_size=1)
    assert (page.total, page.pages, [a.imp_uid for a in page.rows]) == (2, 2, [forged])  # critical first
    second = alert_desk.list_alerts(runtime, actor=VIEWER, page=2, page_size=1)
    assert [a.imp_uid for a in second.rows] == [stray]
    assert [a.kind for a in alert_desk.list_alerts(runtime, actor=VIEWER, severity="high").rows] == [
        "payment_without_order"
    ]
    assert alert_desk.list_alerts(runtime, actor=VIEWER, kind="refund_mismatch").rows == []

    detail = alert_desk.alert_detail(runtime, actor=VIEWER, alert_id=page.rows[0].id)
    assert (detail.alert.db_value, detail.alert.portone_value) == ("50000 KRW", "100 KRW")
    assert detail.payment is not None
    assert (detail.payment.amount, detail.payment.order_amount, detail.payment.verified) == (100, 50000, False)
    alert_id = detail.alert.id

    acked = alert_desk.acknowledge(runtime, actor=OPERATOR, alert_id=alert_id, note="확인 중")
    assert (acked.status, acked.acknowledged_by) == ("acknowledged", "kim")
    with pytest.raises(Conflict):
        alert_desk.acknowledge(runtime, actor=OPERATOR, alert_id=alert_id)
    for blank in ("", "   "):
        with pytest.raises(InvalidRequest):
            alert_desk.resolve(runtime, actor=OPERATOR, alert_id=alert_id, note=blank)
    lee = Actor("lee", Role.ADMIN)
    done = alert_desk.resolve(runtime, actor=lee, alert_id=alert_id, note="PG사 확인: 위변조 취소 완료")
    assert (done.status, done.resolved_by, done.resolution_note) == ("resolved", "lee", "PG사 확인: 위변조 취소 완료")
    with pytest.raises(Conflict):
        alert_desk.resolve(runtime, actor=OPERATOR, alert_id=alert_id, note="again")
    with pytest.raises(NotFound):
        alert_desk.acknowledge(runtime, actor=OPERATOR, alert_id=999_999)

    history = alert_desk.alert_detail(runtime, actor=VIEWER, alert_id=alert_id).history
    assert [(h.actor, h.action, h.note) for h in history] == [
        ("system", "alert.raised", None),
        ("kim", "alert.acknowledged", "확인 중"),
        ("lee", "alert.resolved", "PG사 확인: 위변조 취소 완료"),
    ]
    assert alert_desk.status_counts(runtime, actor=VIEWER) == {"open": 1, "acknowledged": 0, "resolved": 1}
    assert [a.id for a in alert_desk.list_alerts(runtime, actor=VIEWER, status="resolved").rows] == [alert_id]


def test_resync_resolves_a_difference_that_is_gone_and_keeps_one_that_is_not(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    imp_uid = paid(runtime, sandbox)
    # PortOne's console cancels it and no webhook reaches us: our record still says paid.
    sandbox.console_cancel(imp_uid, reason="콘솔 취소")
    with runtime.db.write() as session:
        merchant_uid = session.scalar(select(Payment.merchant_uid).where(Payment.imp_uid == imp_uid))
        gap = raise_alert(
            session,
            kind=AlertKind.STATUS_MISMATCH,
            imp_uid=imp_uid,
            merchant_uid=merchant_uid,
            message="status differs",
            db_value="paid",
            portone_value="cancelled",
        ).id
    result = alert_desk.resync(runtime, actor=OPERATOR, alert_id=gap)
    assert (result.outcome, result.portone_status) == ("resolved", "cancelled")
    assert (result.alert.status, result.alert.resolved_by) == ("resolved", "kim")
    # The reconciliation rules, run while the payment is recorded, resolve it in the operator's name.
    assert result.alert.resolution_note is not None
    assert result.alert.resolution_note.endswith(f"(re-sync of alert #{gap})")
    with runtime.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        assert payment is not None and (payment.status, payment.cancel_amount) == ("cancelled", 50000)

    forged = forgery(runtime, sandbox)
    [open_alert] = alert_desk.list_alerts(runtime, actor=OPERATOR).rows
    assert open_alert.imp_uid == forged
    kept = alert_desk.resync(runtime, actor=OPERATOR, alert_id=open_alert.id)
    assert (kept.outcome, kept.alert.status) == ("still_different", "open")
    with pytest.raises(Conflict):
        alert_desk.resync(runtime, actor=OPERATOR, alert_id=gap)

    with runtime.db.read() as session:
        actions = session.execute(
            select(AuditEntry.actor, AuditEntry.action).where(AuditEntry.action.like("alert.%")).order_by(AuditEntry.id)
        ).all()
    assert [tuple(a) for a in actions] == [
        ("system", "alert.raised"),
        ("kim", "alert.resolved"),
        ("kim", "alert.resynced"),
        ("system", "alert.raised"),
        ("kim", "alert.resynced"),
    ]


def test_resync_of_a_payment_portone_does_not_know(runtime: Runtime, sandbox: SandboxControl) -> None:
    order = orders.create_order(runtime, customer_email="a@example.com", customer_name="김")
    with runtime.db.write() as session:
        alert_id = raise_alert(
            session,
            kind=AlertKind.UNKNOWN_TO_PORTONE,
            imp_uid="imp_nowhere_1",
            merchant_uid=order.merchant_uid,
            message="recorded by us only",
        ).id
    result = alert_desk.resync(runtime, actor=OPERATOR, alert_id=alert_id)
    assert (result.outcome, result.alert.status, result.portone_status) == ("not_at_portone", "open", None)


def test_resync_resolves_with_its_own_note_when_the_rules_cannot_tell_yet(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A webhook gap reported for a payment paid moments ago: the rules wait for the delivery
    delay before judging, but our record now agrees with PortOne, so the re-sync resolves it."""
    imp_uid = paid(runtime, sandbox)
    with runtime.db.write() as session:
        alert_id = raise_alert(
            session,
            kind=AlertKind.WEBHOOK_GAP,
            imp_uid=imp_uid,
            merchant_uid=None,
            message="no webhook yet",
            db_value="paid",
            portone_value="paid",
        ).id
    result = alert_desk.resync(runtime, actor=OPERATOR, alert_id=alert_id)
    assert (result.outcome, result.alert.status, result.alert.resolved_by) == ("resolved", "resolved", "kim")
    assert result.alert.resolution_note == alert_desk.AUTO_RESOLVE_NOTE


def test_resync_resolves_a_stuck_ready_alert_on_a_card_window_left_open(
    runtime: Runtime, sandbox: SandboxControl
) -> None:
    """A STUCK_READY alert raised on a card window left `ready` (no virtual account waits: see
    sdk/ko/v1-sdk/javascript-sdk/payrt.md) is resolved by a re-sync: nothing is stuck."""
    left = sandbox.checkout("abandoned_window_1", "50000", outcome="abandon", card_number=None)
    imp_uid = str(left["imp_uid"])
    verify_payment(runtime, imp_uid=imp_uid, source="complete")
    with runtime.db.write() as session:
        stuck = raise_alert(
            session,
            kind=AlertKind.STUCK_READY,
            imp_uid=imp_uid,
            merchant_uid="abandoned_window_1",
            message="virtual account unpaid",
            db_value="ready",
            portone_value="ready",
        ).id
    result = alert_desk.resync(runtime, actor=OPERATOR, alert_id=stuck)
    assert (result.outcome, result.alert.status) == ("resolved", "resolved")
