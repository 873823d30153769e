"""One payment in full: our record beside PortOne's live record, what differs, and its history.

PortOne is asked live (read-only: nothing is recorded here; reconciliation does that). If it
cannot be reached, the detail still carries our record and says why PortOne's is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.auth.access import Actor, Permission, require, sees_personal_data
from services.core.errors import GatewayError, GatewayNotFound, InvalidRequest, NotFound
from services.core.masking import mask_email, mask_phone
from services.core.models import Alert, AuditEntry, Order, Payment, Refund, RefundRequest, WebhookEvent
from services.core.money import normalize
from services.payments.search import payment_state
from services.portone import banks
from services.portone.types import GatewayPayment, PortOneStatus
from services.refunds import full_only as partial_refunds
from services.runtime import Runtime

HISTORY_LIMIT = 200
MATCH_LIMIT = 20
# Fields compared between our record and PortOne's, in display order.
COMPARED_FIELDS = (
    "status",
    "amount",
    "cancel_amount",
    "currency",
    "merchant_uid",
    "pg_provider",
    "pay_method",
    "card_name",
    "card_number",
    "buyer_name",
    "buyer_email",
    "buyer_tel",
    "receipt_url",
    "fail_reason",
    "started_at",
    "paid_at",
    "failed_at",
    "cancelled_at",
    "cancellations",
)
_PERSONAL = {"buyer_email": mask_email, "buyer_tel": mask_phone}
_ORDER = ("order_created", "order_prepared", "payment_started", "payment_paid", "payment_failed", "webhook")
_RANK = {kind: rank for rank, kind in enumerate(_ORDER)}


@dataclass(frozen=True)
class FieldComparison:
    field: str
    ours: Any
    portone: Any
    differs: bool


@dataclass(frozen=True)
class TimelineEvent:
    at: datetime
    kind: str  # order_created, order_prepared, payment_started, payment_paid, payment_failed,
    # payment_cancelled, webhook, refund, approval_requested, approval_decided, alert, audit
    outcome: str | None = None  # a status word: webhook result, refund status, alert severity...
    actor: str | None = None
    summary: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundLine:
    id: int
    created_at: datetime
    completed_at: datetime | None
    amount: Decimal
    currency: str
    reason: str
    requested_by: str
    source: str
    status: str
    cancellation_id: str | None
    error_message: str | None
    receipt_url: str | None
    refund_account: str | None = None  # a virtual-account refund's: bank, masked number, holder


@dataclass(frozen=True)
class PaymentMatch:
    imp_uid: str
    merchant_uid: str
    status: str
    amount: Decimal
    currency: str
    started_at: datetime | None


@dataclass(frozen=True)
class PaymentDetail:
    imp_uid: str
    merchant_uid: str
    currency: str
    state: str
    ours: dict[str, Any]
    portone: dict[str, Any] | None  # None: PortOne could not be asked (see portone_error)
    portone_error: str | None  # "unavailable" | "not_found" | "error"
    portone_message: str | None
    comparisons: list[FieldComparison]
    timeline: list[TimelineEvent]
    refunds: list[RefundLine]
    receipt_url: str | None
    cancel_receipts: list[tuple[str, Decimal, str]]  # (cancellation id, amount, receipt url)
    refundable: Decimal
    refundable_from_portone: bool
    masked: bool
    raw: dict[str, Any] | None  # our stored PortOne payload; None for masked viewers
    # Why PortOne refunds it in full only ("escrow", "phone"; services.refunds.full_only), else None.
    full_only: str | None = None

    @property
    def differences(self) -> list[FieldComparison]:
        return [c for c in self.comparisons if c.differs]


def find_payments(rt: Runtime, *, actor: Actor, text: str) -> list[PaymentMatch]:
    """Payments whose imp_uid or merchant_uid is exactly `text`, newest first."""
    require(actor, Permission.VIEW)
    text = (text or "").strip()
    if not text:
        raise InvalidRequest("enter an imp_uid or merchant_uid")
    with rt.db.read() as session:
        rows = session.execute(
            select(
                Payment.imp_uid,
                Payment.merchant_uid,
                Payment.status,
                Payment.amount,
                Payment.currency,
                Payment.started_at,
            )
            .where(or_(Payment.imp_uid == text, Payment.merchant_uid == text))
            .order_by(Payment.id.desc())
            .limit(MATCH_LIMIT)
        ).all()
    return [
        PaymentMatch(r.imp_uid, r.merchant_uid, r.status, normalize(r.amount, r.currency), r.currency, r.started_at)
        for r in rows
    ]


def _ours(payment: Payment) -> dict[str, Any]:
    values = {name: getattr(payment, name) for name in COMPARED_FIELDS if name != "cancellations"}
    values["amount"] = normalize(payment.amount, payment.currency)
    values["cancel_amount"] = normalize(payment.cancel_amount, payment.currency)
    values["cancellations"] = sum(1 for r in payment.refunds if r.status == "succeeded")
    values["verified"] = payment.verified
    values["synced_at"] = payment.synced_at
    return values


def _theirs(fetched: GatewayPayment) -> dict[str, Any]:
    values = {name: getattr(fetched, name) for name in COMPARED_FIELDS if name != "cancellations"}
    values["status"] = str(fetched.status)
    values["cancellations"] = len(fetched.cancellations)
    return values


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a == b
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b
    return (a or None) == (b or None)


def _masked(values: dict[str, Any]) -> dict[str, Any]:
    return {name: _PERSONAL[name](value) if name in _PERSONAL else value for name, value in values.items()}


def _fetch_live(rt: Runtime, imp_uid: str) -> tuple[GatewayPayment | None, str | None, str | None]:
    try:
        return rt.gateway.get_payment(imp_uid), None, None
    except GatewayNotFound as exc:
        return None, "not_found", str(exc)
    except GatewayError as exc:
        return None, "unavailable" if exc.retryable else "error", str(exc)


def payment_detail(rt: Runtime, *, actor: Actor, imp_uid: str, live: bool = True) -> PaymentDetail:
    """Our record, PortOne's (live unless `live=False`), differences, timeline and refunds."""
    require(actor, Permission.VIEW)
    imp_uid = (imp_uid or "").strip()
    with rt.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        if payment is None:
            raise NotFound(f"no payment {imp_uid!r} in our records")
        ours = _ours(payment)
        refund_rows = list(payment.refunds)
        timeline = _timeline(session, payment)
        raw = dict(payment.raw) if payment.raw else None
        recorded_full_only = partial_refunds.of_record(
            raw=payment.raw, pay_method=payment.pay_method, pg_provider=payment.pg_provider
        )
        currency, merchant_uid = payment.currency, payment.merchant_uid
        state = str(payment_state(payment.status, payment.cancel_amount, payment.verified))
    fetched, error, message = _fetch_live(rt, imp_uid) if live else (None, None, None)
    theirs = _theirs(fetched) if fetched is not None else None
    comparisons = [
        FieldComparison(
            field=name,
            ours=ours.get(name),
            portone=None if theirs is None else theirs.get(name),
            differs=theirs is not None and not _same(ours.get(name), theirs.get(name)),
        )
        for name in COMPARED_FIELDS
    ]
    masked = not sees_personal_data(actor)
    if masked:
        comparisons = [
            FieldComparison(c.field, _PERSONAL[c.field](c.ours), _PERSONAL[c.field](c.portone), c.differs)
            if c.field in _PERSONAL
            else c
            for c in comparisons
        ]
    receipts = _cancel_receipts(fetched, raw, currency)
    by_cancellation = {cid: url for cid, _amount, url in receipts}
    return PaymentDetail(
        imp_uid=imp_uid,
        merchant_uid=merchant_uid,
        currency=currency,
        state=state,
        ours=_masked(ours) if masked else ours,
        portone=None if theirs is None else (_masked(theirs) if masked else theirs),
        portone_error=error,
        portone_message=message,
        comparisons=comparisons,
        timeline=timeline,
        refunds=[_refund_line(r, by_cancellation) for r in refund_rows],
        receipt_url=(fetched.receipt_url if fetched is not None else None) or ours.get("receipt_url"),
        cancel_receipts=receipts,
        refundable=_refundable(fetched, ours),
        refundable_from_portone=fetched is not None,
        masked=masked,
        raw=None if masked else raw,
        full_only=_full_only(fetched, recorded_full_only),
    )


def _full_only(fetched: GatewayPayment | None, recorded: partial_refunds.FullOnlyReason | None) -> str | None:
    reason = partial_refunds.of_gateway(fetched) if fetched is not None else recorded
    return None if reason is None else str(reason)


def _refundable(fetched: GatewayPayment | None, ours: dict[str, Any]) -> Decimal:
    """PortOne's amount − cancel amount (ours when PortOne is unreachable); only a paid payment."""
    if fetched is not None:
        return fetched.cancellable_amount if fetched.status == PortOneStatus.PAID else Decimal(0)
    return ours["amount"] - ours["cancel_amount"] if ours["status"] == PortOneStatus.PAID else Decimal(0)


def _cancel_receipts(
    fetched: GatewayPayment | None, raw: dict[str, Any] | None, currency: str
) -> list[tuple[str, Decimal, str]]:
    if fetched is not None:
        return [(c.cancellation_id, c.amount, c.receipt_url) for c in fetched.cancellations if c.receipt_url]
    found = []
    for entry in (raw or {}).get("cancel_history") or ():
        url = entry.get("receipt_url")
        if url:
            amount = normalize(Decimal(str(entry.get("amount") or 0)), currency)
            found.append((str(entry.get("cancellation_id") or ""), amount, str(url)))
    return found


def _refund_line(refund: Refund, receipts: dict[str, str]) -> RefundLine:
    return RefundLine(
        id=refund.id,
        created_at=refund.created_at,
        completed_at=refund.completed_at,
        amount=normalize(refund.amount, refund.currency),
        currency=refund.currency,
        reason=refund.reason,
        requested_by=refund.requested_by,
        source=refund.source,
        status=refund.status,
        cancellation_id=refund.portone_cancellation_id,
        error_message=refund.error_message,
        receipt_url=receipts.get(refund.portone_cancellation_id or ""),
        refund_account=_account_text(refund),
    )


def _account_text(refund: Refund) -> str | None:
    """Bank, masked number (all we store) and holder of a virtual-account refund."""
    if refund.refund_account_masked is None:
        return None
    bank = banks.BY_CODE.get(refund.refund_bank or "")
    return f"{bank.name_ko if bank else refund.refund_bank} {refund.refund_account_masked} ({refund.refund_holder})"


def _timeline(session: Session, payment: Payment) -> list[TimelineEvent]:
    events: list[TimelineEvent] = []
    order = payment.order or session.scalar(select(Order).where(Order.merchant_uid == payment.merchant_uid))
    if order is not None:
        money = f"{normalize(order.amount, order.currency)} {order.currency}"
        events.append(TimelineEvent(order.created_at, "order_created", summary=money))
        if order.prepared_at:
            events.append(TimelineEvent(order.prepared_at, "order_prepared", summary=money))
    for kind, moment, note in (
        ("payment_started", payment.started_at, payment.pay_method or ""),
        ("payment_paid", payment.paid_at, f"{normalize(payment.amount, payment.currency)} {payment.currency}"),
        ("payment_failed", payment.failed_at, payment.fail_reason or ""),
        ("payment_cancelled", payment.cancelled_at if payment.status == "cancelled" else None, ""),
    ):
        if moment is not None:
            events.append(TimelineEvent(moment, kind, summary=note))
    webhooks = session.scalars(
        select(WebhookEvent)
        .where(WebhookEvent.imp_uid == payment.imp_uid)
        .order_by(WebhookEvent.id.desc())
        .limit(HISTORY_LIMIT)
    )
    for hook in webhooks:
        events.append(
            TimelineEvent(
                hook.received_at,
                "webhook",
                outcome=hook.result,
                actor=hook.source_ip,
                summary=hook.claimed_status or "",
                detail={"verified": hook.verified, "detail": hook.detail},
            )
        )
    for refund in payment.refunds:
        events.append(
            TimelineEvent(
                refund.created_at,
                "refund",
                outcome=refund.status,
                actor=refund.requested_by,
                summary=f"{normalize(refund.amount, refund.currency)} {refund.currency} · {refund.reason}",
                detail={"source": refund.source, "error": refund.error_message, "refund_id": refund.id},
            )
        )
    requests = session.scalars(select(RefundRequest).where(RefundRequest.imp_uid == payment.imp_uid))
    for request in requests:
        amount = "—" if request.amount is None else f"{normalize(request.amount, request.currency)}"
        summary = f"{amount} {request.currency} · {request.reason}"
        events.append(
            TimelineEvent(request.created_at, "approval_requested", "awaiting_approval", request.requested_by, summary)
        )
        if request.decided_at is not None:
            events.append(
                TimelineEvent(
                    request.decided_at,
                    "approval_decided",
                    request.status,
                    request.decided_by,
                    request.decision_note or "",
                )
            )
    for alert in session.scalars(select(Alert).where(Alert.imp_uid == payment.imp_uid)):
        events.append(
            TimelineEvent(
                alert.created_at,
                "alert",
                alert.severity,
                None,
                alert.message,
                {"kind": alert.kind, "status": alert.status},
            )
        )
    entries = session.scalars(
        select(AuditEntry)
        .where(AuditEntry.target.in_((payment.imp_uid, payment.merchant_uid)))
        .order_by(AuditEntry.id.desc())
        .limit(HISTORY_LIMIT)
    )
    for entry in entries:
        events.append(TimelineEvent(entry.at, "audit", None, entry.actor, entry.action, dict(entry.detail or {})))
    # PortOne's times are whole seconds: within one second, the natural order of events wins.
    events.sort(key=lambda event: (event.at.replace(microsecond=0), _RANK.get(event.kind, len(_RANK)), event.at))
    return events
