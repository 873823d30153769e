"""Refunds: never above what was paid, never sent twice.

One refund at a time per payment (a lease on the payment row, portable across SQLite and
PostgreSQL). Under the lease: settle any earlier attempt whose outcome is unknown, refresh the
payment from PortOne, check the remainder, record the attempt, send it once with PortOne's
`checksum`, record the answer. An answer that never came is settled by reading the payment's
`cancel_history` back from PortOne, never by sending again; as PortOne may still be applying a
cancel whose answer we stopped waiting for, it is judged not applied only after
`refund_unknown_grace_seconds`, and new refunds of the payment wait until then.

A V2 cancel PortOne accepted as REQUESTED is settled from that cancellation's own status: SUCCEEDED
(counted in the payment) or FAILED (the attempt fails). PortOne may never show it (a PAID payment's
object lists no cancellations): still unfinished after `refund_requested_alert_minutes`, it raises
a `refund_cancel_overdue` alert, and an operator may mark it failed with a note (`fail_requested`).

A virtual-account payment is paid back into the customer's account, given with the cancel
(opi/ko/integration/cancel/v1/basic.md; V2 `refundAccount`): without one, or through a PG that
cannot refund a virtual account (다날), the refund is refused before anything is recorded or sent.
The account's full number is used in that one cancel call only; the attempt keeps its bank, holder
and masked number, and the idempotency fingerprint covers it (a keyed digest of the number).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from services.alerts.store import AlertKind, raise_alert, resolve_open
from services.audit import trail as audit
from services.core.errors import (
    CancellationPending,
    Conflict,
    FullRefundOnly,
    GatewayError,
    GatewayNotFound,
    GatewayRejected,
    GatewayUnauthorized,
    GatewayUnavailable,
    InvalidRequest,
    NotFound,
    NotRefundable,
    OutcomeUnknown,
    PartialRefundRefused,
    PgProviderFailure,
    RefundAccountRequired,
    RefundExceedsRemaining,
)
from services.core.models import Payment, Refund, RefundStatus, utcnow
from services.core.money import (
    CURRENCY_EXPONENTS,
    MAX_AMOUNT,
    InvalidAmount,
    normalize,
    parse_decimal,
    parse_typed_amount,
    validate_amount,
)
from services.payments.sync import apply_payment
from services.portone.banks import RefundAccount
from services.portone.banks import refund_account as parse_refund_account
from services.portone.types import CancellationState, GatewayPayment, PortOneStatus
from services.refunds import full_only as partial_refunds
from services.runtime import Runtime

MAX_REASON_LENGTH = 500
MAX_KEY_LENGTH = 200
PENDING_AT_PORTONE = "cancel_requested"  # error_code of an attempt PortOne accepted as REQUESTED
FULL_REFUND_ONLY = "full_refund_only"  # error_code of a partial refund PortOne's record forbids (escrow, phone)
NOTHING_TO_CANCEL = 1  # V1 `code` of a cancel refused because the payment is missing or fully cancelled
ANSWER_LOST = "answer_lost"  # error_code of an attempt whose answer never came, not yet shown by PortOne
LEASE_FIRST_PAUSE = 0.02  # seconds between polls of a busy lease, doubling up to LEASE_MAX_PAUSE
LEASE_MAX_PAUSE = 0.25


@dataclass(frozen=True)
class RefundResult:
    refund_id: int
    imp_uid: str
    status: RefundStatus
    amount: Decimal
    currency: str
    refunded_total: Decimal | None
    remaining: Decimal | None
    cancellation_id: str | None
    error_message: str | None
    replayed: bool = False
    # A virtual-account refund's account as recorded: {bank, holder, number (masked)}.
    refund_account: dict[str, str] | None = None
    # The PG's own words when PortOne V2 answered the cancel PG_PROVIDER and it is not shown applied
    # (a partial refund the PG refuses comes so: the operator is advised to refund in full).
    pg_message: str | None = None


def _fingerprint(
    imp_uid: str, amount: Decimal | None, reason: str, account: RefundAccount | None = None, *, key: bytes = b""
) -> str:
    text = f"{imp_uid}|{'full' if amount is None else amount.normalize()}|{reason}"
    if account is not None:
        # The same key with another account is another request. The number enters only as a keyed
        # digest: a plain hash of a short digit string could be reversed from the stored fingerprint.
        number = hmac.new(key, account.number.encode(), hashlib.sha256).hexdigest()
        text += f"|{account.bank}|{account.holder}|{number}"
    return hashlib.sha256(text.encode()).hexdigest()


# -- virtual-account refunds --------------------------------------------------------------------

VBANK = "vbank"
# PGs that cannot refund a virtual account at all (help/core-service/how-to-use/impossible-partial-cancel.md:
# "가상계좌의 경우 환불 자체가 불가한 PG사가 있으며(다날)"); V1 and V2 provider names.
VBANK_UNREFUNDABLE_PGS = frozenset({"danal", "danal_tpay"})


def check_refund_account(
    *, imp_uid: str, pay_method: str | None, pg_provider: str | None, status: str, account: RefundAccount | None
) -> None:
    """Before anything is sent: a virtual-account payment is refunded only into the customer's
    account (opi/ko/integration/cancel/v1/basic.md), and never through a PG that cannot refund one."""
    if pay_method != VBANK:
        return
    if (pg_provider or "").lower() in VBANK_UNREFUNDABLE_PGS:
        raise NotRefundable(
            f"payment {imp_uid} was paid by virtual account through {pg_provider} (다날), which cannot refund a "
            "virtual account; pay the customer back outside PortOne",
            portone_status=status,
        )
    if account is None:
        raise RefundAccountRequired(
            f"payment {imp_uid} was paid by virtual account: PortOne refunds it only into the customer's account; "
            "give refund_account {bank, holder, number}"
        )


def _account_key(rt: Runtime) -> bytes:
    return rt.settings.export_link_secret.get_secret_value().encode()


def _result(refund: Refund, payment: Payment, *, replayed: bool = False) -> RefundResult:
    settled = refund.status == RefundStatus.SUCCEEDED
    total = refund.refunded_total if settled else payment.cancel_amount
    currency = refund.currency
    return RefundResult(
        refund_id=refund.id,
        imp_uid=payment.imp_uid,
        status=RefundStatus(refund.status),
        amount=normalize(refund.amount, currency),
        currency=currency,
        refunded_total=None if total is None else normalize(total, currency),
        remaining=None if total is None else normalize(payment.amount - total, currency),
        cancellation_id=refund.portone_cancellation_id,
        error_message=refund.error_message,
        replayed=replayed,
        refund_account=None
        if refund.refund_account_masked is None
        else {
            "bank": refund.refund_bank or "",
            "holder": refund.refund_holder or "",
            "number": refund.refund_account_masked,
        },
    )


# -- the lease ------------------------------------------------------------------------------


@contextmanager
def payment_lease(rt: Runtime, payment_id: int) -> Iterator[str]:
    """Hold the payment's refund lease; waits for another holder up to the configured time."""
    owner = uuid.uuid4().hex
    deadline = time.monotonic() + rt.settings.refund_lock_wait_seconds
    pause = LEASE_FIRST_PAUSE
    while True:
        now = utcnow()
        with rt.db.write() as session:
            result = session.execute(
                update(Payment)
                .where(
                    Payment.id == payment_id,
                    (Payment.refund_lock_owner.is_(None)) | (Payment.refund_lock_expires_at < now),
                )
                .values(
                    refund_lock_owner=owner,
                    refund_lock_expires_at=now + timedelta(seconds=rt.settings.refund_lock_lease_seconds),
                )
                .execution_options(synchronize_session=False)
            )
            taken = cast(CursorResult[Any], result).rowcount
        if taken:
            break
        if time.monotonic() > deadline:
            raise Conflict("another refund of this payment is in progress; try again in a moment")
        # Back off: every waiter polls with a write, so many waiters polling fast would take the
        # CPU and connections the holder needs to finish.
        time.sleep(random.uniform(pause / 2, pause))  # noqa: S311 - jitter, not security
        pause = min(pause * 2, LEASE_MAX_PAUSE)
    try:
        yield owner
    finally:
        with rt.db.write() as session:
            session.execute(
                update(Payment)
                .where(Payment.id == payment_id, Payment.refund_lock_owner == owner)
                .values(refund_lock_owner=None, refund_lock_expires_at=None)
                .execution_options(synchronize_session=False)
            )


# -- settling attempts ----------------------------------------------------------------------


def _claim_cancellation(refund: Refund, fetched: GatewayPayment, taken: set[str]) -> str | None:
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


def _settle_from_portone(
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
        claimed = _claim_cancellation(refund, fetched, taken)
    if fetched.cancel_amount >= before + refund.amount and claimed is not None:
        _mark(refund, RefundStatus.SUCCEEDED, cancellation_id=claimed, refunded_total=fetched.cancel_amount)
    elif own is not None and fetched.cancellation_states.get(own) == CancellationState.FAILED:
        _mark(
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
        _mark(
            refund,
            RefundStatus.UNKNOWN,
            error=f"PortOne shows cancellation {requested} REQUESTED (the PG is applying it); asked again later",
            error_code=PENDING_AT_PORTONE,
            cancellation_id=requested,
        )
    elif fetched.cancel_amount == before and _may_still_apply(refund, grace_seconds):
        if refund.status == RefundStatus.UNKNOWN and refund.error_code == ANSWER_LOST:
            return  # already waiting
        _mark(
            refund,
            RefundStatus.UNKNOWN,
            error="no answer from PortOne and it does not show this refund yet: it may still apply it; "
            "asked again later, never resent",
            error_code=ANSWER_LOST,
        )
    elif fetched.cancel_amount == before:
        _mark(refund, RefundStatus.FAILED, error="PortOne did not apply this refund (confirmed by re-query)")
    else:
        _mark(refund, RefundStatus.UNKNOWN, error="PortOne's refunded total does not explain this attempt")
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


def _mark(
    refund: Refund,
    status: RefundStatus,
    *,
    cancellation_id: str | None = None,
    refunded_total: Decimal | None = None,
    error: str | None = None,
    error_code: object = None,
) -> None:
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
            _settle_from_portone(
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
                _mark(
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


# -- refund ---------------------------------------------------------------------------------


def _validated(reason: str, idempotency_key: str) -> tuple[str, str]:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequest("a refund needs a reason")
    if len(reason) > MAX_REASON_LENGTH:
        raise InvalidRequest(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    key = (idempotency_key or "").strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"an idempotency key of 1 to {MAX_KEY_LENGTH} characters is required")
    return reason, key


def _requested(amount: object, currency: str) -> Decimal | None:
    """None (the whole remainder), text by the one grammar for typed money, or an exact number."""
    if amount is None:
        return None
    try:
        if isinstance(amount, str):
            return parse_typed_amount(amount, currency)
        value = parse_decimal(amount)
        if value <= 0:
            raise InvalidAmount("a refund amount must be positive")
        if value > MAX_AMOUNT:
            raise InvalidAmount(f"amount {amount} is too large")
    except InvalidAmount as exc:
        raise InvalidRequest(str(exc)) from None
    # The currency's own precision is checked once the payment is known, under the lease.
    return value


def _replay(session: Session, key: str, fingerprint: str, *, settled_only: bool = False) -> RefundResult | None:
    """The recorded answer for this key, if there is one. An attempt still in flight has none
    yet: the caller waits for the lease, by which time that attempt has been settled. With
    `settled_only`, an unknown outcome is not answered either: the caller settles it first (asking
    PortOne), so retrying the same request learns how it ended."""
    existing = session.scalar(select(Refund).where(Refund.idempotency_key == key))
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise InvalidRequest("this idempotency key was already used for a different refund request")
    if existing.status == RefundStatus.PENDING or (settled_only and existing.status == RefundStatus.UNKNOWN):
        return None
    return _result(existing, existing.payment, replayed=True)


def result_for_key(rt: Runtime, key: str, *, actor: str = "system") -> RefundResult | None:
    """The outcome of the attempt made under `key`, settled as far as PortOne shows it, or None
    when none was made. For a resumed approval: its refund was sent once already, whatever
    account is typed this time."""
    with rt.db.read() as session:
        found = session.execute(
            select(Refund.id, Payment.imp_uid).join(Payment).where(Refund.idempotency_key == key)
        ).first()
    if found is None:
        return None
    settle_with_lease(rt, imp_uid=found.imp_uid, actor=actor)
    with rt.db.read() as session:
        attempt = session.get_one(Refund, found.id)
        return _result(attempt, attempt.payment, replayed=True)


def refund(
    rt: Runtime,
    *,
    imp_uid: str,
    amount: object | None,
    reason: str,
    actor: str,
    idempotency_key: str,
    source: str = "ops",
    refund_account: object = None,
) -> RefundResult:
    """Refund `amount` (None: the whole remainder) of a payment, exactly once per idempotency key.

    `refund_account` ({bank, holder, number} or a RefundAccount): where a virtual-account payment is
    paid back; required for one (RefundAccountRequired otherwise, nothing sent). Only its bank, holder
    and masked number are recorded."""
    reason, key = _validated(reason, idempotency_key)
    account = parse_refund_account(refund_account)
    with rt.db.read() as session:
        payment = session.scalar(select(Payment).where(Payment.imp_uid == imp_uid))
        if payment is None:
            raise NotFound(f"no payment {imp_uid!r} in our records")
        payment_id = payment.id
        requested = _requested(amount, payment.currency)
        fingerprint = _fingerprint(imp_uid, requested, reason, account, key=_account_key(rt))
        replay = _replay(session, key, fingerprint, settled_only=True)
        if replay is not None:
            return replay
        check_refund_account(
            imp_uid=imp_uid,
            pay_method=payment.pay_method,
            pg_provider=payment.pg_provider,
            status=payment.status,
            account=account,
        )

    with payment_lease(rt, payment_id):
        settle_open_attempts(rt, imp_uid=imp_uid, actor=actor)
        with rt.db.read() as session:
            replay = _replay(session, key, fingerprint)  # this key's attempt, settled as far as PortOne shows
        if replay is not None:
            return replay
        _refuse_while_pending(rt, payment_id)
        fetched = rt.gateway.get_payment(imp_uid)
        with rt.db.write() as session:
            replay = _replay(session, key, fingerprint)
            if replay is not None:
                return replay
            payment = apply_payment(session, fetched, source="refund").payment
            if fetched.status == PortOneStatus.PAID:  # PortOne's own word on the method and PG
                check_refund_account(
                    imp_uid=imp_uid,
                    pay_method=fetched.pay_method,
                    pg_provider=fetched.pg_provider,
                    status=str(fetched.status),
                    account=account,
                )
            attempt = _record_attempt(session, payment, fetched, requested, reason, actor, key, fingerprint, source)
            if account is not None and fetched.pay_method == VBANK:
                _record_account(session, attempt, account, actor)
        if attempt.status == RefundStatus.REJECTED:
            _raise_rejection(attempt, fetched)
        return _send(rt, refund_id=attempt.id, fetched=fetched, actor=actor, refund_account=account)


def _record_account(session: Session, attempt: Refund, account: RefundAccount, actor: str) -> None:
    """The refund account with the attempt: bank, holder, number masked (never the full number)."""
    attempt.refund_bank = account.bank
    attempt.refund_holder = account.holder
    attempt.refund_account_masked = account.masked_number
    audit.record(
        session,
        actor=actor,
        action="refund.account",
        target=attempt.payment.imp_uid,
        refund_id=attempt.id,
        bank=account.bank,
        holder=account.holder,
        account=account.masked_number,
    )


def _refuse_while_pending(rt: Runtime, payment_id: int) -> None:
    """PortOne's remainder does not yet count a REQUESTED cancel, nor one it may still be applying
    (its answer was lost), so no new refund until that attempt is settled. Called under the lease,
    after settling: a PENDING attempt left now is one a dead process sent, within the grace."""
    with rt.db.read() as session:
        pending = session.execute(
            select(Refund.id, Refund.error_code)
            .where(
                Refund.payment_id == payment_id,
                (Refund.status == RefundStatus.PENDING)
                | ((Refund.status == RefundStatus.UNKNOWN) & Refund.error_code.in_([PENDING_AT_PORTONE, ANSWER_LOST])),
            )
            .limit(1)
        ).first()
    if pending is None:
        return
    if pending.error_code == PENDING_AT_PORTONE:
        raise Conflict(
            f"refund #{pending.id} is still being processed at PortOne (REQUESTED); "
            "a new refund waits until PortOne shows its outcome"
        )
    raise Conflict(
        f"refund #{pending.id} got no answer from PortOne, which may still apply it; a new refund waits "
        f"until PortOne shows it or {rt.settings.refund_unknown_grace_seconds:g} s have passed since it was sent"
    )


def _record_attempt(
    session: Session,
    payment: Payment,
    fetched: GatewayPayment,
    requested: Decimal | None,
    reason: str,
    actor: str,
    key: str,
    fingerprint: str,
    source: str,
) -> Refund:
    remaining = fetched.cancellable_amount
    amount = remaining if requested is None else requested
    attempt = Refund(
        payment=payment,
        amount=amount,
        currency=fetched.currency,
        reason=reason,
        requested_by=actor,
        source=source,
        idempotency_key=key,
        request_fingerprint=fingerprint,
        checksum=remaining,
        cancel_amount_before=fetched.cancel_amount,
    )
    error = None
    if fetched.status == PortOneStatus.CANCELLED:
        error = "nothing left to refund: the payment is cancelled at PortOne"
    elif fetched.status != PortOneStatus.PAID:
        error = f"the payment is {fetched.status} at PortOne; only paid payments can be refunded"
    elif requested is None and amount <= 0:
        error = "nothing left to refund"
    if error is None:
        try:
            if requested is not None or fetched.currency.upper() in CURRENCY_EXPONENTS:
                validate_amount(amount, fetched.currency)  # the whole remainder elsewhere: PortOne's figure
        except InvalidAmount as exc:
            error = str(exc)
    if error is None and amount > remaining:
        error = f"exceeds the refundable remainder {remaining} {fetched.currency}"
    if error is None:
        try:
            partial_refunds.refuse_partial(fetched, amount)
        except FullRefundOnly as exc:
            error = str(exc)
            attempt.error_code = FULL_REFUND_ONLY
    if error is not None:
        attempt.status = RefundStatus.REJECTED
        attempt.error_message = error
        attempt.completed_at = utcnow()
    session.add(attempt)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="refund.rejected" if error else "refund.requested",
        target=payment.imp_uid,
        refund_id=attempt.id,
        amount=amount,
        currency=fetched.currency,
        checksum=remaining,
        error=error,
    )
    return attempt


def _raise_rejection(attempt: Refund, fetched: GatewayPayment) -> None:
    message = attempt.error_message or "refund refused"
    if attempt.error_code == FULL_REFUND_ONLY:
        partial_refunds.refuse_partial(fetched, attempt.amount)  # raises FullRefundOnly: escrow, phone
    if fetched.status == PortOneStatus.PAID and attempt.amount > fetched.cancellable_amount:
        raise RefundExceedsRemaining(attempt.amount, fetched.cancellable_amount, fetched.currency)
    if fetched.status != PortOneStatus.PAID:
        raise NotRefundable(message, portone_status=str(fetched.status))
    raise InvalidRequest(message)


def _send(
    rt: Runtime, *, refund_id: int, fetched: GatewayPayment, actor: str, refund_account: RefundAccount | None = None
) -> RefundResult:
    with rt.db.read() as session:
        attempt = session.get_one(Refund, refund_id)
        amount, checksum, reason = attempt.amount, attempt.checksum, attempt.reason
    checksum = checksum if checksum is not None else fetched.cancellable_amount
    # The whole remainder of a payment in a currency we do not list (a forgery's cancel) is sent as
    # "all of it", PortOne's own figure, guarded by the checksum: we cannot write its minor units.
    whole = amount == checksum and fetched.currency.upper() not in CURRENCY_EXPONENTS
    try:
        result = rt.gateway.cancel_payment(
            imp_uid=fetched.imp_uid,
            amount=None if whole else amount,
            checksum=checksum,
            reason=reason,
            refund_account=refund_account if fetched.pay_method == VBANK else None,
            pg_provider=fetched.pg_provider,
        )
    except CancellationPending as exc:
        with rt.db.write() as session:
            attempt = session.get_one(Refund, refund_id)
            _mark(
                attempt,
                RefundStatus.UNKNOWN,
                error=str(exc),
                error_code=PENDING_AT_PORTONE,
                cancellation_id=exc.cancellation_id,
            )
            audit.record(session, actor=actor, action="refund.pending", target=fetched.imp_uid, refund_id=refund_id)
            return _result(attempt, attempt.payment)
    except OutcomeUnknown as exc:
        return _settle_after_silence(rt, refund_id=refund_id, imp_uid=fetched.imp_uid, actor=actor, cause=exc)
    except (GatewayRejected, GatewayUnauthorized, GatewayNotFound, GatewayUnavailable) as exc:
        # PortOne's own refusal (its envelope), or never sent: nothing was applied.
        partial = isinstance(exc, GatewayRejected) and amount < fetched.cancellable_amount
        if isinstance(exc, GatewayRejected) and exc.portone_code == NOTHING_TO_CANCEL:
            _refused_as_nothing_left(rt, refund_id=refund_id, imp_uid=fetched.imp_uid, actor=actor, exc=exc)
        with rt.db.write() as session:
            attempt = session.get_one(Refund, refund_id)
            prefix = "not sent, PortOne unreachable: " if isinstance(exc, GatewayUnavailable) else "PortOne refused: "
            advice = f" ({partial_refunds.PARTIAL_REFUSED_ADVICE})" if partial else ""
            _mark(attempt, RefundStatus.FAILED, error=prefix + str(exc) + advice, error_code=exc.portone_code)
            audit.record(session, actor=actor, action="refund.failed", target=fetched.imp_uid, refund_id=refund_id)
        if partial:
            raise PartialRefundRefused(
                f"{exc} ({partial_refunds.PARTIAL_REFUSED_ADVICE})",
                portone_message=str(exc),
                http_status=exc.http_status,
                portone_code=exc.portone_code,
            ) from exc
        raise
    except GatewayError as exc:  # any other answer to a cancel: it may have been applied
        return _settle_after_silence(rt, refund_id=refund_id, imp_uid=fetched.imp_uid, actor=actor, cause=exc)
    except InvalidRequest as exc:  # the client refused to build the call (e.g. a bank the PG cannot take)
        with rt.db.write() as session:
            attempt = session.get_one(Refund, refund_id)
            _mark(attempt, RefundStatus.FAILED, error=f"not sent: {exc}")
            audit.record(session, actor=actor, action="refund.failed", target=fetched.imp_uid, refund_id=refund_id)
        raise
    with rt.db.write() as session:
        attempt = session.get_one(Refund, refund_id)
        taken = {r.portone_cancellation_id for r in attempt.payment.refunds if r.portone_cancellation_id}
        claimed = _claim_cancellation(attempt, result, taken)
        _mark(attempt, RefundStatus.SUCCEEDED, cancellation_id=claimed, refunded_total=result.cancel_amount)
        payment = apply_payment(session, result, source="refund").payment
        if result.status == PortOneStatus.CANCELLED:  # a forged virtual account, refunded by a person
            resolve_open(
                session,
                kind=AlertKind.FORGERY_REFUND_ACCOUNT_NEEDED,
                imp_uid=fetched.imp_uid,
                note=f"refunded in full into the customer's account (refund #{refund_id})",
                actor=actor,
            )
        audit.record(
            session,
            actor=actor,
            action="refund.succeeded",
            target=fetched.imp_uid,
            refund_id=refund_id,
            amount=amount,
            refunded_total=result.cancel_amount,
        )
        return _result(attempt, payment)


def _keep_pg_error(attempt: Refund, payment: Payment, cause: Exception) -> None:
    """A V2 cancel answered PG_PROVIDER and not shown applied: keep what the PG said on the attempt
    (with the advice to refund in full when it was partial: the PG may refund this payment in full
    only, see services.refunds.full_only)."""
    if attempt.status == RefundStatus.SUCCEEDED or not isinstance(cause, PgProviderFailure):
        return
    remaining = payment.amount - (attempt.cancel_amount_before or Decimal(0))
    advice = f" ({partial_refunds.PARTIAL_REFUSED_ADVICE})" if attempt.amount < remaining else ""
    attempt.error_message = f"{attempt.error_message or ''} {cause}{advice}".strip()


def _refused_as_nothing_left(rt: Runtime, *, refund_id: int, imp_uid: str, actor: str, exc: GatewayRejected) -> None:
    """PortOne refused with V1 `code: 1`: the payment is missing or already fully cancelled (perhaps
    in its console, after our read). Read it back: fully cancelled, the attempt failed because nothing
    is left (NotRefundable, nothing_left), and PortOne's record is applied. Otherwise returns, and the
    refusal is handled as any other."""
    try:
        after = rt.gateway.get_payment(imp_uid)
    except GatewayError:
        return
    if after.status != PortOneStatus.CANCELLED:
        return
    message = f"nothing left to refund: PortOne says the payment is fully cancelled ({exc})"
    with rt.db.write() as session:
        attempt = session.get_one(Refund, refund_id)
        _mark(attempt, RefundStatus.FAILED, error=message, error_code=exc.portone_code)
        apply_payment(session, after, source="refund")
        audit.record(session, actor=actor, action="refund.failed", target=imp_uid, refund_id=refund_id)
    raise NotRefundable(message, portone_status=str(after.status)) from exc


def _settle_after_silence(rt: Runtime, *, refund_id: int, imp_uid: str, actor: str, cause: Exception) -> RefundResult:
    """The cancel's answer was lost: read the payment back and decide, never resend."""
    try:
        fetched = rt.gateway.get_payment(imp_uid)
    except GatewayError:
        fetched = None
    with rt.db.write() as session:
        attempt = session.get_one(Refund, refund_id)
        if fetched is not None:
            _settle_from_portone(
                session, attempt, fetched, actor=actor, grace_seconds=rt.settings.refund_unknown_grace_seconds
            )
            payment = apply_payment(session, fetched, source="refund").payment
        else:
            _mark(attempt, RefundStatus.UNKNOWN, error=f"no answer from PortOne: {cause}", error_code=ANSWER_LOST)
            payment = attempt.payment
        _keep_pg_error(attempt, payment, cause)
        if attempt.status == RefundStatus.UNKNOWN and attempt.error_code == ANSWER_LOST:
            raise_alert(
                session,
                kind=AlertKind.REFUND_OUTCOME_UNKNOWN,
                imp_uid=imp_uid,
                merchant_uid=payment.merchant_uid,
                message=f"refund #{refund_id} of {attempt.amount} {attempt.currency}: PortOne did not answer",
                db_value=attempt.amount,
            )
        result = _result(attempt, payment)
        if isinstance(cause, PgProviderFailure) and attempt.status != RefundStatus.SUCCEEDED:
            result = replace(result, pg_message=cause.pg_message)
        return result
