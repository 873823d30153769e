"""Alerts: differences between our records and PortOne's, one open alert per (kind, payment)."""

from __future__ import annotations

import enum

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.audit import trail as audit
from services.core.models import Alert, AlertStatus, utcnow


class AlertKind(enum.StrEnum):
    AMOUNT_MISMATCH = "amount_mismatch"  # paid amount or currency differs from the order (forgery)
    PAYMENT_WITHOUT_ORDER = "payment_without_order"  # PortOne knows a payment for no order of ours
    REFUND_OUTCOME_UNKNOWN = "refund_outcome_unknown"
    REFUND_MISMATCH = "refund_mismatch"  # PortOne's cancel_amount disagrees with our attempt
    REFUND_CANCEL_OVERDUE = "refund_cancel_overdue"  # a V2 cancel still REQUESTED past the configured time
    # Found by reconciliation (and by the same rules run on every /complete and webhook):
    MISSING_IN_DB = "missing_in_db"  # paid at PortOne, never recorded by us
    UNKNOWN_TO_PORTONE = "unknown_to_portone"  # recorded by us, PortOne has no such payment
    STATUS_MISMATCH = "status_mismatch"
    REFUND_TOTAL_MISMATCH = "refund_total_mismatch"  # our refunded total differs from PortOne's cancel_amount
    STUCK_READY = "stuck_ready"  # virtual account never paid past the configured age
    WEBHOOK_UNVERIFIED = "webhook_unverified"  # a delivery that failed verification
    WEBHOOK_GAP = "webhook_gap"  # PortOne changed a payment and no webhook told us in time
    UNSUPPORTED_CURRENCY = "unsupported_currency"  # PortOne shows a payment in a currency we do not offer
    # A forged virtual-account payment the guard cannot cancel by itself: PortOne pays it back only
    # into the customer's account (opi/ko/integration/cancel/v1/basic.md), which a person must get.
    FORGERY_REFUND_ACCOUNT_NEEDED = "forgery_refund_account_needed"
    # No scheduled reconciliation finished for RECONCILE_STALE_MINUTES: lost webhooks go unhealed
    # (names no payment; services/reconciliation/schedule.py raises and resolves it).
    RECONCILE_STALE = "reconcile_stale"
    ORDER_PAID_TWICE = "order_paid_twice"  # a second paid payment of one order (e.g. card, then the virtual account)


SEVERITY = {
    AlertKind.AMOUNT_MISMATCH: "critical",
    AlertKind.PAYMENT_WITHOUT_ORDER: "high",
    AlertKind.REFUND_OUTCOME_UNKNOWN: "critical",
    AlertKind.REFUND_MISMATCH: "high",
    AlertKind.REFUND_CANCEL_OVERDUE: "high",
    AlertKind.MISSING_IN_DB: "high",
    AlertKind.UNKNOWN_TO_PORTONE: "critical",
    AlertKind.STATUS_MISMATCH: "high",
    AlertKind.REFUND_TOTAL_MISMATCH: "high",
    AlertKind.STUCK_READY: "low",
    AlertKind.WEBHOOK_UNVERIFIED: "medium",
    AlertKind.WEBHOOK_GAP: "medium",
    AlertKind.UNSUPPORTED_CURRENCY: "high",
    AlertKind.FORGERY_REFUND_ACCOUNT_NEEDED: "critical",
    AlertKind.RECONCILE_STALE: "high",
    AlertKind.ORDER_PAID_TWICE: "high",
}


def raise_alert(
    session: Session,
    *,
    kind: AlertKind,
    imp_uid: str | None,
    merchant_uid: str | None,
    message: str,
    db_value: object = None,
    portone_value: object = None,
) -> Alert:
    """Open an alert, or refresh the one already open for this (kind, payment).

    Written by the one alert writer, `services.reconciliation.alert_writer.write_verdicts` (which also
    handles two PostgreSQL transactions opening the same alert at once).
    """
    from services.reconciliation.alert_writer import write_verdicts  # it builds on this module
    from services.reconciliation.facts import Finding, Verdict

    finding = Finding(
        kind,
        message,
        db_value=None if db_value is None else str(db_value),
        portone_value=None if portone_value is None else str(portone_value),
    )
    written = write_verdicts(
        session, [Verdict(imp_uid, merchant_uid, finding)], actor="system", where="raised by the service that found it"
    )
    alert_id = written.open_ids[(str(kind), imp_uid)]
    return session.get_one(Alert, alert_id, populate_existing=True)


def resolve_open(session: Session, *, kind: AlertKind, imp_uid: str, note: str, actor: str = "system") -> int:
    """Resolve the open alert of this kind for this payment, if any; returns how many were resolved."""
    alerts = session.scalars(
        select(Alert).where(Alert.kind == kind, Alert.imp_uid == imp_uid, Alert.status != AlertStatus.RESOLVED)
    ).all()
    for alert in alerts:
        alert.status = AlertStatus.RESOLVED
        alert.resolved_by = actor
        alert.resolution_note = note
        alert.updated_at = utcnow()
        audit.record(session, actor=actor, action="alert.resolved", target=imp_uid, alert_id=alert.id, note=note)
    return len(alerts)
