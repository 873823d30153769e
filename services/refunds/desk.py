"""The refund desk: how the dashboard refunds, around `services.refunds.engine.refund`.

- Only actors with `Permission.REFUND` may ask; a viewer calling in directly gets `Forbidden`.
- Maker-checker: a refund above `settings.refund_approval_threshold[currency]` (or a bulk batch
  whose total in a currency is above it; a currency without a threshold always needs one)
  becomes `RefundRequest` rows awaiting approval and NOTHING is sent to PortOne. What the same
  operator refunded alone within `refund_approval_window_hours` counts towards the threshold,
  so splitting a refund or a batch does not avoid the second operator. A different operator or
  admin (`Permission.APPROVE_REFUND`) approves, or rejects it with a note. The requester cannot
  approve. Approving first claims the request (awaiting -> executing, one conditional update),
  then executes the refund with the request's own idempotency key, then records it approved;
  a reject only takes a request still awaiting. When nothing was sent (no refund row for the
  key: PortOne unreachable, another refund of the payment in progress or unsettled) the
  request goes back to awaiting. An execution abandoned by a dead process is resumed by the
  next approval (the key makes PortOne see it once), never rejected.
- Every intent carries one idempotency key (the page makes one per confirmed dialog), so a
  double click or a rerun replays the first answer instead of refunding twice; a request row
  replays the same way.
- Bulk: rows (from the payments page or a CSV of imp_uid/merchant_uid, optional amount and
  reason) are previewed against our records, then sent one by one with a key per row, each
  row's outcome reported in plain codes (see `OUTCOMES`). PortOne is re-checked for every row
  before anything is sent (inside `refunds.refund`).
- Virtual-account payments need the customer's refund account ({bank, holder, number}; CSV
  columns refund_bank, refund_holder, refund_account). Its number is never stored, so a request
  filed for approval is approved with the account entered again by the approver.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core import job_lock
from services.core.errors import (
    Conflict,
    Forbidden,
    FullRefundOnly,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
    InvalidRequest,
    NotFound,
    NotRefundable,
    PartialRefundRefused,
    PaymentsError,
    RefundAccountRequired,
    RefundExceedsRemaining,
)
from services.core.models import ApprovalStatus, Payment, Refund, RefundRequest, RefundStatus, utcnow
from services.core.money import InvalidAmount, normalize, parse_typed_amount, validate_amount
from services.payments.sync import apply_payment
from services.portone.banks import RefundAccount
from services.portone.banks import refund_account as parse_refund_account
from services.refunds import engine as refunds
from services.refunds import full_only as partial_refunds
from services.refunds.engine import RefundResult
from services.runtime import Runtime

MAX_BULK_ROWS = 1000
MAX_NOTE_LENGTH = 1000
_LOOKUP_CHUNK = 400

Progress = Callable[[int, int], None]


class Outcome(enum.StrEnum):
    """What became of one refund request, in words the page translates."""

    REFUNDED = "refunded"  # PortOne applied it
    AWAITING_APPROVAL = "awaiting_approval"  # waits for a second operator; nothing sent
    UNKNOWN = "unknown"  # sent, answer lost: being checked with PortOne, never resent
    PORTONE_REFUSED = "portone_refused"  # PortOne said no (its message is kept)
    UNAVAILABLE = "unavailable"  # PortOne unreachable; nothing was sent
    EXCEEDS_REMAINDER = "exceeds_remainder"
    NOTHING_LEFT = "nothing_left"  # already fully refunded
    NOT_PAID = "not_paid"  # failed, waiting or cancelled: nothing to refund
    NOT_FOUND = "not_found"
    INVALID = "invalid"  # bad amount or missing reason
    DUPLICATE = "duplicate"  # the same payment twice in one batch
    BUSY = "busy"  # another refund of this payment is running, or its state forbids it
    REJECTED = "rejected"  # an approver rejected the request
    FAILED = "failed"  # recorded as failed earlier (a replay of that answer)
    ACCOUNT_NEEDED = "account_needed"  # a virtual-account payment: the customer's refund account is needed
    CANNOT_REFUND = "cannot_refund"  # paid, but its PG cannot refund it through PortOne (다날 virtual account)
    FULL_ONLY = "full_only"  # a partial refund of a payment PortOne refunds in full only (escrow, phone)
    PARTIAL_REFUSED = "partial_refused"  # PortOne refused a partial refund: advise the full remainder


OUTCOMES = tuple(Outcome)


@dataclass(frozen=True)
class DeskOutcome:
    outcome: Outcome
    imp_uid: str
    currency: str
    amount: Decimal | None  # None: the whole remainder (a request still awaiting approval)
    remaining: Decimal | None
    refund: RefundResult | None
    request_id: int | None
    replayed: bool
    message: str | None = None


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


@dataclass(frozen=True)
class RequestView:
    id: int
    batch_id: str | None
    imp_uid: str
    amount: Decimal | None
    currency: str
    reason: str
    requested_by: str
    status: str
    decided_by: str | None
    decision_note: str | None
    created_at: datetime
    decided_at: datetime | None
    refund_id: int | None
    refund_status: str | None
    needs_refund_account: bool = False  # a virtual account: the approver enters the customer's account


@dataclass(frozen=True)
class BulkInputRow:
    line: int  # 1-based, as the operator sees it (CSV: the data row number)
    identifier: str  # imp_uid or merchant_uid
    amount: str | None = None  # None or empty: the whole remainder
    reason: str | None = None  # None: the batch's reason
    # A virtual-account payment's refund account, as typed (the number is personal data: not in repr)
    refund_bank: str | None = None
    refund_holder: str | None = None
    refund_account: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class BulkPreviewRow:
    line: int
    identifier: str
    reason: str
    check: Outcome | None  # None: ready to send; otherwise why this row will be skipped
    imp_uid: str | None = None
    merchant_uid: str | None = None
    buyer_name: str | None = None
    currency: str | None = None
    remaining: Decimal | None = None
    amount: Decimal | None = None
    message: str | None = None
    refund_account: str | None = None  # bank, masked number, holder
    account: RefundAccount | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class BulkPreview:
    rows: list[BulkPreviewRow]
    totals: dict[str, Decimal]  # ready rows, per currency
    needs_approval: bool

    @property
    def ready(self) -> list[BulkPreviewRow]:
        return [row for row in self.rows if row.check is None]


@dataclass(frozen=True)
class BulkResultRow:
    line: int
    identifier: str
    imp_uid: str | None
    currency: str | None
    amount: Decimal | None
    outcome: Outcome
    message: str | None
    remaining: Decimal | None
    refund_id: int | None
    request_id: int | None


# -- thresholds and errors ----------------------------------------------------------------------


def approval_threshold(rt: Runtime, currency: str) -> Decimal | None:
    return rt.settings.refund_approval_threshold.get(currency.upper())


def needs_approval(rt: Runtime, currency: str, amount: Decimal, *, already: Decimal = Decimal(0)) -> bool:
    """`already` (what the operator refunded alone in the window) plus `amount` above the currency's
    threshold; a currency without one always needs a second operator."""
    threshold = approval_threshold(rt, currency)
    return threshold is None or already + amount > threshold


_COUNTED = (RefundStatus.SUCCEEDED, RefundStatus.PENDING, RefundStatus.UNKNOWN)  # sent, or maybe sent


def refunded_alone(rt: Runtime, *, username: str, except_prefix: str | None = None) -> dict[str, Decimal]:
    """Per currency, what `username` refunded without a second operator in the rolling window
    (`refund_approval_window_hours`): their refund rows that were or may have been sent, except
    those of an approved request (a second person checked those) and, for a bulk rerun, the
    batch's own (`except_prefix`). Splitting a refund into pieces therefore does not avoid approval."""
    since = utcnow() - timedelta(hours=rt.settings.refund_approval_window_hours)
    query = select(Refund.currency, Refund.amount).where(
        Refund.requested_by == username,
        Refund.created_at >= since,
        Refund.status.in_(_COUNTED),
        Refund.idempotency_key.is_not(None),
        Refund.idempotency_key.not_in(select(RefundRequest.idempotency_key)),
    )
    if except_prefix:
        query = query.where(~Refund.idempotency_key.startswith(except_prefix, autoescape=True))
    totals: dict[str, Decimal] = {}
    with rt.db.read() as session:
        for currency, amount in session.execute(query):  # summed as Decimal here, not by the database
            totals[currency] = totals.get(currency, Decimal(0)) + Decimal(amount)
    return totals


def outcome_of_error(exc: PaymentsError) -> Outcome:
    if isinstance(exc, RefundAccountRequired):
        return Outcome.ACCOUNT_NEEDED
    if isinstance(exc, NotRefundable) and exc.portone_status == "paid":
        return Outcome.CANNOT_REFUND
    if isinstance(exc, RefundExceedsRemaining):
        return Outcome.EXCEEDS_REMAINDER
    if isinstance(exc, FullRefundOnly):
        return Outcome.FULL_ONLY
    if isinstance(exc, PartialRefundRefused):
        return Outcome.PARTIAL_REFUSED
    if isinstance(exc, GatewayRejected):
        return Outcome.PORTONE_REFUSED
    if isinstance(exc, GatewayUnavailable):
        return Outcome.UNAVAILABLE
    if isinstance(exc, NotFound):
        return Outcome.NOT_FOUND
    if isinstance(exc, InvalidRequest):
        return Outcome.INVALID
    if isinstance(exc, NotRefundable):
        return Outcome.NOTHING_LEFT if exc.nothing_left else Outcome.NOT_PAID
    if isinstance(exc, Conflict):
        return Outcome.BUSY
    if isinstance(exc, GatewayError):
        return Outcome.PORTONE_REFUSED
    return Outcome.INVALID


_RESULT_OUTCOMES = {
    RefundStatus.SUCCEEDED: Outcome.REFUNDED,
    RefundStatus.UNKNOWN: Outcome.UNKNOWN,
    RefundStatus.PENDING: Outcome.UNKNOWN,
    RefundStatus.FAILED: Outcome.FAILED,
    RefundStatus.REJECTED: Outcome.FAILED,
}


def _from_result(result: RefundResult, *, request_id: int | None = None, replayed: bool = False) -> DeskOutcome:
    return DeskOutcome(
        outcome=_RESULT_OUTCOMES[result.status],
        imp_uid=result.imp_uid,
        currency=result.currency,
        amount=result.amount,
        remaining=result.remaining,
        refund=result,
        request_id=request_id,
        replayed=replayed or result.replayed,
        message=result.error_message,
    )


# -- looking payments up ------------------------------------------------------------------------


def _resolve(session: Session, identifier: str) -> Payment | None:
    """By imp_uid; else the order's paid payment (the newest), else its newest payment."""
    payment = session.scalar(select(Payment).where(Payment.imp_uid == identifier))
    if payment is not None:
        return payment
    candidates = list(
        session.scalars(select(Payment).where(Payment.merchant_uid == identifier).order_by(Payment.id.desc()))
    )
    paid = [p for p in candidates if p.status == "paid"]
    best = paid or candidates
    return best[0] if best else None


def refund_quote(rt: Runtime, *, actor: Actor, identifier: str) -> RefundQuote:
    """The payment behind an imp_uid or merchant_uid, with PortOne's live refundable remainder."""
    require(actor, Permission.REFUND)
    identifier = (identifier or "").strip()
    if not identifier:
        raise InvalidRequest("enter an imp_uid or merchant_uid")
    with rt.db.read() as session:
        payment = _resolve(session, identifier)
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


def _amount(value: object | None, currency: str) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        if isinstance(value, str):  # typed by a person (the form, a CSV cell): the one strict grammar
            return parse_typed_amount(value, currency)
        return validate_amount(value, currency)
    except InvalidAmount as exc:
        raise InvalidRequest(str(exc)) from None


def _reason(reason: str | None) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidRequest("a refund needs a reason")
    if len(text) > refunds.MAX_REASON_LENGTH:
        raise InvalidRequest(f"the reason is longer than {refunds.MAX_REASON_LENGTH} characters")
    return text


def _key(idempotency_key: str) -> str:
    key = (idempotency_key or "").strip()
    if not key or len(key) > refunds.MAX_KEY_LENGTH:
        raise InvalidRequest(f"an idempotency key of 1 to {refunds.MAX_KEY_LENGTH} characters is required")
    return key


def _request_outcome(session: Session, request: RefundRequest, *, replayed: bool) -> DeskOutcome:
    message = request.decision_note
    if request.status == ApprovalStatus.AWAITING:
        outcome = Outcome.AWAITING_APPROVAL
    elif request.status == ApprovalStatus.REJECTED:
        outcome = Outcome.REJECTED
    elif request.status == ApprovalStatus.EXECUTING:
        outcome, message = Outcome.BUSY, _executing_message(request)
    else:
        # The refund row of the request's key, if one was ever recorded: "unknown" only for a
        # cancel that was actually sent; no row means nothing was sent.
        refund = session.scalar(select(Refund).where(Refund.idempotency_key == request.idempotency_key))
        outcome = _RESULT_OUTCOMES[RefundStatus(refund.status)] if refund else Outcome.FAILED
    return DeskOutcome(
        outcome=outcome,
        imp_uid=request.imp_uid,
        currency=request.currency,
        amount=request.amount,
        remaining=None,
        refund=None,
        request_id=request.id,
        replayed=replayed,
        message=message,
    )


def _executing_message(request: RefundRequest) -> str:
    return (
        f"refund request #{request.id} is being executed (approved by {request.decided_by}); "
        "it can no longer be rejected"
    )


def _same_request(request: RefundRequest, imp_uid: str, amount: Decimal | None, reason: str) -> bool:
    return request.imp_uid == imp_uid and request.amount == amount and request.reason == reason


def _create_request(
    rt: Runtime,
    *,
    actor: Actor,
    payment_imp_uid: str,
    currency: str,
    amount: Decimal | None,
    reason: str,
    key: str,
    batch_id: str | None = None,
) -> DeskOutcome:
    """A request awaiting approval; the same key again replays it (double click, rerun)."""
    try:
        with rt.db.write() as session:
            existing = session.scalar(select(RefundRequest).where(RefundRequest.idempotency_key == key))
            if existing is not None:
                if not _same_request(existing, payment_imp_uid, amount, reason):
                    raise InvalidRequest("this idempotency key was already used for a different refund request")
                return _request_outcome(session, existing, replayed=True)
            request = RefundRequest(
                batch_id=batch_id,
                imp_uid=payment_imp_uid,
                amount=amount,
                currency=currency,
                reason=reason,
                requested_by=actor.username,
                idempotency_key=key,
            )
            session.add(request)
            session.flush()
            audit.record(
                session,
                actor=actor.username,
                action="refund.approval_requested",
                target=payment_imp_uid,
                request_id=request.id,
                amount=amount,
                currency=currency,
                batch_id=batch_id,
            )
            return _request_outcome(session, request, replayed=False)
    except IntegrityError:  # the same key committed concurrently: replay it
        with rt.db.read() as session:
            existing = session.scalar(select(RefundRequest).where(RefundRequest.idempotency_key == key))
            if existing is None:
                raise
            return _request_outcome(session, existing, replayed=True)


def _refuse_partial_by_record(payment: Payment, value: Decimal | None, remaining: Decimal) -> None:
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
) -> DeskOutcome:
    """Refund `amount` (None: the whole remainder) now, or ask for approval above the threshold.

    `refund_account` ({bank, holder, number}): required to refund a virtual-account payment
    (RefundAccountRequired otherwise). It is never stored in full, so a request filed for approval
    takes it again from the approver (`approve_request`).

    Raises Forbidden, NotFound, InvalidRequest, RefundExceedsRemaining, Conflict, GatewayRejected
    (PortOne refused) and GatewayUnavailable (nothing sent); an answer that never came is the
    outcome UNKNOWN (being checked, never resent).
    """
    require(actor, Permission.REFUND)
    reason, key = _reason(reason), _key(idempotency_key)
    account = parse_refund_account(refund_account)
    with rt.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == (imp_uid or "").strip()))
        if payment is None:
            raise NotFound(f"no payment {imp_uid!r} in our records")
        currency, ours_remaining, ours_status = payment.currency, payment.amount - payment.cancel_amount, payment.status
        earlier_request = session.scalar(select(RefundRequest.id).where(RefundRequest.idempotency_key == key))
        earlier_refund = session.scalar(select(Refund.id).where(Refund.idempotency_key == key))
    value = _amount(amount, currency)
    # The same intent again (double click, rerun): replay its first answer, decided as it was then.
    if earlier_request is not None:
        return _create_request(
            rt, actor=actor, payment_imp_uid=payment.imp_uid, currency=currency, amount=value, reason=reason, key=key
        )
    if earlier_refund is not None:
        return _from_result(
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
    _refuse_partial_by_record(payment, value, ours_remaining)
    # One operator's refunds are decided one at a time: two at once would both read the same total
    # "refunded alone in the window" and both pass under the threshold.
    with operator_lease(rt, actor):
        already = refunded_alone(rt, username=actor.username).get(currency, Decimal(0))
        if needs_approval(rt, currency, ours_remaining if value is None else value, already=already):
            if ours_status != "paid":  # our record may be behind PortOne (a deposit not heard of yet)
                ours_status = _status_at_portone(rt, payment.imp_uid)
            if ours_status != "paid":  # nothing to approve (refunds.refund re-checks PortOne for the rest)
                raise Conflict(f"payment {payment.imp_uid} is {ours_status}, not paid; only paid payments are refunded")
            return _create_request(
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
    return _from_result(result)


def operator_lease(rt: Runtime, actor: Actor) -> AbstractContextManager[str]:
    """The lock under which one operator's maker–checker check and the refund it allows run."""
    return job_lock.held(
        rt,
        f"refund-desk:{actor.username}",
        lease=timedelta(seconds=rt.settings.refund_lock_lease_seconds),
        wait_seconds=rt.settings.refund_lock_wait_seconds,
    )


def _status_at_portone(rt: Runtime, imp_uid: str) -> str:
    """PortOne's status of the payment, recorded on ours as any re-fetch is."""
    fetched = rt.gateway.get_payment(imp_uid)
    with rt.db.write() as session:
        return str(apply_payment(session, fetched, source="refund").payment.status)


# -- approvals ----------------------------------------------------------------------------------


OPEN_REQUESTS = (ApprovalStatus.AWAITING, ApprovalStatus.EXECUTING)


def list_requests(
    rt: Runtime,
    *,
    actor: Actor,
    status: ApprovalStatus | Sequence[ApprovalStatus] | None = OPEN_REQUESTS,
    limit: int = 200,
) -> list[RequestView]:
    """Refund requests (by default the open ones: awaiting approval, or being executed), oldest first."""
    require(actor, Permission.REFUND)
    query = (
        select(RefundRequest, Refund.status, Payment.pay_method)
        .outerjoin(Refund, Refund.id == RefundRequest.refund_id)
        .outerjoin(Payment, Payment.imp_uid == RefundRequest.imp_uid)
    )
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        query = query.where(RefundRequest.status.in_(statuses))
        query = query.order_by(RefundRequest.id)
    else:
        query = query.order_by(RefundRequest.id.desc())
    with rt.db.read() as session:
        rows = session.execute(query.limit(limit)).all()
    return [
        RequestView(
            id=r.id,
            batch_id=r.batch_id,
            imp_uid=r.imp_uid,
            amount=None if r.amount is None else normalize(r.amount, r.currency),
            currency=r.currency,
            reason=r.reason,
            requested_by=r.requested_by,
            status=r.status,
            decided_by=r.decided_by,
            decision_note=r.decision_note,
            created_at=r.created_at,
            decided_at=r.decided_at,
            refund_id=r.refund_id,
            refund_status=refund_status,
            needs_refund_account=pay_method == refunds.VBANK,
        )
        for r, refund_status, pay_method in rows
    ]


def _decide(
    rt: Runtime,
    request_id: int,
    *,
    where: Any,
    values: dict[str, Any],
    action: str,
    actor: Actor,
    note: str | None,
    refund_id: int | None,
) -> bool:
    """Move the request by one conditional update and audit it: False when `where` no longer holds
    (someone else claimed or decided it first)."""
    with rt.db.write() as session:
        result = session.execute(
            update(RefundRequest).where(where).values(**values).execution_options(synchronize_session=False)
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            return False
        request = session.get_one(RefundRequest, request_id)
        audit.record(
            session,
            actor=actor.username,
            action=action,
            target=request.imp_uid,
            request_id=request_id,
            requested_by=request.requested_by,
            refund_id=refund_id,
            note=note,
        )
        return True


def _reject(rt: Runtime, request_id: int, *, actor: Actor, note: str | None) -> bool:
    """Reject a request still awaiting approval: False when it was claimed or decided first."""
    return _decide(
        rt,
        request_id,
        where=(RefundRequest.id == request_id) & (RefundRequest.status == ApprovalStatus.AWAITING),
        values={
            "status": ApprovalStatus.REJECTED,
            "decided_by": actor.username,
            "decided_at": utcnow(),
            "decision_note": note,
        },
        action="refund.approval_rejected",
        actor=actor,
        note=note,
        refund_id=None,
    )


def _stale_after(rt: Runtime) -> timedelta:
    """An approval executing longer than this was abandoned (its process died): another approver may
    resume it, safely, as the refund is sent at most once per the request's idempotency key."""
    settings = rt.settings
    return timedelta(
        seconds=settings.refund_lock_wait_seconds
        + settings.refund_lock_lease_seconds
        + 4 * settings.portone_timeout_seconds
    )


def _claim(rt: Runtime, request_id: int, *, actor: Actor) -> datetime | None:
    """awaiting -> executing (or an abandoned execution resumed), in one conditional update, before
    anything is sent; from then on a reject is refused. The claim's time is its token."""
    now = utcnow()
    with rt.db.write() as session:
        result = session.execute(
            update(RefundRequest)
            .where(
                RefundRequest.id == request_id,
                (RefundRequest.status == ApprovalStatus.AWAITING)
                | (
                    (RefundRequest.status == ApprovalStatus.EXECUTING)
                    & (RefundRequest.decided_at < now - _stale_after(rt))
                ),
            )
            .values(status=ApprovalStatus.EXECUTING, decided_by=actor.username, decided_at=now)
            .execution_options(synchronize_session=False)
        )
        return now if cast(CursorResult[Any], result).rowcount == 1 else None


def _mine(request_id: int, actor: Actor, claimed_at: datetime) -> Any:
    return (
        (RefundRequest.id == request_id)
        & (RefundRequest.status == ApprovalStatus.EXECUTING)
        & (RefundRequest.decided_by == actor.username)
        & (RefundRequest.decided_at == claimed_at)
    )


def _release(rt: Runtime, request_id: int, *, actor: Actor, claimed_at: datetime) -> None:
    """executing -> awaiting: nothing was sent (no refund row for the key), approve again later."""
    with rt.db.write() as session:
        session.execute(
            update(RefundRequest)
            .where(_mine(request_id, actor, claimed_at))
            .values(status=ApprovalStatus.AWAITING, decided_by=None, decided_at=None, decision_note=None)
            .execution_options(synchronize_session=False)
        )


def _finish(
    rt: Runtime, request_id: int, *, actor: Actor, claimed_at: datetime, note: str | None, refund_id: int
) -> None:
    """executing -> approved, linked to the refund row that was sent (or refused). Nothing when
    another approver resumed it after this one was judged abandoned: theirs records it."""
    _decide(
        rt,
        request_id,
        where=_mine(request_id, actor, claimed_at),
        values={"status": ApprovalStatus.APPROVED, "decision_note": note, "refund_id": refund_id},
        action="refund.approved",
        actor=actor,
        note=note,
        refund_id=refund_id,
    )


def _note(note: str | None, *, required: bool) -> str | None:
    text = (note or "").strip()
    if required and not text:
        raise InvalidRequest("write a note saying why")
    if len(text) > MAX_NOTE_LENGTH:
        raise InvalidRequest(f"the note is longer than {MAX_NOTE_LENGTH} characters")
    return text or None


def approve_request(
    rt: Runtime, *, actor: Actor, request_id: int, note: str | None = None, refund_account: object = None
) -> DeskOutcome:
    """A second operator approves: the request is claimed (awaiting -> executing) and the refund
    executed now with the request's idempotency key; a reject arriving meanwhile is refused.

    When nothing was sent (PortOne unreachable before sending, another refund of the payment
    unsettled or in progress), the request goes back to awaiting and the error is raised: approve
    again later. Any other outcome decides the request; an error is raised after recording it.
    """
    require(actor, Permission.APPROVE_REFUND)
    note = _note(note, required=False)
    account = parse_refund_account(refund_account)  # a virtual account's: entered by the approver (never stored)
    with rt.db.read() as session:
        request = session.get(RefundRequest, request_id)
        if request is None:
            raise NotFound(f"no refund request #{request_id}")
        if request.requested_by == actor.username:
            raise Forbidden("a refund you requested must be approved by another operator")
        imp_uid, amount, reason, key = request.imp_uid, request.amount, request.reason, request.idempotency_key
        maker = request.requested_by
    claimed_at = _claim(rt, request_id, actor=actor)
    if claimed_at is None:
        with rt.db.read() as session:
            request = session.get_one(RefundRequest, request_id)
            if request.status == ApprovalStatus.REJECTED:
                raise Conflict(f"refund request #{request_id} was already rejected by {request.decided_by}")
            if request.status == ApprovalStatus.EXECUTING:
                raise Conflict(_executing_message(request))
            return _request_outcome(session, request, replayed=True)
    try:
        # A resumed approval whose refund was already sent answers with that refund, never a new one.
        result = refunds.result_for_key(rt, key, actor=actor.username) or refunds.refund(
            rt,
            imp_uid=imp_uid,
            amount=amount,
            reason=reason,
            actor=maker,
            idempotency_key=key,
            source="ops",
            refund_account=account,
        )
    except Exception as exc:
        attempt = _attempt_id(rt, key)
        if attempt is None:  # no refund row for the key: nothing was sent
            _release(rt, request_id, actor=actor, claimed_at=claimed_at)
            if isinstance(exc, Conflict):
                raise Conflict(
                    f"{exc}. Nothing was sent: refund request #{request_id} is still awaiting approval; "
                    "approve it again once that refund has settled"
                ) from exc
            raise
        if isinstance(exc, PaymentsError):  # a final answer, recorded on the attempt
            _finish(
                rt,
                request_id,
                actor=actor,
                claimed_at=claimed_at,
                note=_joined(note, f"not refunded: {exc}"),
                refund_id=attempt,
            )
        raise
    _finish(rt, request_id, actor=actor, claimed_at=claimed_at, note=note, refund_id=result.refund_id)
    return _from_result(result, request_id=request_id)


def _joined(note: str | None, extra: str) -> str:
    return f"{note} · {extra}" if note else extra


def _attempt_id(rt: Runtime, key: str) -> int | None:
    with rt.db.read() as session:
        return session.scalar(select(Refund.id).where(Refund.idempotency_key == key))


def reject_request(rt: Runtime, *, actor: Actor, request_id: int, note: str) -> None:
    """Reject (or, for its requester, withdraw) a request awaiting approval. Nothing is sent."""
    require(actor, Permission.APPROVE_REFUND)
    text = _note(note, required=True)
    with rt.db.read() as session:
        request = session.get(RefundRequest, request_id)
        if request is None:
            raise NotFound(f"no refund request #{request_id}")
    if not _reject(rt, request_id, actor=actor, note=text):
        with rt.db.read() as session:
            request = session.get_one(RefundRequest, request_id)
            if request.status == ApprovalStatus.EXECUTING:
                raise Conflict(_executing_message(request))
        raise Conflict(f"refund request #{request_id} was already decided")


# -- bulk ---------------------------------------------------------------------------------------

_HEADERS = {
    "imp_uid": "imp_uid",
    "merchant_uid": "merchant_uid",
    "주문번호": "merchant_uid",
    "amount": "amount",
    "금액": "amount",
    "환불금액": "amount",
    "reason": "reason",
    "사유": "reason",
    "환불사유": "reason",
    # a virtual-account payment's refund account (opi/ko/integration/cancel/v1/basic.md)
    "refund_bank": "refund_bank",
    "환불은행": "refund_bank",
    "은행": "refund_bank",
    "refund_holder": "refund_holder",
    "예금주": "refund_holder",
    "refund_account": "refund_account",
    "환불계좌": "refund_account",
    "계좌번호": "refund_account",
}


def parse_bulk_csv(data: bytes) -> list[BulkInputRow]:
    """Rows of a CSV with an imp_uid or merchant_uid column, optional amount and reason columns, and
    for virtual-account payments refund_bank (code or name), refund_holder, refund_account.

    UTF-8 (with or without BOM) or CP949 (Korean Excel's default) are both read.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp949")
        except UnicodeDecodeError:
            raise InvalidRequest("the file is neither UTF-8 nor CP949 text") from None
    try:
        return _bulk_rows(csv.reader(io.StringIO(text)))
    except csv.Error as exc:  # a cell over the csv module's limit, a quote never closed, NUL
        raise InvalidRequest(f"the file is not a CSV we can read: {exc}") from None


def _bulk_rows(reader: Iterator[list[str]]) -> list[BulkInputRow]:
    header = next(reader, None)
    if not header:
        raise InvalidRequest("the file is empty")
    columns = [_HEADERS.get(name.strip().lower()) for name in header]
    if "imp_uid" not in columns and "merchant_uid" not in columns:
        raise InvalidRequest("the first line must name an imp_uid or merchant_uid column")
    rows: list[BulkInputRow] = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        cells = {name: value.strip() for name, value in zip(columns, values, strict=False) if name}
        identifier = cells.get("imp_uid") or cells.get("merchant_uid") or ""
        rows.append(
            BulkInputRow(
                line=len(rows) + 1,
                identifier=identifier,
                amount=cells.get("amount") or None,
                reason=cells.get("reason") or None,
                refund_bank=cells.get("refund_bank") or None,
                refund_holder=cells.get("refund_holder") or None,
                refund_account=cells.get("refund_account") or None,
            )
        )
        if len(rows) > MAX_BULK_ROWS:
            raise InvalidRequest(f"at most {MAX_BULK_ROWS} rows per batch")
    if not rows:
        raise InvalidRequest("the file has no rows")
    return rows


def _lookup(session: Session, identifiers: Sequence[str]) -> dict[str, Payment]:
    found: dict[str, Payment] = {}
    unique = list(dict.fromkeys(i for i in identifiers if i))
    for start in range(0, len(unique), _LOOKUP_CHUNK):
        chunk = unique[start : start + _LOOKUP_CHUNK]
        payments = session.scalars(
            select(Payment).where(or_(Payment.imp_uid.in_(chunk), Payment.merchant_uid.in_(chunk))).order_by(Payment.id)
        )
        for payment in payments:
            found[payment.imp_uid] = payment
            current = found.get(payment.merchant_uid)
            # merchant_uid: its paid payment wins, then the newest
            if current is None or payment.status == "paid" or current.status != "paid":
                found[payment.merchant_uid] = payment
    return found


def _preview_row(
    row: BulkInputRow, payment: Payment | None, default_reason: str | None, seen: set[str]
) -> BulkPreviewRow:
    reason = (row.reason or default_reason or "").strip()
    if payment is None:
        return BulkPreviewRow(line=row.line, identifier=row.identifier, reason=reason, check=Outcome.NOT_FOUND)
    currency = payment.currency
    paid = payment.status == "paid"
    remaining = normalize(payment.amount - payment.cancel_amount, currency) if paid else Decimal(0)
    check, message, amount = _row_check(row, payment, remaining, reason, seen)
    account = None
    if check is None and payment.pay_method == refunds.VBANK:
        check, message, account = _row_account(row, payment)
    seen.add(payment.imp_uid)
    return BulkPreviewRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=payment.imp_uid,
        merchant_uid=payment.merchant_uid,
        buyer_name=payment.buyer_name,
        currency=currency,
        remaining=remaining,
        amount=amount,
        reason=reason,
        check=check,
        message=message,
        refund_account=account.described() if account else None,
        account=account,
    )


def _row_account(row: BulkInputRow, payment: Payment) -> tuple[Outcome | None, str | None, RefundAccount | None]:
    """A virtual-account row: its refund account, or why the row is skipped."""
    given = {"bank": row.refund_bank, "holder": row.refund_holder, "number": row.refund_account}
    try:
        account = parse_refund_account(given) if any(given.values()) else None
        refunds.check_refund_account(
            imp_uid=payment.imp_uid,
            pay_method=payment.pay_method,
            pg_provider=payment.pg_provider,
            status=payment.status,
            account=account,
        )
    except PaymentsError as exc:
        return outcome_of_error(exc), str(exc), None
    return None, None, account


def _row_check(
    row: BulkInputRow, payment: Payment, remaining: Decimal, reason: str, seen: set[str]
) -> tuple[Outcome | None, str | None, Decimal | None]:
    """(why the row is skipped or None, a message, the amount to refund)"""
    try:
        given = _amount(row.amount, payment.currency)
    except InvalidRequest as exc:
        return Outcome.INVALID, str(exc), None
    amount = remaining if given is None else given
    if payment.imp_uid in seen:
        return Outcome.DUPLICATE, None, amount
    if payment.status != "paid":
        return (Outcome.NOTHING_LEFT if payment.status == "cancelled" else Outcome.NOT_PAID), None, amount
    if remaining <= 0:
        return Outcome.NOTHING_LEFT, None, amount
    if amount > remaining:
        return Outcome.EXCEEDS_REMAINDER, None, amount
    try:
        _refuse_partial_by_record(payment, amount, remaining)
    except FullRefundOnly as exc:
        return Outcome.FULL_ONLY, str(exc), amount
    if not reason:
        return Outcome.INVALID, "a refund needs a reason", amount
    if len(reason) > refunds.MAX_REASON_LENGTH:
        return Outcome.INVALID, f"the reason is longer than {refunds.MAX_REASON_LENGTH} characters", amount
    return None, None, amount


def preview_bulk(
    rt: Runtime,
    *,
    actor: Actor,
    rows: Sequence[BulkInputRow],
    default_reason: str | None = None,
    batch_id: str | None = None,
) -> BulkPreview:
    """Resolve every row against our records: found?, refundable remainder, amount, and why a row
    would be skipped. Nothing is sent. The batch needs approval when, per currency, its total plus
    what the operator refunded alone in the window (this batch's own rows aside) is above the
    threshold."""
    require(actor, Permission.REFUND)
    if not rows:
        raise InvalidRequest("no rows to refund")
    if len(rows) > MAX_BULK_ROWS:
        raise InvalidRequest(f"at most {MAX_BULK_ROWS} rows per batch")
    with rt.db.read() as session:
        payments = _lookup(session, [row.identifier.strip() for row in rows])
        seen: set[str] = set()
        previewed = [_preview_row(row, payments.get(row.identifier.strip()), default_reason, seen) for row in rows]
    totals: dict[str, Decimal] = {}
    for row in previewed:
        if row.check is None and row.currency and row.amount is not None:
            totals[row.currency] = totals.get(row.currency, Decimal(0)) + row.amount
    alone = refunded_alone(rt, username=actor.username, except_prefix=_bulk_prefix(batch_id) if batch_id else None)
    approval = any(
        needs_approval(rt, currency, total, already=alone.get(currency, Decimal(0)))
        for currency, total in totals.items()
    )
    return BulkPreview(rows=previewed, totals=totals, needs_approval=approval)


def _skipped(row: BulkPreviewRow, check: Outcome) -> BulkResultRow:
    return BulkResultRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=row.imp_uid,
        currency=row.currency,
        amount=row.amount,
        outcome=check,
        message=row.message,
        remaining=row.remaining,
        refund_id=None,
        request_id=None,
    )


def _bulk_prefix(batch_id: str) -> str:
    return f"bulk:{batch_id}:"


def _bulk_key(batch_id: str, row: BulkPreviewRow) -> str:
    return f"{_bulk_prefix(batch_id)}{row.line}:{row.imp_uid}"


def submit_bulk(
    rt: Runtime,
    *,
    actor: Actor,
    rows: Sequence[BulkInputRow],
    default_reason: str | None,
    batch_id: str,
    on_progress: Progress | None = None,
) -> list[BulkResultRow]:
    """Refund every ready row once (a key per row under `batch_id`: a rerun replays), or, when a
    currency's batch total is above its threshold, file the whole batch for approval."""
    require(actor, Permission.REFUND)
    batch_id = _key(batch_id)
    with operator_lease(rt, actor):  # the threshold decided and applied without a rival (renewed as it goes)
        return _submit_bulk(rt, actor, rows, default_reason, batch_id, on_progress)


def _submit_bulk(
    rt: Runtime,
    actor: Actor,
    rows: Sequence[BulkInputRow],
    default_reason: str | None,
    batch_id: str,
    on_progress: Progress | None,
) -> list[BulkResultRow]:
    preview = preview_bulk(rt, actor=actor, rows=rows, default_reason=default_reason, batch_id=batch_id)
    earlier = _earlier_rows(rt, batch_id)  # a rerun: those rows replay whatever the preview says now
    todo = [row for row in preview.rows if row.check is None or _bulk_key(batch_id, row) in earlier]
    if not earlier:
        with rt.db.write() as session:
            audit.record(
                session,
                actor=actor.username,
                action="refund.bulk_submitted",
                target=None,
                batch_id=batch_id,
                rows=len(rows),
                ready=len(todo),
                totals={currency: str(total) for currency, total in preview.totals.items()},
                needs_approval=preview.needs_approval,
            )
    results = {row.line: _skipped(row, row.check) for row in preview.rows if row.check is not None}
    for done, row in enumerate(todo, start=1):
        imp_uid, currency = row.imp_uid or "", row.currency or ""  # always set on these rows
        key = _bulk_key(batch_id, row)
        kind = "request" if preview.needs_approval else "refund"
        if key in earlier:  # replay exactly what was asked then (the remainder has moved since)
            kind, amount, reason = earlier[key]
            row = replace(row, amount=None if amount is None else normalize(amount, currency), reason=reason)
        if kind == "request":
            outcome = _create_request(
                rt,
                actor=actor,
                payment_imp_uid=imp_uid,
                currency=currency,
                amount=row.amount,
                reason=row.reason,
                key=key,
                batch_id=batch_id,
            )
            results[row.line] = _bulk_result(row, outcome)
        else:
            results[row.line] = _send_row(rt, actor, row, imp_uid, key)
        if on_progress is not None:
            on_progress(done, len(todo))
    return [results[row.line] for row in preview.rows]


def _earlier_rows(rt: Runtime, batch_id: str) -> dict[str, tuple[str, Decimal | None, str]]:
    """This batch's keys already used: key -> ("request" | "refund", amount, reason) as sent then."""
    prefix = _bulk_prefix(batch_id)
    found: dict[str, tuple[str, Decimal | None, str]] = {}
    with rt.db.read() as session:
        requests = session.execute(
            select(RefundRequest.idempotency_key, RefundRequest.amount, RefundRequest.reason).where(
                RefundRequest.idempotency_key.startswith(prefix, autoescape=True)
            )
        )
        for key, amount, reason in requests:
            found[key] = ("request", amount, reason)
        refunded = session.execute(
            select(Refund.idempotency_key, Refund.amount, Refund.reason).where(
                Refund.idempotency_key.startswith(prefix, autoescape=True)
            )
        )
        for refund_key, refund_amount, refund_reason in refunded:
            if refund_key and refund_key not in found:
                found[refund_key] = ("refund", refund_amount, refund_reason)
    return found


def _bulk_result(row: BulkPreviewRow, outcome: DeskOutcome) -> BulkResultRow:
    return BulkResultRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=row.imp_uid,
        currency=row.currency,
        amount=row.amount,
        outcome=outcome.outcome,
        message=outcome.message,
        remaining=outcome.remaining,
        refund_id=outcome.refund.refund_id if outcome.refund else None,
        request_id=outcome.request_id,
    )


def _error_row(row: BulkPreviewRow, exc: PaymentsError, request_id: int | None = None) -> BulkResultRow:
    return BulkResultRow(
        line=row.line,
        identifier=row.identifier,
        imp_uid=row.imp_uid,
        currency=row.currency,
        amount=row.amount,
        outcome=outcome_of_error(exc),
        message=str(exc),
        remaining=None,
        refund_id=None,
        request_id=request_id,
    )


def _send_row(rt: Runtime, actor: Actor, row: BulkPreviewRow, imp_uid: str, key: str) -> BulkResultRow:
    try:
        result = refunds.refund(
            rt,
            imp_uid=imp_uid,
            amount=row.amount,
            reason=row.reason,
            actor=actor.username,
            idempotency_key=key,
            refund_account=row.account,
        )
    except PaymentsError as exc:
        return _error_row(row, exc)
    return _bulk_result(row, _from_result(result))


def approve_batch(
    rt: Runtime, *, actor: Actor, batch_id: str, note: str | None = None, on_progress: Progress | None = None
) -> list[BulkResultRow]:
    """Approve every request of a batch still awaiting approval, each executed once."""
    require(actor, Permission.APPROVE_REFUND)
    with rt.db.read() as session:
        requests = list(
            session.scalars(
                select(RefundRequest)
                .where(RefundRequest.batch_id == batch_id, RefundRequest.status == ApprovalStatus.AWAITING)
                .order_by(RefundRequest.id)
            )
        )
    if not requests:
        raise NotFound(f"no requests of batch {batch_id!r} await approval")
    if any(request.requested_by == actor.username for request in requests):
        raise Forbidden("a refund you requested must be approved by another operator")
    results = []
    for done, request in enumerate(requests, start=1):
        row = BulkPreviewRow(
            line=done,
            identifier=request.imp_uid,
            reason=request.reason,
            check=None,
            imp_uid=request.imp_uid,
            currency=request.currency,
            amount=request.amount,
        )
        try:
            results.append(_bulk_result(row, approve_request(rt, actor=actor, request_id=request.id, note=note)))
        except PaymentsError as exc:
            results.append(_error_row(row, exc, request.id))
        if on_progress is not None:
            on_progress(done, len(requests))
    return results
