"""Settling refund attempts whose outcome we do not know yet, from PortOne's own record.

An attempt whose answer never came is settled by reading the payment's `cancel_history` back from
PortOne, never by sending again; as PortOne may still be applying a cancel whose answer we stopped
waiting for, it is judged not applied only after `refund_unknown_grace_seconds`, and new refunds of
the payment wait until then.

A V2 cancel PortOne accepted as REQUESTED is settled from that cancellation's own status: SUCCEEDED
(counted in the payment) or FAILED (the attempt fails). PortOne may never show it (a PAID payment's
object lists no cancellations): still unfinished after `refund_requested_alert_minutes`, it raises
a `refund_cancel_overdue` alert, and an operator may mark it failed with a note (`fail_requested`).

Settling runs under the payment's lease (services.refunds.lease): an attempt in flight would look
unapplied.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.alerts.store import AlertKind, raise_alert, resolve_open
from services.audit import trail as audit
from services.core.errors import Conflict, GatewayError, NotFound
from services.core.models import Payment, Refund, RefundStatus, utcnow
from services.payments.sync import apply_payment
from services.portone.types import CancellationState, GatewayPayment
from services.refunds.lease import payment_lease
from services.runtime import Runtime

PENDING_AT_PORTONE = "cancel_requested"  # error_code of an attempt PortOne accepted as REQUESTED
ANSWER_LOST = "answer_lost"  # error_code of an attempt whose answer never came, not yet shown by PortOne


def claim_cancellation(refund: Refund, fetched: GatewayPayment, taken: set[str]) -> str | None:
    """The newest PortOne cancellation of this attempt's amount that no refund row has claimed."""
    candidates = [c for c in fetched.cancellations if c.cancellation_id not in taken and c.amount == refund.amount]
    if not candidates:
        return None
    candidates.sort(key=lambda c: (c.cancelled_at is not None, c.cancelled_at))
    return candidates[-1].cancellation_id


def _unclaimed_requested(fetched: GatewayPayment, taken: set[str]) -> str | None:
    """A cancellation PortOne shows REQUESTED that no other attempt of ours owns, if any."""
    for cancellation_id, state in fetched.cancellation_states.items():
        if state == CancellationState.REQUESTED and cancellation_id not in taken:
            return cancellation_id
    return None


def _may_still_apply(refund: Refund, grace_seconds: float) -> bool:
    """PortOne may still be applying this attempt's cancel: it was sent less than the grace ago.
    (A cancel we stopped waiting for is not a cancel PortOne stopped working on.)"""
    return utcnow() - refund.created_at < timedelta(seconds=grace_seconds)


def _overdue(refund: Refund, alert_minutes: float) -> bool:
    """A cancel accepted as REQUESTED that has not finished in the configured time."""
    return utcnow() - refund.created_at >= timedelta(minutes=alert_minutes)


def _alert_overdue(session: Session, refund: Refund, alert_minutes: float) -> None:
    payment = refund.payment
    raise_alert(
        session,
        kind=AlertKind.REFUND_CANCEL_OVERDUE,
        imp_uid=payment.imp_uid,
        merchant_uid=payment.merchant_uid,
        message=f"refund #{refund.id} of {refund.amount} {refund.currency}: PortOne accepted its cancel "
        f"(cancellation {refund.portone_cancellation_id or 'without an id'}) as REQUESTED and has not shown it "
        f"finished in {alert_minutes:g} min; new refunds of the payment wait",
        db_value=refund.amount,
    )


def settle_from_portone(
    session: Session,
    refund: Refund,
    fetched: GatewayPayment,
    *,
    actor: str,
    grace_seconds: float,
    alert_minutes: float | None = None,
) -> None:
    """Decide an attempt's outcome from PortOne's own record of the payment."""
    payment = refund.payment
    # A cancel accepted as REQUESTED is known by its own id: only that cancellation settles it.
    own = refund.portone_cancellation_id if refund.error_code == PENDING_AT_PORTONE else None
    taken = {r.portone_cancellation_id for r in payment.refunds if r.portone_cancellation_id and r is not refund}
    before = refund.cancel_amount_before or Decimal(0)
    if own is not None:
        claimed = own if any(c.cancellation_id == own for c in fetched.cancellations) else None
    else:
        claimed = claim_cancellation(refund, fetched, taken)
    if fetched.cancel_amount >= before + refund.amount and claimed is not None:
        mark_attempt(refund, RefundStatus.SUCCEEDED, cancellation_id=claimed, refunded_total=fetched.cancel_amount)
    elif own is not None and fetched.cancellation_states.get(own) == CancellationState.FAILED:
        mark_attempt(
            refund,
            RefundStatus.FAILED,
            error=f"PortOne shows cancellation {own} FAILED: the PG refused this refund, nothing was refunded",
            cancellation_id=own,
        )
    elif refund.error_code == PENDING_AT_PORTONE:
        # PortOne counts a REQUESTED cancel only once it succeeded: keep waiting, never resend; past
        # the time limit, tell ops (the payment takes no refund meanwhile).
        if alert_minutes is not None and _overdue(refund, alert_minutes):
            _alert_overdue(session, refund, alert_minutes)
        return
    elif (requested := _unclaimed_requested(fetched, taken)) is not None:
        # Our answer was lost, and PortOne shows a cancel of this payment still REQUESTED that no
        # attempt of ours owns: ours, being applied by the PG. Wait for it by its id, never judge it
        # unapplied (PortOne's remainder does not count it, so the checksum would not stop a second).
        mark_attempt(
            refund,
            RefundStatus.UNKNOWN,
            error=f"PortOne shows cancellation {requested} REQUESTED (the PG is applying it); asked again later",
            error_code=PENDING_AT_PORTONE,
            cancellation_id=requested,
        )
    elif fetched.cancel_amount == before and _may_still_apply(refund, grace_seconds):
        if refund.status == RefundStatus.UNKNOWN and refund.error_code == ANSWER_LOST:
            return  # already waiting
        mark_attempt(
            refund,
            RefundStatus.UNKNOWN,
            error="no answer from PortOne and it does not show this refund yet: it may still apply it; "
            "asked again later, never resent",
            error_code=ANSWER_LOST,
        )
    elif fetched.cancel_amount == before:
        mark_attempt(refund, RefundStatus.FAILED, error="PortOne did not apply this refund (confirmed by re-query)")
    else:
        mark_attempt(refund, RefundStatus.UNKNOWN, error="PortOne's refunded total does not explain this attempt")
        raise_alert(
            session,
            kind=AlertKind.REFUND_MISMATCH,
            imp_uid=payment.imp_uid,
            merchant_uid=payment.merchant_uid,
            message=f"refund #{refund.id} of {refund.amount} {refund.currency} cannot be matched at PortOne",
            db_value=before + refund.amount,
            portone_value=fetched.cancel_amount,
        )
    audit.record(
        session, actor=actor, action="refund.settled", target=payment.imp_uid, refund_id=refund.id, status=refund.status
    )


def mark_attempt(
    refund: Refund,
    status: RefundStatus,
    *,
    cancellation_id: str | None = None,
    refunded_total: Decimal | None = None,
    error: str | None = None,
    error_code: object = None,
) -> None:
    """Record an attempt's outcome (an UNKNOWN one stays open, to be asked again)."""
    refund.status = status
    refund.portone_cancellation_id = cancellation_id or refund.portone_cancellation_id
    refund.refunded_total = refunded_total
    refund.error_message = error
    refund.error_code = None if error_code is None else str(error_code)
    if status != RefundStatus.UNKNOWN:
        refund.completed_at = utcnow()


def settle_open_attempts(rt: Runtime, *, imp_uid: str, actor: str = "system") -> int:
    """Settle this payment's pending or unknown attempts by asking PortOne; returns how many.

    The caller must hold the payment's lease (an attempt in flight would look unapplied);
    from outside a refund, use `settle_with_lease`."""
    with rt.db.read() as session:
        open_ids = session.scalars(
            select(Refund.id)
            .join(Payment)
            .where(Payment.imp_uid == imp_uid, Refund.status.in_([RefundStatus.PENDING, RefundStatus.UNKNOWN]))
        ).all()
    if not open_ids:
        return 0
    fetched = rt.gateway.get_payment(imp_uid)
    with rt.db.write() as session:
        requested = False
        for refund_id in open_ids:
            refund = session.get_one(Refund, refund_id)
            settle_from_portone(
                session,
                refund,
                fetched,
                actor=actor,
                grace_seconds=rt.settings.refund_unknown_grace_seconds,
                alert_minutes=rt.settings.refund_requested_alert_minutes,
            )
            requested = requested or refund.error_code == PENDING_AT_PORTONE
        if not requested:
            resolve_open(
                session,
                kind=AlertKind.REFUND_CANCEL_OVERDUE,
                imp_uid=imp_uid,
                note="PortOne now shows how the REQUESTED cancel ended; the refund attempt is settled",
                actor=actor,
            )
        apply_payment(session, fetched, source="refund")
    return len(open_ids)


def settle_with_lease(rt: Runtime, *, imp_uid: str, actor: str = "system") -> int:
    """Settle open attempts once no refund of this payment is in flight (takes the lease)."""
    with rt.db.read() as session:
        payment_id = session.scalar(select(Payment.id).where(Payment.imp_uid == imp_uid))
    if payment_id is None:
        return 0
    with payment_lease(rt, payment_id):
        return settle_open_attempts(rt, imp_uid=imp_uid, actor=actor)


def alert_overdue_requests(rt: Runtime, *, actor: str = "system") -> int:
    """Find cancels accepted as REQUESTED that are past `refund_requested_alert_minutes`, ask
    PortOne about each (settling those it shows finished) and keep an alert open for every
    payment still waiting; returns how many payments that is. Run after every reconciliation,
    so an attempt nobody touches still reaches ops."""
    minutes = rt.settings.refund_requested_alert_minutes
    cutoff = utcnow() - timedelta(minutes=minutes)
    stuck = (Refund.status == RefundStatus.UNKNOWN) & (Refund.error_code == PENDING_AT_PORTONE)
    with rt.db.read() as session:
        imp_uids = session.scalars(
            select(Payment.imp_uid).join(Refund).where(stuck, Refund.created_at <= cutoff).distinct()
        ).all()
    waiting = 0
    for imp_uid in imp_uids:
        try:
            settle_with_lease(rt, imp_uid=imp_uid, actor=actor)
        except (GatewayError, Conflict):
            pass  # PortOne or the lease unavailable now: the alert is raised from our record alone
        with rt.db.write() as session:
            left = session.scalars(
                select(Refund).join(Payment).where(Payment.imp_uid == imp_uid, stuck, Refund.created_at <= cutoff)
            ).all()
            for refund in left:
                _alert_overdue(session, refund, minutes)
            waiting += bool(left)
    return waiting


def fail_requested(rt: Runtime, *, imp_uid: str, actor: str, note: str) -> list[int]:
    """An operator ends this payment's cancels accepted as REQUESTED and overdue as failed, having
    learnt (from the PG, say) that they will not happen; returns the refund ids marked.

    PortOne is asked first, under the lease: an attempt it shows finished is settled from its
    record instead. Raises GatewayError when PortOne cannot be asked (nothing changes then)."""
    with rt.db.read() as session:
        payment_id = session.scalar(select(Payment.id).where(Payment.imp_uid == imp_uid))
    if payment_id is None:
        raise NotFound(f"no payment {imp_uid!r} in our records")
    minutes = rt.settings.refund_requested_alert_minutes
    with payment_lease(rt, payment_id):
        settle_open_attempts(rt, imp_uid=imp_uid, actor=actor)
        with rt.db.write() as session:
            attempts = session.scalars(
                select(Refund).where(
                    Refund.payment_id == payment_id,
                    Refund.status == RefundStatus.UNKNOWN,
                    Refund.error_code == PENDING_AT_PORTONE,
                )
            ).all()
            marked = []
            for refund in attempts:
                if not _overdue(refund, minutes):
                    continue
                cancellation_id = refund.portone_cancellation_id
                mark_attempt(
                    refund,
                    RefundStatus.FAILED,
                    error=f"marked failed by {actor}: PortOne showed no outcome of its REQUESTED cancel "
                    f"(cancellation {cancellation_id or 'without an id'}) within {minutes:g} min. Note: {note}",
                )
                # Should PortOne finish that cancel after all, its cancellation must not look like this
                # failed attempt's: unclaimed, it is recorded as a refund PortOne made (sync).
                refund.portone_cancellation_id = None
                audit.record(
                    session,
                    actor=actor,
                    action="refund.marked_failed",
                    target=imp_uid,
                    refund_id=refund.id,
                    amount=refund.amount,
                    cancellation_id=cancellation_id,
                    note=note,
                )
                marked.append(refund.id)
    return marked
