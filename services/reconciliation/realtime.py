"""Real-time checks: the reconciliation rules run on the payment at hand, in the transaction that records it.

`check_recorded` / `check_recorded_many` run while /complete, a webhook, a repair or a re-sync
records payments from PortOne; `check_rejected_webhook` when a webhook delivery is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.alerts.store import AlertKind
from services.core.config import Settings
from services.core.models import Payment, Refund, WebhookEvent, utcnow
from services.core.sequences import SQL_IN_CHUNK, chunked
from services.portone.types import GatewayPayment, PortOneStatus
from services.reconciliation.alert_writer import current_attribution, write_verdicts
from services.reconciliation.facts import DeliveryResult, Facts, OurDelivery, OurOrder, OurPayment, OurRefund, Verdict
from services.reconciliation.our_side import load_deliveries, webhook_log_purged_before
from services.reconciliation.rules import RuleConfig, evaluate

if TYPE_CHECKING:
    from services.payments.sync import Applied


def check_recorded(
    session: Session, fetched: GatewayPayment, applied: Applied, *, source: str, settings: Settings
) -> None:
    """Run every rule on a payment just recorded from PortOne (inside the recording transaction)."""
    check_recorded_many(session, [(fetched, applied)], source=source, settings=settings)


def check_recorded_many(
    session: Session, recorded: Sequence[tuple[GatewayPayment, Applied]], *, source: str, settings: Settings
) -> None:
    """Run every rule on payments just recorded from PortOne, in the recording transaction.

    Our rows were just copied from PortOne's answers, so a record-against-PortOne difference here
    can only be a stale answer racing a newer one: such rules only ever resolve in real time.
    """
    if not recorded:
        return
    deliveries_by_uid = load_deliveries(session, [fetched.imp_uid for fetched, _ in recorded])
    # Only a paid payment can make its order paid twice; the others agree without a look-up.
    paid_by_order = _paid_payments_by_order(
        session, {applied.payment.merchant_uid for fetched, applied in recorded if fetched.status == PortOneStatus.PAID}
    )
    # Read after the deliveries: the purge records its horizon before it deletes.
    cfg = replace(RuleConfig.from_settings(settings), webhook_log_purged_before=webhook_log_purged_before(session))
    now = utcnow()
    verdicts: list[Verdict] = []
    for fetched, applied in recorded:
        payment = applied.payment
        ours = _our_payment(payment)
        deliveries = list(deliveries_by_uid.get(fetched.imp_uid, []))
        if source == "webhook":
            deliveries.append(OurDelivery(now, DeliveryResult.IN_PROGRESS))
        same = (ours.status, ours.cancel_amount, ours.amount, ours.currency) == (
            fetched.status,
            fetched.cancel_amount,
            fetched.amount,
            fetched.currency,
        )
        order = applied.order
        facts = Facts(
            imp_uid=fetched.imp_uid,
            ours=ours,
            order=None if order is None else OurOrder(order.merchant_uid, order.amount, order.currency),
            portone=fetched,
            portone_checked=True,
            comparable=same,
            refunds=tuple(_our_refund(r) for r in payment.refunds),
            deliveries=tuple(deliveries),
            other_paid=tuple(uid for uid in paid_by_order.get(payment.merchant_uid, ()) if uid != fetched.imp_uid),
        )
        verdicts.extend(evaluate(facts, cfg, now))
    actor, where = current_attribution(f"real-time check on {source}")
    write_verdicts(session, verdicts, actor=actor, where=where)


def _paid_payments_by_order(session: Session, merchant_uids: set[str]) -> dict[str, list[str]]:
    """The imp_uids of each order's paid (not fully cancelled) payments, as we recorded them."""
    found: dict[str, list[str]] = {}
    for chunk in chunked(sorted(uid for uid in merchant_uids if uid), SQL_IN_CHUNK):
        rows = session.execute(
            select(Payment.merchant_uid, Payment.imp_uid).where(
                Payment.merchant_uid.in_(chunk), Payment.status == PortOneStatus.PAID
            )
        )
        for merchant_uid, imp_uid in rows:
            found.setdefault(merchant_uid, []).append(imp_uid)
    return found


def check_rejected_webhook(session: Session, event: WebhookEvent) -> None:
    """A webhook delivery was rejected: open (or refresh) the WEBHOOK_UNVERIFIED alert it belongs to."""
    rejected = OurDelivery(event.received_at or utcnow(), DeliveryResult.REJECTED, event.detail)
    if event.imp_uid is None:
        deliveries: list[OurDelivery] = [rejected]
    else:
        deliveries = load_deliveries(session, [event.imp_uid]).get(event.imp_uid, [])
        if not any(d.result == DeliveryResult.REJECTED and d.received_at == rejected.received_at for d in deliveries):
            deliveries.append(rejected)
    facts = Facts(imp_uid=event.imp_uid, deliveries=tuple(deliveries), scope=frozenset({AlertKind.WEBHOOK_UNVERIFIED}))
    verdicts = evaluate(facts, RuleConfig(), utcnow())
    actor, where = current_attribution("real-time check on a rejected webhook")
    write_verdicts(session, verdicts, actor=actor, where=where)


def _our_payment(payment: Payment) -> OurPayment:
    return OurPayment(
        payment.imp_uid,
        payment.merchant_uid,
        payment.status,
        payment.amount,
        payment.cancel_amount,
        payment.currency,
        payment.synced_at,
    )


def _our_refund(refund: Refund) -> OurRefund:
    created = refund.created_at or utcnow()
    return OurRefund(refund.id, refund.amount, refund.status, refund.source, refund.portone_cancellation_id, created)
