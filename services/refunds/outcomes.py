"""What became of a refund asked at the desk, in codes the page translates.

One vocabulary for the single refund (services.refunds.desk), the approval queue
(services.refunds.approvals) and every row of a bulk batch (services.refunds.bulk).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from decimal import Decimal

from services.core.errors import (
    Conflict,
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
from services.core.models import RefundStatus
from services.refunds.engine import RefundResult


class RefundOutcome(enum.StrEnum):
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


OUTCOMES = tuple(RefundOutcome)


@dataclass(frozen=True)
class DeskResult:
    """The desk's answer to one refund intent: refunded (or tried), or filed for approval."""

    outcome: RefundOutcome
    imp_uid: str
    currency: str
    amount: Decimal | None  # None: the whole remainder (a request still awaiting approval)
    remaining: Decimal | None
    refund: RefundResult | None
    request_id: int | None
    replayed: bool
    message: str | None = None


def outcome_of_error(exc: PaymentsError) -> RefundOutcome:
    """The code of a refusal or failure raised while refunding."""
    if isinstance(exc, RefundAccountRequired):
        return RefundOutcome.ACCOUNT_NEEDED
    if isinstance(exc, NotRefundable) and exc.portone_status == "paid":
        return RefundOutcome.CANNOT_REFUND
    if isinstance(exc, RefundExceedsRemaining):
        return RefundOutcome.EXCEEDS_REMAINDER
    if isinstance(exc, FullRefundOnly):
        return RefundOutcome.FULL_ONLY
    if isinstance(exc, PartialRefundRefused):
        return RefundOutcome.PARTIAL_REFUSED
    if isinstance(exc, GatewayRejected):
        return RefundOutcome.PORTONE_REFUSED
    if isinstance(exc, GatewayUnavailable):
        return RefundOutcome.UNAVAILABLE
    if isinstance(exc, NotFound):
        return RefundOutcome.NOT_FOUND
    if isinstance(exc, InvalidRequest):
        return RefundOutcome.INVALID
    if isinstance(exc, NotRefundable):
        return RefundOutcome.NOTHING_LEFT if exc.nothing_left else RefundOutcome.NOT_PAID
    if isinstance(exc, Conflict):
        return RefundOutcome.BUSY
    if isinstance(exc, GatewayError):
        return RefundOutcome.PORTONE_REFUSED
    return RefundOutcome.INVALID


OUTCOME_OF_STATUS = {  # a refund attempt's status, as the desk reports it
    RefundStatus.SUCCEEDED: RefundOutcome.REFUNDED,
    RefundStatus.UNKNOWN: RefundOutcome.UNKNOWN,
    RefundStatus.PENDING: RefundOutcome.UNKNOWN,
    RefundStatus.FAILED: RefundOutcome.FAILED,
    RefundStatus.REJECTED: RefundOutcome.FAILED,
}


def from_result(result: RefundResult, *, request_id: int | None = None, replayed: bool = False) -> DeskResult:
    """The desk's answer for a refund the engine made (or replayed)."""
    return DeskResult(
        outcome=OUTCOME_OF_STATUS[result.status],
        imp_uid=result.imp_uid,
        currency=result.currency,
        amount=result.amount,
        remaining=result.remaining,
        refund=result,
        request_id=request_id,
        replayed=replayed or result.replayed,
        message=result.error_message,
    )
