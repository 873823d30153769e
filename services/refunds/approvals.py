"""Maker-checker: refunds over the threshold wait for a second operator.

- A refund above `settings.refund_approval_threshold[currency]` (or a bulk batch whose total in a
  currency is above it; a currency without a threshold always needs one) becomes `RefundRequest`
  rows awaiting approval (`file_request`) and NOTHING is sent to PortOne. What the same operator
  refunded alone within `refund_approval_window_hours` counts towards the threshold
  (`refunded_alone`), so splitting a refund or a batch does not avoid the second operator.
- A different operator or admin (`Permission.APPROVE_REFUND`) approves (`approve_request`), or
  rejects it with a note (`reject_request`). The requester cannot approve. Approving first claims
  the request (awaiting -> executing, one conditional update), then executes the refund with the
  request's own idempotency key, then records it approved; a reject only takes a request still
  awaiting. When nothing was sent (no refund row for the key: PortOne unreachable, another refund
  of the payment in progress or unsettled) the request goes back to awaiting. An execution
  abandoned by a dead process is resumed by the next approval (the key makes PortOne see it once),
  never rejected.
- A request row replays like a refund: the same key again answers what was filed.
- A virtual-account payment's refund account is never stored in full, so a request filed for
  approval is approved with the account entered again by the approver.
- A bulk batch filed for approval is approved row by row through `approve_request`
  (services.refunds.bulk.approve_batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core import job_lock
from services.core.errors import Conflict, Forbidden, InvalidRequest, NotFound, PaymentsError
from services.core.models import ApprovalStatus, Payment, Refund, RefundRequest, RefundStatus, utcnow
from services.core.money import normalize
from services.notifications import outbox as notify
from services.portone.banks import refund_account as parse_refund_account
from services.refunds import engine as refunds
from services.refunds.outcomes import OUTCOME_OF_STATUS, DeskResult, RefundOutcome, from_result
from services.runtime import Runtime

MAX_NOTE_LENGTH = 1000
OPEN_REQUESTS = (ApprovalStatus.AWAITING, ApprovalStatus.EXECUTING)


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


# -- does it need a second operator? -------------------------------------------------------------


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


def operator_lease(rt: Runtime, actor: Actor) -> AbstractContextManager[str]:
    """The lock under which one operator's maker–checker check and the refund it allows run."""
    return job_lock.held(
        rt,
        f"refund-desk:{actor.username}",
        lease=timedelta(seconds=rt.settings.refund_lock_lease_seconds),
        wait_seconds=rt.settings.refund_lock_wait_seconds,
    )


# -- filing a request ---------------------------------------------------------------------------


def _request_result(session: Session, request: RefundRequest, *, replayed: bool) -> DeskResult:
    """The desk's answer for a filed request, as it stands now."""
    message = request.decision_note
    if request.status == ApprovalStatus.AWAITING:
        outcome = RefundOutcome.AWAITING_APPROVAL
    elif request.status == ApprovalStatus.REJECTED:
        outcome = RefundOutcome.REJECTED
    elif request.status == ApprovalStatus.EXECUTING:
        outcome, message = RefundOutcome.BUSY, _executing_message(request)
    else:
        # The refund row of the request's key, if one was ever recorded: "unknown" only for a
        # cancel that was actually sent; no row means nothing was sent.
        refund = session.scalar(select(Refund).where(Refund.idempotency_key == request.idempotency_key))
        outcome = OUTCOME_OF_STATUS[RefundStatus(refund.status)] if refund else RefundOutcome.FAILED
    return DeskResult(
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


def file_request(
    rt: Runtime,
    *,
    actor: Actor,
    payment_imp_uid: str,
    currency: str,
    amount: Decimal | None,
    reason: str,
    key: str,
    batch_id: str | None = None,
) -> DeskResult:
    """A request awaiting approval; the same key again replays it (double click, rerun)."""
    try:
        with rt.db.write() as session:
            existing = session.scalar(select(RefundRequest).where(RefundRequest.idempotency_key == key))
            if existing is not None:
                if not _same_request(existing, payment_imp_uid, amount, reason):
                    raise InvalidRequest("this idempotency key was already used for a different refund request")
                return _request_result(session, existing, replayed=True)
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
            notify.approval_waiting(session, request_id=request.id, currency=currency, amount=amount, batch_id=batch_id)
            return _request_result(session, request, replayed=False)
    except IntegrityError:  # the same key committed concurrently: replay it
        with rt.db.read() as session:
            existing = session.scalar(select(RefundRequest).where(RefundRequest.idempotency_key == key))
            if existing is None:
                raise
            return _request_result(session, existing, replayed=True)


# -- the queue: approve, reject -----------------------------------------------------------------


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
) -> DeskResult:
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
            return _request_result(session, request, replayed=True)
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
    return from_result(result, request_id=request_id)


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
