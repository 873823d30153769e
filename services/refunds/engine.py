"""Refunds: never above what was paid, never sent twice.

One refund at a time per payment (the payment's lease: services.refunds.lease). Under the lease:
settle any earlier attempt whose outcome is unknown (services.refunds.settlement), refresh the
payment from PortOne, check the remainder, record the attempt, send it once with PortOne's
`checksum`, record the answer. An answer that never came is settled by reading the payment back
from PortOne, never by sending again.

A virtual-account payment is paid back into the customer's account, given with the cancel
(opi/ko/integration/cancel/v1/basic.md; V2 `refundAccount`): without one, or through a PG that
cannot refund a virtual account (다날), the refund is refused before anything is recorded or sent.
The account's full number is used in that one cancel call only; the attempt keeps its bank, holder
and masked number, and the idempotency fingerprint covers it (a keyed digest of the number).
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from dataclasses import dataclass, replace
from decimal import Decimal

from sqlalchemy import select
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
from services.portone.types import GatewayPayment, PortOneStatus
from services.refunds import full_only as partial_refunds
from services.refunds.lease import payment_lease
from services.refunds.settlement import (
    ANSWER_LOST,
    PENDING_AT_PORTONE,
    claim_cancellation,
    mark_attempt,
    settle_from_portone,
    settle_open_attempts,
    settle_with_lease,
)
from services.runtime import Runtime

MAX_REASON_LENGTH = 500
MAX_KEY_LENGTH = 200
FULL_REFUND_ONLY = "full_refund_only"  # error_code of a partial refund PortOne's record forbids (escrow, phone)
NOTHING_TO_CANCEL = 1  # V1 `code` of a cancel refused because the payment is missing or fully cancelled


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


# -- refund ---------------------------------------------------------------------------------


def checked_reason(reason: str | None) -> str:
    """A refund's reason, stripped: required, at most MAX_REASON_LENGTH characters, visible text and line
    breaks only (InvalidRequest). It goes to PortOne and into our records, and people read it."""
    text = (reason or "").strip()
    if not text:
        raise InvalidRequest("a refund needs a reason")
    if any(unicodedata.category(char) in ("Cc", "Cf", "Cs") and char not in "\n\t" for char in text):
        raise InvalidRequest("the reason holds a control or invisible character: type it again in plain text")
    if len(text) > MAX_REASON_LENGTH:
        raise InvalidRequest(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    return text


def checked_key(idempotency_key: str | None) -> str:
    """An idempotency key, stripped: 1 to MAX_KEY_LENGTH characters (InvalidRequest)."""
    key = (idempotency_key or "").strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidRequest(f"an idempotency key of 1 to {MAX_KEY_LENGTH} characters is required")
    return key


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
    reason, key = checked_reason(reason), checked_key(idempotency_key)
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
            mark_attempt(
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
            mark_attempt(attempt, RefundStatus.FAILED, error=prefix + str(exc) + advice, error_code=exc.portone_code)
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
            mark_attempt(attempt, RefundStatus.FAILED, error=f"not sent: {exc}")
            audit.record(session, actor=actor, action="refund.failed", target=fetched.imp_uid, refund_id=refund_id)
        raise
    with rt.db.write() as session:
        attempt = session.get_one(Refund, refund_id)
        taken = {r.portone_cancellation_id for r in attempt.payment.refunds if r.portone_cancellation_id}
        claimed = claim_cancellation(attempt, result, taken)
        mark_attempt(attempt, RefundStatus.SUCCEEDED, cancellation_id=claimed, refunded_total=result.cancel_amount)
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
        mark_attempt(attempt, RefundStatus.FAILED, error=message, error_code=exc.portone_code)
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
            settle_from_portone(
                session, attempt, fetched, actor=actor, grace_seconds=rt.settings.refund_unknown_grace_seconds
            )
            payment = apply_payment(session, fetched, source="refund").payment
        else:
            mark_attempt(
                attempt, RefundStatus.UNKNOWN, error=f"no answer from PortOne: {cause}", error_code=ANSWER_LOST
            )
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
