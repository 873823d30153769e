"""The alert desk: list alerts, look at one beside its payment, and handle it.

Handling (acknowledge, resolve with a note, re-sync from PortOne) needs HANDLE_ALERTS; who did
what is kept on the alert (acknowledged_by, resolved_by, resolution_note) and in the audit log.
A re-sync asks PortOne again (services.payments.verification.verify_payment); when the difference the alert
describes is gone, the alert is resolved with a note saying so, otherwise it stays as it is.
A refund_cancel_overdue alert (a V2 cancel still REQUESTED past the time limit) has one more
action: the operator marks the attempt failed with a note (`fail_requested_refunds`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from services.alerts.store import SEVERITY, AlertKind
from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core.errors import Conflict, InvalidRequest, NotFound
from services.core.models import (
    Alert,
    AlertStatus,
    AuditEntry,
    Order,
    Payment,
    Refund,
    RefundStatus,
    alert_is_open,
    utcnow,
)
from services.core.sql import minor_sum
from services.payments.verification import Verification, verify_payment
from services.portone.types import PortOneStatus
from services.reconciliation.alert_writer import attributed_to
from services.refunds import settlement
from services.runtime import Runtime

SEVERITIES = ("critical", "high", "medium", "low")
MAX_NOTE_LENGTH = 2000
MAX_PAGE_SIZE = 200
AUTO_RESOLVE_NOTE = (
    "재동기화 결과 포트원과 우리 기록이 일치하여 자동 해결 (re-sync: our records now agree with PortOne)"
)


@dataclass(frozen=True)
class AlertRow:
    id: int
    kind: str
    severity: str
    status: str
    imp_uid: str | None
    merchant_uid: str | None
    db_value: str | None
    portone_value: str | None
    message: str
    created_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    resolved_by: str | None
    resolution_note: str | None


@dataclass(frozen=True)
class AlertPage:
    rows: list[AlertRow]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class PaymentBrief:
    """The alert's payment as we hold it, beside its order's amount."""

    imp_uid: str
    merchant_uid: str
    status: str
    amount: Decimal
    cancel_amount: Decimal
    currency: str
    verified: bool
    paid_at: datetime | None
    synced_at: datetime | None
    order_amount: Decimal | None
    order_currency: str | None


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    actor: str
    action: str
    note: str | None


@dataclass(frozen=True)
class AlertDetail:
    alert: AlertRow
    payment: PaymentBrief | None
    history: list[HistoryEntry]


class ResyncOutcome(enum.StrEnum):
    RESOLVED = "resolved"  # the difference is gone; the alert was resolved
    STILL_DIFFERENT = "still_different"  # PortOne still disagrees with us; the alert stays
    NOT_AT_PORTONE = "not_at_portone"  # PortOne has no such payment


@dataclass(frozen=True)
class ResyncResult:
    outcome: ResyncOutcome
    alert: AlertRow
    portone_status: str | None


def _row(alert: Alert) -> AlertRow:
    return AlertRow(
        id=alert.id,
        kind=alert.kind,
        severity=alert.severity,
        status=alert.status,
        imp_uid=alert.imp_uid,
        merchant_uid=alert.merchant_uid,
        db_value=alert.db_value,
        portone_value=alert.portone_value,
        message=alert.message,
        created_at=alert.created_at,
        updated_at=alert.updated_at,
        acknowledged_by=alert.acknowledged_by,
        resolved_by=alert.resolved_by,
        resolution_note=alert.resolution_note,
    )


def kinds() -> list[str]:
    return [str(kind) for kind in AlertKind]


def list_alerts(
    rt: Runtime,
    *,
    actor: Actor,
    status: str | None = AlertStatus.OPEN,
    kind: str | None = None,
    severity: str | None = None,
    page: int = 1,
    page_size: int = 25,
) -> AlertPage:
    """One page of alerts, most severe first, then newest; `status=None` lists every status."""
    require(actor, Permission.VIEW)
    page_size = min(max(page_size, 1), MAX_PAGE_SIZE)
    conditions = []
    if status:
        conditions.append(Alert.status == status)
    if kind:
        conditions.append(Alert.kind == kind)
    if severity:
        conditions.append(Alert.severity == severity)
    rank = case({name: i for i, name in enumerate(SEVERITIES)}, value=Alert.severity, else_=len(SEVERITIES))
    with rt.db.read() as session:
        total = int(session.scalar(select(func.count()).select_from(Alert).where(*conditions)) or 0)
        last_page = max(1, -(-total // page_size))
        page = min(max(page, 1), last_page)
        alerts = session.scalars(
            select(Alert)
            .where(*conditions)
            .order_by(rank, Alert.created_at.desc(), Alert.id.desc())
            .offset((page - 1) * page_size)
            .limit(page_size)
        ).all()
        return AlertPage(rows=[_row(a) for a in alerts], total=total, page=page, page_size=page_size)


def status_counts(rt: Runtime, *, actor: Actor) -> dict[str, int]:
    require(actor, Permission.VIEW)
    with rt.db.read() as session:
        rows = session.execute(select(Alert.status, func.count()).group_by(Alert.status)).all()
    counts = {str(s): 0 for s in AlertStatus}
    counts.update({str(status): int(n) for status, n in rows})
    return counts


def open_count(rt: Runtime, *, actor: Actor) -> int:
    """Open alerts only (the navigation shows it on every page run): one index range, not a
    count of every alert ever raised."""
    require(actor, Permission.VIEW)
    with rt.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Alert).where(alert_is_open())) or 0)


def alert_detail(rt: Runtime, *, actor: Actor, alert_id: int) -> AlertDetail:
    require(actor, Permission.VIEW)
    with rt.db.read() as session:
        alert = _get(session, alert_id)
        payment = None
        if alert.imp_uid:
            found = session.execute(
                select(Payment, Order)
                .outerjoin(Order, Payment.order_id == Order.id)
                .where(Payment.imp_uid == alert.imp_uid)
            ).first()
            if found is not None:
                p, order = found
                payment = PaymentBrief(
                    imp_uid=p.imp_uid,
                    merchant_uid=p.merchant_uid,
                    status=p.status,
                    amount=p.amount,
                    cancel_amount=p.cancel_amount,
                    currency=p.currency,
                    verified=p.verified,
                    paid_at=p.paid_at,
                    synced_at=p.synced_at,
                    order_amount=order.amount if order else None,
                    order_currency=order.currency if order else None,
                )
        return AlertDetail(alert=_row(alert), payment=payment, history=_history(session, alert))


def _history(session: Session, alert: Alert) -> list[HistoryEntry]:
    """The audit entries about this alert (raised, acknowledged, re-synced, resolved)."""
    entries = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.target == _target(alert), AuditEntry.action.like("alert.%"))
        .order_by(AuditEntry.at, AuditEntry.id)
    ).all()
    return [
        HistoryEntry(at=e.at, actor=e.actor, action=e.action, note=(e.detail or {}).get("note"))
        for e in entries
        if (e.detail or {}).get("alert_id") == alert.id
    ]


def _target(alert: Alert) -> str | None:
    return alert.imp_uid


def _get(session: Session, alert_id: int, *, for_update: bool = False) -> Alert:
    stmt = select(Alert).where(Alert.id == alert_id)
    alert = session.scalar(stmt.with_for_update() if for_update else stmt)
    if alert is None:
        raise NotFound(f"no alert #{alert_id}")
    return alert


def _clean_note(note: str | None, *, required: bool) -> str | None:
    text = (note or "").strip()
    if required and not text:
        raise InvalidRequest("a note is required to resolve an alert: say what was found or done")
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidRequest(f"the note is longer than {MAX_NOTE_LENGTH} characters")
    return text or None


def acknowledge(rt: Runtime, *, actor: Actor, alert_id: int, note: str | None = None) -> AlertRow:
    """Mark an open alert as being looked at by `actor`."""
    require(actor, Permission.HANDLE_ALERTS)
    text = _clean_note(note, required=False)
    with rt.db.write() as session:
        alert = _get(session, alert_id, for_update=True)
        if alert.status != AlertStatus.OPEN:
            raise Conflict(f"alert #{alert_id} is already {alert.status}")
        alert.status = AlertStatus.ACKNOWLEDGED
        alert.acknowledged_by = actor.username
        alert.updated_at = utcnow()
        audit.record(
            session,
            actor=actor.username,
            action="alert.acknowledged",
            target=alert.imp_uid,
            alert_id=alert.id,
            note=text,
        )
        return _row(alert)


def resolve(rt: Runtime, *, actor: Actor, alert_id: int, note: str) -> AlertRow:
    """Close an open or acknowledged alert; the note (required) says what was found or done."""
    require(actor, Permission.HANDLE_ALERTS)
    text = _clean_note(note, required=True)
    with rt.db.write() as session:
        alert = _get(session, alert_id, for_update=True)
        _resolve(session, alert, actor=actor.username, note=str(text))
        return _row(alert)


def _resolve(session: Session, alert: Alert, *, actor: str, note: str) -> None:
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"alert #{alert.id} is already resolved by {alert.resolved_by}")
    alert.status = AlertStatus.RESOLVED
    alert.resolved_by = actor
    alert.resolution_note = note
    alert.updated_at = utcnow()
    audit.record(session, actor=actor, action="alert.resolved", target=alert.imp_uid, alert_id=alert.id, note=note)


def resync(rt: Runtime, *, actor: Actor, alert_id: int) -> ResyncResult:
    """Ask PortOne again about the alert's payment; resolve the alert if the difference is gone.

    Raises GatewayError when PortOne cannot be asked (nothing changes then).
    """
    require(actor, Permission.HANDLE_ALERTS)
    with rt.db.read() as session:
        alert = _get(session, alert_id)
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"alert #{alert_id} is already resolved by {alert.resolved_by}")
    if not alert.imp_uid:
        raise InvalidRequest(f"alert #{alert_id} names no payment to re-sync")
    verification: Verification | None
    # The real-time reconciliation rules run while the payment is recorded; an alert they resolve
    # now is resolved in this operator's name.
    with attributed_to(actor.username, f"re-sync of alert #{alert_id}"):
        if alert.kind in (
            AlertKind.REFUND_OUTCOME_UNKNOWN,
            AlertKind.REFUND_MISMATCH,
            AlertKind.REFUND_TOTAL_MISMATCH,
            AlertKind.REFUND_CANCEL_OVERDUE,
        ):
            settlement.settle_with_lease(rt, imp_uid=alert.imp_uid, actor=actor.username)
        try:
            verification = verify_payment(rt, imp_uid=alert.imp_uid, source="sync")
        except NotFound:
            verification = None
    with rt.db.write() as session:
        alert = _get(session, alert_id, for_update=True)
        if verification is None:
            outcome = ResyncOutcome.NOT_AT_PORTONE
        elif alert.status == AlertStatus.RESOLVED or _difference_gone(session, alert, verification):
            outcome = ResyncOutcome.RESOLVED
        else:
            outcome = ResyncOutcome.STILL_DIFFERENT
        audit.record(
            session,
            actor=actor.username,
            action="alert.resynced",
            target=alert.imp_uid,
            alert_id=alert.id,
            outcome=str(outcome),
            portone_status=str(verification.status) if verification else None,
        )
        if outcome == ResyncOutcome.RESOLVED and alert.status != AlertStatus.RESOLVED:
            _resolve(session, alert, actor=actor.username, note=AUTO_RESOLVE_NOTE)
        return ResyncResult(
            outcome=outcome, alert=_row(alert), portone_status=str(verification.status) if verification else None
        )


def fail_requested_refunds(rt: Runtime, *, actor: Actor, alert_id: int, note: str) -> AlertRow:
    """Resolve a refund_cancel_overdue alert by ending its payment's overdue REQUESTED cancels as
    failed, once the operator has learnt they will not happen; the note (required) says how.

    PortOne is asked first: an attempt it now shows finished is settled from its record instead.
    Raises GatewayError when PortOne cannot be asked (nothing changes then)."""
    require(actor, Permission.HANDLE_ALERTS)
    text = str(_clean_note(note, required=True))
    with rt.db.read() as session:
        alert = _get(session, alert_id)
    if alert.status == AlertStatus.RESOLVED:
        raise Conflict(f"alert #{alert_id} is already resolved by {alert.resolved_by}")
    if alert.kind != AlertKind.REFUND_CANCEL_OVERDUE or not alert.imp_uid:
        raise InvalidRequest(f"alert #{alert_id} is not about a refund still REQUESTED at PortOne")
    marked = settlement.fail_requested(rt, imp_uid=alert.imp_uid, actor=actor.username, note=text)
    with rt.db.write() as session:
        alert = _get(session, alert_id, for_update=True)
        if alert.status != AlertStatus.RESOLVED:
            done = f"refund(s) {', '.join(f'#{i}' for i in marked)} marked failed" if marked else "settled from PortOne"
            _resolve(session, alert, actor=actor.username, note=f"{text} ({done})")
        return _row(alert)


def _difference_gone(session: Session, alert: Alert, verified: Verification) -> bool:
    """Whether what this kind of alert reports no longer holds, judged from fresh records."""
    payment = session.scalar(select(Payment).where(Payment.imp_uid == verified.imp_uid))
    if payment is None:
        return False
    in_sync = payment.status == verified.status and payment.cancel_amount == verified.cancel_amount
    unsettled = session.scalar(
        select(func.count())
        .select_from(Refund)
        .where(Refund.payment_id == payment.id, Refund.status.in_([RefundStatus.PENDING, RefundStatus.UNKNOWN]))
    )
    refunded_hundredths = session.scalar(
        select(minor_sum(Refund.amount)).where(Refund.payment_id == payment.id, Refund.status == RefundStatus.SUCCEEDED)
    )
    refunds_agree = not unsettled and Decimal(int(refunded_hundredths or 0)) == payment.cancel_amount * 100
    checks = {
        AlertKind.AMOUNT_MISMATCH: payment.verified,
        AlertKind.PAYMENT_WITHOUT_ORDER: verified.has_order,
        AlertKind.REFUND_OUTCOME_UNKNOWN: not unsettled,
        AlertKind.REFUND_CANCEL_OVERDUE: not unsettled,
        AlertKind.REFUND_MISMATCH: refunds_agree,
        AlertKind.REFUND_TOTAL_MISMATCH: refunds_agree,
        AlertKind.MISSING_IN_DB: True,
        AlertKind.UNKNOWN_TO_PORTONE: True,
        AlertKind.STATUS_MISMATCH: in_sync,
        AlertKind.WEBHOOK_GAP: in_sync,
        AlertKind.WEBHOOK_UNVERIFIED: in_sync,
        AlertKind.STUCK_READY: payment.status != PortOneStatus.READY,
    }
    return bool(checks.get(AlertKind(alert.kind), False)) if alert.kind in SEVERITY else False
