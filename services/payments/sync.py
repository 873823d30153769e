"""Apply what PortOne says about a payment to our records: the one place a payment row changes.

Everything that learns a payment's state (complete, webhook, refund, reconciliation) fetches it
from PortOne and hands it here. Applying is idempotent, and a stale fetch (one that finished after
a newer one) never rolls a record back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session, selectinload

from services.core.models import Order, OrderStatus, Payment, PaymentSnapshot, Refund, RefundStatus, fit, utcnow
from services.portone.types import GatewayPayment, PortOneStatus

# How far along a payment is; PortOne only ever moves a payment forward.
_STATUS_RANK = {
    PortOneStatus.UNKNOWN: -1,
    PortOneStatus.READY: 0,
    PortOneStatus.PAID: 1,
    PortOneStatus.FAILED: 1,
    PortOneStatus.CANCELLED: 2,
}


@dataclass(frozen=True)
class Applied:
    payment: Payment
    order: Order | None
    matches_order: bool  # amount and currency equal the order's
    changed: bool


def _is_stale(payment: Payment, fetched: GatewayPayment) -> bool:
    current = (payment.cancel_amount, _STATUS_RANK[PortOneStatus.parse(payment.status)])
    incoming = (fetched.cancel_amount, _STATUS_RANK[fetched.status])
    return incoming < current


_PAYMENT_COLUMNS = Payment.__table__.c


def _copy_fields(payment: Payment, fetched: GatewayPayment) -> bool:
    values = {
        "merchant_uid": fetched.merchant_uid,
        "status": str(fetched.status),
        "amount": fetched.amount,
        "cancel_amount": fetched.cancel_amount,
        "currency": fetched.currency,
        "name": fetched.name,
        "pg_provider": fetched.pg_provider,
        "pay_method": fetched.pay_method,
        "card_name": fetched.card_name,
        "card_number": fetched.card_number,
        "buyer_name": fetched.buyer_name,
        "buyer_email": fetched.buyer_email,
        "buyer_tel": fetched.buyer_tel,
        "receipt_url": fetched.receipt_url,
        "fail_reason": fetched.fail_reason,
        "started_at": fetched.started_at,
        "paid_at": fetched.paid_at,
        "failed_at": fetched.failed_at,
        "cancelled_at": fetched.cancelled_at,
    }
    changed = False
    for key, value in values.items():
        value = fit(_PAYMENT_COLUMNS[key], value)  # the raw payload keeps it whole
        if getattr(payment, key) != value:
            setattr(payment, key, value)
            changed = True
    payment.raw = dict(fetched.raw)
    payment.synced_at = utcnow()
    return changed


def order_status_for(payment: Payment, matches_order: bool) -> OrderStatus:
    if not matches_order and payment.status in (PortOneStatus.PAID, PortOneStatus.CANCELLED):
        return OrderStatus.FORGERY
    if payment.status == PortOneStatus.READY:
        # `ready` is also a payment window opened and left (sdk/ko/v1-sdk/javascript-sdk/payrt.md;
        # V2: READY): only an issued virtual account waits for a deposit.
        return OrderStatus.AWAITING_DEPOSIT if payment.pay_method == "vbank" else OrderStatus.PENDING
    if payment.status == PortOneStatus.FAILED:
        return OrderStatus.FAILED
    if payment.status == PortOneStatus.CANCELLED:
        return OrderStatus.REFUNDED
    if payment.status == PortOneStatus.PAID:
        return OrderStatus.PARTIALLY_REFUNDED if payment.cancel_amount > 0 else OrderStatus.PAID
    return OrderStatus(OrderStatus.PENDING)


# Where money moved for the order: an attempt that moved none (ready, failed) never leaves these.
_SETTLED_ORDER = frozenset(
    {OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.FORGERY}
)


def _paid_in_full_elsewhere(order: Order, payment: Payment) -> bool:
    """Whether another payment of the order is paid, untouched by refunds and matching the order."""
    return any(
        other is not payment
        and other.status == PortOneStatus.PAID
        and other.cancel_amount == 0
        and other.amount == order.amount
        and other.currency == order.currency
        for other in order.payments
    )


def next_order_status(current: str, proposed: OrderStatus) -> OrderStatus:
    """The order's status once one of its payments says `proposed`.

    An order has many attempts (each window opened is a payment at PortOne): another attempt's
    `ready` or `failed`, however late it is learned, never moves an order back from paid or
    refunded; a failure only fails an order nothing else has moved; a window left open (PENDING)
    moves nothing.
    """
    now = OrderStatus(current)
    if proposed in (OrderStatus.PAID, OrderStatus.PARTIALLY_REFUNDED, OrderStatus.REFUNDED, OrderStatus.FORGERY):
        return proposed
    if now in _SETTLED_ORDER or proposed == OrderStatus.PENDING:
        return now
    if proposed == OrderStatus.FAILED and now != OrderStatus.PENDING:
        return now
    return proposed


def _record_portone_cancellations(session: Session, payment: Payment, fetched: GatewayPayment) -> None:
    """Give every cancellation PortOne knows of (e.g. made in its console) a refund row.

    A cancellation whose amount matches one of our attempts still in flight is left for that
    attempt to claim, so a webhook racing our own refund never records it twice.
    """
    known = {r.portone_cancellation_id for r in payment.refunds if r.portone_cancellation_id}
    in_flight = [r.amount for r in payment.refunds if r.status in (RefundStatus.PENDING, RefundStatus.UNKNOWN)]
    for cancellation in fetched.cancellations:
        if not cancellation.cancellation_id or cancellation.cancellation_id in known:
            continue
        if cancellation.amount in in_flight:
            in_flight.remove(cancellation.amount)
            continue
        session.add(
            Refund(
                payment=payment,
                amount=cancellation.amount,
                currency=fetched.currency,
                reason=fit(Refund.__table__.c.reason, cancellation.reason or ""),
                requested_by="PortOne",
                source="portone",
                status=RefundStatus.SUCCEEDED,
                portone_cancellation_id=cancellation.cancellation_id,
                created_at=cancellation.cancelled_at or utcnow(),
                completed_at=cancellation.cancelled_at or utcnow(),
            )
        )


def lock_payment(session: Session, imp_uid: str) -> Payment | None:
    """Load a payment row for update (a row lock on PostgreSQL; SQLite writers are serialised)."""
    return session.scalar(select(Payment).where(Payment.imp_uid == imp_uid).with_for_update())


@dataclass
class LockedRows:
    """Orders and payments loaded and locked together for a batch of `apply_payment` calls."""

    orders: dict[str, Order]
    payments: dict[str, Payment]
    snapshots: list[dict[str, Any]] = field(default_factory=list)  # inserted in one statement

    def insert_snapshots(self, session: Session) -> None:
        if self.snapshots:
            session.execute(insert(PaymentSnapshot), self.snapshots)
            self.snapshots.clear()


def load_for_apply(session: Session, fetched: Sequence[GatewayPayment]) -> LockedRows:
    """Lock every order, then every payment, each in key order (the order `apply_payment` uses)."""
    merchant_uids = sorted({payment.merchant_uid for payment in fetched})
    imp_uids = sorted({payment.imp_uid for payment in fetched})
    orders = session.scalars(
        select(Order)
        .where(Order.merchant_uid.in_(merchant_uids))
        .order_by(Order.merchant_uid)
        .options(selectinload(Order.payments))  # attaching a new payment appends to it
        .with_for_update()
    )
    payments = session.scalars(
        select(Payment)
        .where(Payment.imp_uid.in_(imp_uids))
        .order_by(Payment.imp_uid)
        .options(selectinload(Payment.refunds))
        .with_for_update()
    )
    return LockedRows(
        orders={order.merchant_uid: order for order in orders},
        payments={payment.imp_uid: payment for payment in payments},
    )


def apply_payment(session: Session, fetched: GatewayPayment, *, source: str, rows: LockedRows | None = None) -> Applied:
    """Record PortOne's view of one payment; the caller's transaction commits it.

    `rows` (from `load_for_apply`) spares the two look-ups when many payments are applied at once.
    """
    if rows is None:
        # Lock the order first: every writer of this payment then queues on the same row, in the
        # same order, so PostgreSQL never sees two of them deadlock over the order and the payment.
        order = session.scalar(select(Order).where(Order.merchant_uid == fetched.merchant_uid).with_for_update())
        payment = lock_payment(session, fetched.imp_uid)
    else:
        order = rows.orders.get(fetched.merchant_uid)
        payment = rows.payments.get(fetched.imp_uid)
    snapshot = {"imp_uid": fetched.imp_uid, "source": source, "body": dict(fetched.raw), "fetched_at": utcnow()}
    if rows is None:
        session.add(PaymentSnapshot(**snapshot))
    else:
        rows.snapshots.append(snapshot)
    changed = False
    if payment is None:
        payment = Payment(imp_uid=fetched.imp_uid, order=order, refunds=[])  # none yet: spares a lazy load
        session.add(payment)
        if rows is not None:
            rows.payments[fetched.imp_uid] = payment
        changed = _copy_fields(payment, fetched) or True
    elif not _is_stale(payment, fetched):
        changed = _copy_fields(payment, fetched)
        if order is not None and payment.order_id is None:
            payment.order = order
    matches = order is not None and payment.amount == order.amount and payment.currency == order.currency
    payment.verified = matches
    _record_portone_cancellations(session, payment, fetched)
    if order is not None:
        proposed = order_status_for(payment, matches)
        if proposed in (OrderStatus.REFUNDED, OrderStatus.PARTIALLY_REFUNDED) and _paid_in_full_elsewhere(
            order, payment
        ):
            proposed = OrderStatus.PAID  # a duplicate payment refunded: the order is still paid by the other
        order.status = next_order_status(order.status, proposed)
    if rows is None:
        session.flush()  # a batch flushes once, when the batch is done
    return Applied(payment=payment, order=order, matches_order=matches, changed=changed)
