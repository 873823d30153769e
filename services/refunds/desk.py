"""The refund desk: one refund from the dashboard, around `services.refunds.engine.refund`.

- Only actors with `Permission.REFUND` may ask; a viewer calling in directly gets `Forbidden`.
- `refund_quote` shows the payment behind an imp_uid or merchant_uid with PortOne's live remainder;
  `request_refund` refunds it now, or, above the approval threshold, files it for a second
  operator (services.refunds.approvals) and NOTHING is sent to PortOne.
- Every intent carries one idempotency key (the page makes one per confirmed dialog), so a
  double click or a rerun replays the first answer instead of refunding twice.
- Virtual-account payments need the customer's refund account ({bank, holder, number}).

Many refunds at once (a CSV): services.refunds.bulk. What the answers mean: services.refunds.outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from services.auth.access import Actor, Permission, require
from services.core.errors import (
    ApprovalDecisionChanged,
    Conflict,
    FullRefundOnly,
    GatewayError,
    InvalidRequest,
    NotFound,
    RefundExceedsRemaining,
)
from services.core.models import Payment, Refund, RefundRequest
from services.core.money import InvalidAmount, normalize, parse_typed_amount, validate_amount
from services.core.sequences import chunked
from services.payments.sync import apply_payment
from services.portone.banks import refund_account as parse_refund_account
from services.refunds import engine as refunds
from services.refunds import full_only as partial_refunds
from services.refunds.approvals import approval_threshold, file_request, needs_approval, operator_lease, refunded_alone
from services.refunds.outcomes import DeskResult, from_result
from services.runtime import Runtime

_LOOKUP_CHUNK = 400  # identifiers per query (two IN lists of them)


@dataclass(frozen=True)
class RefundQuote:
    """What the refund form shows before anything is sent."""

    imp_uid: str
    merchant_uid: str
    currency: str
    status: str
    amount: Decimal
    cancel_amount: Decimal
    remaining: Decimal
    buyer_name: str | None
    paid_at: datetime | None
    from_portone: bool  # False: PortOne could not be asked, these are our (possibly older) figures
    approval_threshold: Decimal | None  # above this a second operator must approve
    refunded_alone: Decimal = Decimal(0)  # what this operator refunded alone in the window: counts too
    needs_refund_account: bool = False  # a virtual account: refunded only into the customer's account
    # Why PortOne refunds this payment only in full ("escrow", "phone"; services.refunds.full_only),
    # None when a partial refund may be tried: the form then offers the whole remainder only.
    full_only: str | None = None


# -- looking payments up ------------------------------------------------------------------------


def order_payment(payments: Iterable[Payment]) -> Payment | None:
    """The payment of an order to refund: its paid one (the newest), else its newest."""
    newest_first = sorted(payments, key=lambda payment: payment.id, reverse=True)
    paid = [payment for payment in newest_first if payment.status == "paid"]
    best = paid or newest_first
    return best[0] if best else None


def find_payments(session: Session, identifiers: Sequence[str]) -> dict[str, Payment]:
    """Each identifier's payment: by imp_uid; else by merchant_uid, the order's payment to refund
    (`order_payment`). Identifiers matching nothing are left out."""
    wanted = list(dict.fromkeys(i for i in identifiers if i))
    by_imp_uid: dict[str, Payment] = {}
    by_order: dict[str, dict[int, Payment]] = {}
    for chunk in chunked(wanted, _LOOKUP_CHUNK):
        payments = session.scalars(
            select(Payment).where(or_(Payment.imp_uid.in_(chunk), Payment.merchant_uid.in_(chunk)))
        )
        for payment in payments:
            by_imp_uid[payment.imp_uid] = payment
            by_order.setdefault(payment.merchant_uid, {})[payment.id] = payment
    found: dict[str, Payment] = {}
    for identifier in wanted:
        chosen = by_imp_uid.get(identifier) or order_payment(by_order.get(identifier, {}).values())
        if chosen is not None:
            found[identifier] = chosen
    return found


def refund_quote(rt: Runtime, *, actor: Actor, identifier: str) -> RefundQuote:
    """The payment behind an imp_uid or merchant_uid, with PortOne's live refundable remainder."""
    require(actor, Permission.REFUND)
    identifier = (identifier or "").strip()
    if not identifier:
        raise InvalidRequest("enter an imp_uid or merchant_uid")
    with rt.db.read() as session:
        payment = find_payments(session, [identifier]).get(identifier)
        if payment is None:
            raise NotFound(f"no payment {identifier!r} in our records")
    currency = payment.currency
    try:
        fetched = rt.gateway.get_payment(payment.imp_uid)
    except GatewayError:
        fetched = None
    if fetched is not None:
        status, amount, cancel = str(fetched.status), fetched.amount, fetched.cancel_amount
        pay_method = fetched.pay_method or payment.pay_method
        full_only = partial_refunds.of_gateway(fetched)
    else:
        status, amount, cancel = payment.status, payment.amount, payment.cancel_amount
        pay_method = payment.pay_method
        full_only = partial_refunds.of_record(
            raw=payment.raw, pay_method=payment.pay_method, pg_provider=payment.pg_provider
        )
    amount, cancel = normalize(amount, currency), normalize(cancel, currency)
    return RefundQuote(
        imp_uid=payment.imp_uid,
        merchant_uid=payment.merchant_uid,
        currency=currency,
        status=status,
        amount=amount,
        cancel_amount=cancel,
        remaining=amount - cancel if status == "paid" else Decimal(0),
        buyer_name=payment.buyer_name,
        paid_at=payment.paid_at,
        from_portone=fetched is not None,
        approval_threshold=approval_threshold(rt, currency),
        refunded_alone=refunded_alone(rt, username=actor.username).get(currency, Decimal(0)),
        needs_refund_account=pay_method == refunds.VBANK,
        full_only=None if full_only is None else str(full_only),
    )


# -- one refund ---------------------------------------------------------------------------------


def requested_amount(value: object | None, currency: str) -> Decimal | None:
    """An amount asked for (None or blank: the whole remainder), in the currency's precision."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, str):  # typed by a person (the form, a CSV cell): the one strict grammar
            return parse_typed_amount(value, currency)
        return validate_amount(value, currency)
    except InvalidAmount as exc:
        raise InvalidRequest(str(exc)) from None


def refuse_partial_by_record(payment: Payment, value: Decimal | None, remaining: Decimal) -> None:
    """A partial refund of a payment our copy of PortOne's record shows refundable in full only is
    refused before it is queued for approval or sent (refunds.refund checks PortOne's own again)."""
    reason = partial_refunds.of_record(raw=payment.raw, pay_method=payment.pay_method, pg_provider=payment.pg_provider)
    if reason is not None and value is not None and value < remaining:
        raise FullRefundOnly(
            f"full refund only: PortOne cannot partially refund this {reason} payment; "
            f"refund the whole {normalize(remaining, payment.currency)} {payment.currency}",
            reason=str(reason),
        )


def request_refund(
    rt: Runtime,
    *,
    actor: Actor,
    imp_uid: str,
    amount: object | None,
    reason: str,
    idempotency_key: str,
    refund_account: object = None,
    expect_approval: bool | None = None,
) -> DeskResult:
    """Refund `amount` (None: the whole remainder) now, or ask for approval above the threshold.

    `expect_approval`: what the operator was told before confirming (the refund dialog says whether it
    goes out now or waits for a second operator); when the figures now decide otherwise, nothing is done
    and ApprovalDecisionChanged is raised. None: no announcement to hold to.

    `refund_account` ({bank, holder, number}): required to refund a virtual-account payment
    (RefundAccountRequired otherwise). It is never stored in full, so a request filed for approval
    takes it again from the approver (`approve_request`).

    Raises Forbidden, NotFound, InvalidRequest, RefundExceedsRemaining, Conflict, GatewayRejected
    (PortOne refused) and GatewayUnavailable (nothing sent); an answer that never came is the
    outcome UNKNOWN (being checked, never resent).
    """
    require(actor, Permission.REFUND)
    reason, key = refunds.checked_reason(reason), refunds.checked_key(idempotency_key)
    account = parse_refund_account(refund_account)
    with rt.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == (imp_uid or "").strip()))
        if payment is None:
            raise NotFound(f"no payment {imp_uid!r} in our records")
        currency, ours_remaining, ours_status = payment.currency, payment.amount - payment.cancel_amount, payment.status
        earlier_request = session.scalar(select(RefundRequest.id).where(RefundRequest.idempotency_key == key))
        earlier_refund = session.scalar(select(Refund.id).where(Refund.idempotency_key == key))
    value = requested_amount(amount, currency)
    # The same intent again (double click, rerun): replay its first answer, decided as it was then.
    if earlier_request is not None:
        return file_request(
            rt, actor=actor, payment_imp_uid=payment.imp_uid, currency=currency, amount=value, reason=reason, key=key
        )
    if earlier_refund is not None:
        return from_result(
            refunds.refund(
                rt,
                imp_uid=payment.imp_uid,
                amount=value,
                reason=reason,
                actor=actor.username,
                idempotency_key=key,
                refund_account=account,
            )
        )
    # Our remainder is never below PortOne's (refunds only grow), so above ours is above PortOne's.
    if value is not None and value > ours_remaining:
        raise RefundExceedsRemaining(value, normalize(ours_remaining, currency), currency)
    refuse_partial_by_record(payment, value, ours_remaining)
    # One operator's refunds are decided one at a time: two at once would both read the same total
    # "refunded alone in the window" and both pass under the threshold.
    with operator_lease(rt, actor):
        already = refunded_alone(rt, username=actor.username).get(currency, Decimal(0))
        approval = needs_approval(rt, currency, ours_remaining if value is None else value, already=already)
        if expect_approval is not None and approval != expect_approval:
            raise ApprovalDecisionChanged(
                "this refund now "
                + ("needs" if approval else "no longer needs")
                + " a second operator's approval: look at the figures again before confirming"
            )
        if approval:
            if ours_status != "paid":  # our record may be behind PortOne (a deposit not heard of yet)
                ours_status = _status_at_portone(rt, payment.imp_uid)
            if ours_status != "paid":  # nothing to approve (refunds.refund re-checks PortOne for the rest)
                raise Conflict(f"payment {payment.imp_uid} is {ours_status}, not paid; only paid payments are refunded")
            return file_request(
                rt,
                actor=actor,
                payment_imp_uid=payment.imp_uid,
                currency=currency,
                amount=value,
                reason=reason,
                key=key,
            )
        result = refunds.refund(
            rt,
            imp_uid=payment.imp_uid,
            amount=value,
            reason=reason,
            actor=actor.username,
            idempotency_key=key,
            refund_account=account,
        )
    return from_result(result)


def _status_at_portone(rt: Runtime, imp_uid: str) -> str:
    """PortOne's status of the payment, recorded on ours as any re-fetch is."""
    fetched = rt.gateway.get_payment(imp_uid)
    with rt.db.write() as session:
        return str(apply_payment(session, fetched, source="refund").payment.status)
