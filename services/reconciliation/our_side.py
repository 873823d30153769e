"""Our side of a reconciliation, read in bulk: payments with their orders, refund attempts and
webhook deliveries, as the plain facts the rules judge (services.reconciliation.facts).

A run reads hundreds of thousands of rows: the queries are few and wide, and values are read
from the driver as they come (see `_raw`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, literal, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.types import NullType

from services.core.models import Alert, AlertStatus, Order, Payment, PurgeHorizon, Refund, WebhookEvent, utcnow
from services.core.sequences import SQL_IN_CHUNK, chunked
from services.reconciliation.facts import RULE_KINDS, DeliveryResult, OurDelivery, OurOrder, OurPayment, OurRefund

WEBHOOK_LOG = "webhook_events"  # its PurgeHorizon row


class OurRecord:
    """One payment of ours with what the rules need beside it."""

    __slots__ = ("deliveries", "newer", "order", "payment", "refunds")

    def __init__(self, payment: OurPayment, order: OurOrder | None, newer: bool) -> None:
        self.payment = payment
        self.order = order
        self.newer = newer  # synced from PortOne after the answer we compare it with
        self.refunds: list[OurRefund] = []
        self.deliveries: list[OurDelivery] = []


def _raw(column: Any) -> Any:
    """The driver's own value, without SQLAlchemy's per-row conversion (`_db_decimal`/`_db_moment` below
    do it, several times faster on SQLite: this is the hot loop of a 100k-payment run)."""
    return type_coerce(column, NullType())


def _db_decimal(value: Any) -> Decimal:
    """A money column's raw driver value (Decimal, int, float or text) as an exact Decimal."""
    if isinstance(value, Decimal):
        return value
    return Decimal(value) if isinstance(value, int) else Decimal(str(value))


def _db_moment(value: Any) -> datetime | None:
    """A timestamp column's raw driver value (datetime or SQLite's text) as an aware UTC datetime."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def load_ours(session: Session, condition: ColumnElement[bool], newer_than: datetime | None) -> dict[str, OurRecord]:
    """Our payments matching `condition`, with their orders, refund attempts and webhook deliveries
    (the latest verified one, and every rejected one)."""
    db = session.connection()
    newer = literal(False) if newer_than is None else Payment.synced_at > newer_than
    rows = db.execute(
        select(
            Payment.id,
            Payment.imp_uid,
            Payment.merchant_uid,
            Payment.status,
            _raw(Payment.amount),
            _raw(Payment.cancel_amount),
            Payment.currency,
            case((newer, 1), else_=0),
            Order.merchant_uid,
            _raw(Order.amount),
            Order.currency,
        )
        .outerjoin(Order, Order.id == Payment.order_id)  # by primary key: the cheapest join
        .where(condition)
    ).all()
    found: dict[str, OurRecord] = {}
    by_id: dict[int, OurRecord] = {}
    unlinked: list[str] = []
    for pid, imp_uid, merchant_uid, status, amount, cancel, currency, is_newer, o_uid, o_amount, o_cur in rows:
        found[imp_uid] = by_id[pid] = OurRecord(
            OurPayment(imp_uid, merchant_uid, status, _db_decimal(amount), _db_decimal(cancel), currency, None),
            None if o_uid is None else OurOrder(o_uid, _db_decimal(o_amount), o_cur),
            is_newer == 1,
        )
        if o_uid is None:
            unlinked.append(merchant_uid)
    if not found:
        return found
    if unlinked:  # rows not linked to an order (rare): an order of that merchant_uid may still exist
        orders = load_orders(session, unlinked)
        for ours in found.values():
            if ours.order is None:
                ours.order = orders.get(ours.payment.merchant_uid)
    refunds = db.execute(
        select(
            Refund.payment_id,
            Refund.id,
            _raw(Refund.amount),
            Refund.status,
            Refund.source,
            Refund.portone_cancellation_id,
            _raw(Refund.created_at),
        )
        .join(Payment, Payment.id == Refund.payment_id)
        .where(condition)
    ).all()
    for payment_id, refund_id, amount, status, source, cancellation_id, created_at in refunds:
        created = _db_moment(created_at) or utcnow()
        by_id[payment_id].refunds.append(
            OurRefund(refund_id, _db_decimal(amount), status, source, cancellation_id, created)
        )
    latest: dict[str, Any] = {}  # the newest verified delivery per payment is all the rules need
    deliveries = db.execute(
        select(
            WebhookEvent.imp_uid,
            _raw(WebhookEvent.received_at),
            WebhookEvent.result,
            case((WebhookEvent.result == DeliveryResult.REJECTED, WebhookEvent.detail), else_=None),
        )
        .join(Payment, Payment.imp_uid == WebhookEvent.imp_uid)
        .where(condition, WebhookEvent.result.in_([DeliveryResult.PROCESSED, DeliveryResult.REJECTED]))
    ).all()
    for delivered_uid, received_at, result, detail in deliveries:
        if result == DeliveryResult.PROCESSED:
            known = latest.get(delivered_uid)
            if known is None or received_at > known:
                latest[delivered_uid] = received_at
        else:
            moment = _db_moment(received_at)
            if moment is not None:
                found[delivered_uid].deliveries.append(OurDelivery(moment, result, detail))
    for delivered_uid, received_at in latest.items():
        moment = _db_moment(received_at)
        if moment is not None:
            found[delivered_uid].deliveries.append(OurDelivery(moment, DeliveryResult.PROCESSED))
    return found


def load_ours_by_uid(session: Session, imp_uids: Sequence[str], newer_than: datetime | None) -> dict[str, OurRecord]:
    found: dict[str, OurRecord] = {}
    for chunk in chunked(imp_uids, SQL_IN_CHUNK):
        found.update(load_ours(session, Payment.imp_uid.in_(chunk), newer_than))
    return found


def load_orders(session: Session, merchant_uids: Sequence[str]) -> dict[str, OurOrder]:
    found: dict[str, OurOrder] = {}
    for chunk in chunked(merchant_uids, SQL_IN_CHUNK):
        for uid, amount, currency in session.execute(
            select(Order.merchant_uid, Order.amount, Order.currency).where(Order.merchant_uid.in_(chunk))
        ):
            found[uid] = OurOrder(uid, amount, currency)
    return found


NONE_OPEN: frozenset[str] = frozenset()  # a payment with no open alert: its agreements resolve nothing


def load_open_kinds(session: Session) -> dict[str | None, set[str]]:
    """The kinds of open alerts per payment (for judging: an agreement only matters where one is open)."""
    found: dict[str | None, set[str]] = {}
    rows = session.execute(
        select(Alert.imp_uid, Alert.kind).where(
            Alert.status != AlertStatus.RESOLVED, Alert.kind.in_([str(k) for k in RULE_KINDS])
        )
    )
    for imp_uid, kind in rows:
        found.setdefault(imp_uid, set()).add(kind)
    return found


def load_deliveries(session: Session, imp_uids: Sequence[str]) -> dict[str, list[OurDelivery]]:
    """The verified and rejected webhook deliveries naming these payments."""
    found: dict[str, list[OurDelivery]] = {}
    for chunk in chunked(list(imp_uids), SQL_IN_CHUNK):
        rows = session.execute(
            select(WebhookEvent.imp_uid, WebhookEvent.received_at, WebhookEvent.result, WebhookEvent.detail).where(
                WebhookEvent.imp_uid.in_(chunk),
                WebhookEvent.result.in_([DeliveryResult.PROCESSED, DeliveryResult.REJECTED]),
            )
        )
        for imp_uid, received_at, outcome, text in rows:
            if imp_uid is not None:
                found.setdefault(imp_uid, []).append(OurDelivery(received_at, outcome, text))
    return found


def webhook_log_purged_before(session: Session) -> datetime | None:
    """Every webhook delivery received before this may have been purged (services.system.retention);
    None: never purged. Read it after the deliveries: the purge records it before it deletes."""
    return session.scalar(select(PurgeHorizon.purged_before).where(PurgeHorizon.table_name == WEBHOOK_LOG))
