"""Payment verification: whatever told us about a payment, PortOne is asked, and its answer is
compared with OUR order (never with an amount a browser or webhook sent).

A payment whose amount or currency differs from its order is cancelled at PortOne, alerted and
never shown as paid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from services.alerts.store import AlertKind, raise_alert
from services.audit import trail as audit
from services.core.errors import (
    ForgeryDetected,
    GatewayNotFound,
    InvalidRequest,
    NotFound,
    NotRefundable,
    RefundAccountRequired,
)
from services.core.models import Order, RefundStatus
from services.payments.sync import Applied, apply_payment, load_for_apply
from services.portone.types import GatewayPayment, PortOneStatus
from services.reconciliation.realtime import check_recorded, check_recorded_many
from services.refunds.engine import refund
from services.runtime import Runtime

RACE_RETRIES = 3
FORGERY_ACTOR = "system:forgery-guard"
FORGERY_REASON = "결제 금액 위변조 의심: 주문 금액과 불일치 (payment amount differs from the order)"


@dataclass(frozen=True)
class Verification:
    imp_uid: str
    merchant_uid: str
    status: PortOneStatus
    amount: Decimal
    cancel_amount: Decimal
    currency: str
    paid_at: datetime | None
    has_order: bool
    forgery: bool
    fail_reason: str | None


def _verification(fetched: GatewayPayment, *, has_order: bool, forgery: bool) -> Verification:
    return Verification(
        imp_uid=fetched.imp_uid,
        merchant_uid=fetched.merchant_uid,
        status=fetched.status,
        amount=fetched.amount,
        cancel_amount=fetched.cancel_amount,
        currency=fetched.currency,
        paid_at=fetched.paid_at,
        has_order=has_order,
        forgery=forgery,
        fail_reason=fetched.fail_reason,
    )


def _judge(fetched: GatewayPayment, applied: Applied) -> tuple[bool, bool]:
    """What a just-recorded payment shows about its order: (has_order, forgery).

    The alerts it calls for (PAYMENT_WITHOUT_ORDER, AMOUNT_MISMATCH, UNSUPPORTED_CURRENCY) are the
    rules' (`check_recorded`, run in the same transaction): one writer for every alert kind.
    """
    if applied.order is None:
        return False, False
    forgery = not applied.matches_order and fetched.status in (PortOneStatus.PAID, PortOneStatus.CANCELLED)
    return True, forgery


def _record(rt: Runtime, fetched: GatewayPayment, source: str) -> tuple[bool, bool]:
    """Apply PortOne's record and raise what it shows; returns (has_order, forgery)."""
    with rt.db.write() as session:
        applied = apply_payment(session, fetched, source=source)
        check_recorded(session, fetched, applied, source=source, settings=rt.settings)
        return _judge(fetched, applied)


def _record_racing(rt: Runtime, fetched: GatewayPayment, source: str) -> tuple[bool, bool]:
    """A /complete and webhooks for a new payment may insert it at the same moment (PostgreSQL):
    the loser of the unique-key race simply applies again onto the winner's row."""
    for _ in range(RACE_RETRIES - 1):
        try:
            return _record(rt, fetched, source)
        except IntegrityError:
            continue
    return _record(rt, fetched, source)


def record_many(rt: Runtime, fetched: Sequence[GatewayPayment], source: str) -> dict[str, tuple[bool, bool]]:
    """Record several payments fetched together in one transaction (webhook bursts).

    The rows are loaded and locked in bulk, orders before payments as in `apply_payment`. If a
    concurrent writer wins a unique-key race, the batch is rolled back and recorded one by one.
    Returns (has_order, forgery) per imp_uid.
    """
    latest = {payment.imp_uid: payment for payment in fetched}
    try:
        with rt.db.write() as session:
            rows = load_for_apply(session, list(latest.values()))
            recorded = [
                (payment, apply_payment(session, payment, source=source, rows=rows)) for payment in latest.values()
            ]
            rows.insert_snapshots(session)
            check_recorded_many(session, recorded, source=source, settings=rt.settings)
            return {payment.imp_uid: _judge(payment, applied) for payment, applied in recorded}
    except IntegrityError:
        return {imp_uid: _record_racing(rt, payment, source) for imp_uid, payment in latest.items()}


def cancel_if_forged(rt: Runtime, fetched: GatewayPayment, *, forgery: bool) -> GatewayPayment:
    """A paid forgery is cancelled once; returns PortOne's record afterwards."""
    if forgery and fetched.status == PortOneStatus.PAID:
        return _cancel_forgery(rt, fetched)
    return fetched


def verify_payment(rt: Runtime, *, imp_uid: str, source: str, expected_merchant_uid: str | None = None) -> Verification:
    """Fetch one payment from PortOne, record it, and act on a mismatch with its order."""
    try:
        fetched = rt.gateway.get_payment(imp_uid)
    except GatewayNotFound:
        raise NotFound(f"PortOne has no payment {imp_uid!r}") from None
    if expected_merchant_uid is not None and fetched.merchant_uid != expected_merchant_uid:
        raise InvalidRequest(f"payment {imp_uid!r} belongs to another order, not {expected_merchant_uid!r}")
    has_order, forgery = _record_racing(rt, fetched, source)
    return verification_after_record(rt, fetched, has_order=has_order, forgery=forgery)


def verification_after_record(rt: Runtime, fetched: GatewayPayment, *, has_order: bool, forgery: bool) -> Verification:
    if not has_order:
        return _verification(fetched, has_order=False, forgery=False)
    return _verification(cancel_if_forged(rt, fetched, forgery=forgery), has_order=True, forgery=forgery)


def _cancel_forgery(rt: Runtime, fetched: GatewayPayment) -> GatewayPayment:
    """Cancel the whole remainder once (the idempotency key makes repeats replay, not resend). An
    attempt that ended without applying anything (failed, refused) is tried again under a new key
    on the next delivery, so a forged payment is never left paid by one bad moment. A virtual-account
    payment cannot be cancelled without the customer's account: alerted instead."""
    key = f"forgery:{fetched.imp_uid}"
    try:
        while True:  # each earlier attempt that applied nothing names the next key; one new send at most
            result = refund(
                rt, imp_uid=fetched.imp_uid, amount=None, reason=FORGERY_REASON, actor=FORGERY_ACTOR,
                idempotency_key=key, source="forgery",
            )  # fmt: skip
            if not (result.replayed and result.status in (RefundStatus.FAILED, RefundStatus.REJECTED)):
                break
            key = f"forgery:{fetched.imp_uid}:after-{result.refund_id}"
    except (RefundAccountRequired, NotRefundable) as exc:
        if isinstance(exc, NotRefundable) and exc.portone_status != str(PortOneStatus.PAID):
            raise
        _alert_forgery_needs_account(rt, fetched, exc)
        return fetched
    with rt.db.write() as session:
        audit.record(
            session,
            actor=FORGERY_ACTOR,
            action="payment.forgery_cancelled",
            target=fetched.imp_uid,
            refund_status=str(result.status),
        )
    after = rt.gateway.get_payment(fetched.imp_uid)
    _record_racing(rt, after, "forgery")  # the rules refresh the AMOUNT_MISMATCH alert: now cancelled
    return after


def _alert_forgery_needs_account(rt: Runtime, fetched: GatewayPayment, cause: Exception) -> None:
    with rt.db.write() as session:
        raise_alert(
            session,
            kind=AlertKind.FORGERY_REFUND_ACCOUNT_NEEDED,
            imp_uid=fetched.imp_uid,
            merchant_uid=fetched.merchant_uid,
            message=f"forged payment paid by virtual account ({fetched.pg_provider}): it could not be cancelled "
            "automatically. PortOne refunds a virtual account only into the customer's account: get the "
            f"customer's bank, account holder and account number, then refund it from the refunds page. ({cause})",
            portone_value=f"{fetched.amount} {fetched.currency}",
        )
        audit.record(
            session,
            actor=FORGERY_ACTOR,
            action="payment.forgery_not_cancelled",
            target=fetched.imp_uid,
            reason="refund account needed" if isinstance(cause, RefundAccountRequired) else str(cause),
        )


def complete(rt: Runtime, *, imp_uid: str, merchant_uid: str) -> Verification:
    """The customer's app says it paid: verify with PortOne against the order.

    Raises NotFound (unknown order or payment), InvalidRequest (the payment belongs to another
    order), ForgeryDetected; otherwise returns the verification, whose status may be other than
    paid (ready, failed, cancelled) for the caller to report.
    """
    imp_uid, merchant_uid = (imp_uid or "").strip(), (merchant_uid or "").strip()
    if not imp_uid or not merchant_uid:
        raise InvalidRequest("imp_uid and merchant_uid are required")
    with rt.db.read() as session:
        order = session.scalar(select(Order).where(Order.merchant_uid == merchant_uid))
        if order is None:
            raise NotFound(f"no order {merchant_uid!r}")
    result = verify_payment(rt, imp_uid=imp_uid, source="complete", expected_merchant_uid=merchant_uid)
    if result.forgery and result.status == PortOneStatus.PAID:
        raise ForgeryDetected(
            f"payment {imp_uid} does not match order {merchant_uid}; paid by virtual account, it could not be "
            "cancelled automatically: the customer's refund account is needed (an alert was raised)"
        )
    if result.forgery:
        raise ForgeryDetected(f"payment {imp_uid} does not match order {merchant_uid}; it was cancelled")
    return result
