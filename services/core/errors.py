"""Domain errors raised by `services/`; `api/` and `views/` translate them.

Each class carries how the payment API answers it: `code` (the JSON body's `error`) and
`api_status` (the HTTP status), inherited by its subclasses; `api_message()` and `api_details()`
give the body's `message` and any further fields. api/errors.py renders every PaymentsError from
these alone. (`api_status`, not `http_status`: a GatewayError's `http_status` is PortOne's answer.)

PaymentsError
├── NotFound                 unknown order, payment or refund
├── InvalidRequest           bad input (amount, currency, idempotency key reuse)
│   └── RefundAccountRequired a virtual-account refund without the customer's account
├── Forbidden                the actor's role may not do this
├── Conflict                 the state forbids it (not paid, refund exceeds remainder, busy)
│   ├── RefundExceedsRemaining
│   ├── NotRefundable        PortOne shows the payment cancelled (nothing left) or never paid
│   └── FullRefundOnly       PortOne's record says it cancels this payment only in full (escrow, phone)
├── ForgeryDetected          PortOne's amount or currency differs from our order
└── GatewayError(retryable, http_status, portone_code)
    ├── GatewayNotFound      PortOne does not know the payment
    ├── GatewayUnauthorized  PortOne refused our credentials
    ├── GatewayRejected      PortOne answered with a refusal (code != 0)
    │   └── PartialRefundRefused  ... of a partial refund: the payment may be refundable in full only
    ├── GatewayUnavailable   unreachable, 5xx, or a timeout before anything was sent
    │   └── UnreadableAnswer an answer without what a payment is read from (never guessed)
    └── OutcomeUnknown       the request may have been applied: ask PortOne, never resend
        └── PgProviderFailure  V2 answered PG_PROVIDER (502): the PG reported an error, applied or not
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar


class PaymentsError(Exception):
    """Base of every error the payments services raise on purpose."""

    code: ClassVar[str] = "payments_error"
    api_status: ClassVar[int] = 400

    def api_message(self) -> str:
        return str(self)

    def api_details(self) -> dict[str, object]:
        """Fields the API's error body carries after `error` and `message`."""
        return {}


class NotFound(PaymentsError):
    code = "not_found"
    api_status = 404


class InvalidRequest(PaymentsError):
    code = "invalid_request"
    api_status = 400


class RefundAccountRequired(InvalidRequest):
    """PortOne pays a virtual-account refund into an account the customer names
    (opi/ko/integration/cancel/v1/basic.md): without one, nothing is sent."""

    code = "refund_account_required"
    api_status = 422


class Forbidden(PaymentsError):
    code = "forbidden"
    api_status = 403


class Conflict(PaymentsError):
    code = "conflict"
    api_status = 409


class ApprovalDecisionChanged(Conflict):
    """The operator was told the refund goes out now (or waits for a second operator), but by the time
    they confirmed the figures said otherwise: nothing was done, the quote is to be read again."""

    code = "approval_decision_changed"


class RefundExceedsRemaining(Conflict):
    code = "exceeds_remaining"

    def __init__(self, requested: Decimal, remaining: Decimal, currency: str) -> None:
        super().__init__(f"refund of {requested} {currency} exceeds the refundable remainder {remaining} {currency}")
        self.requested = requested
        self.remaining = remaining
        self.currency = currency

    def api_details(self) -> dict[str, object]:
        return {"remaining": self.remaining, "currency": self.currency}


class NotRefundable(Conflict):
    def __init__(self, message: str, *, portone_status: str) -> None:
        super().__init__(message)
        self.portone_status = portone_status

    @property
    def nothing_left(self) -> bool:
        """Fully cancelled already (perhaps in PortOne's console), as opposed to never paid."""
        return self.portone_status == "cancelled"


class FullRefundOnly(Conflict):
    """A partial refund of a payment PortOne cancels only in full (services.refunds.full_only);
    `reason` names why ("escrow", "phone")."""

    code = "full_refund_only"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def api_details(self) -> dict[str, object]:
        return {"reason": self.reason}


class ForgeryDetected(PaymentsError):
    code = "forgery"
    api_status = 400


class GatewayError(PaymentsError):
    code = "portone_error"
    api_status = 502
    retryable = False

    def __init__(self, message: str, *, http_status: int | None = None, portone_code: int | str | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.portone_code = portone_code


class GatewayNotFound(GatewayError):
    pass


class GatewayUnauthorized(GatewayError):
    pass


class GatewayRejected(GatewayError):
    code = "portone_rejected"

    def api_message(self) -> str:
        return f"PortOne refused: {self}"

    def api_details(self) -> dict[str, object]:
        return {"portone_code": self.portone_code}


class PartialRefundRefused(GatewayRejected):
    """PortOne refused a partial refund. Some payments (a foreign-issued card, card points combined
    with the card) are refunded in full only and nothing in PortOne's record says so: the operator
    is advised to refund the whole remainder. `portone_message`: PortOne's own words."""

    def __init__(
        self,
        message: str,
        *,
        portone_message: str,
        http_status: int | None = None,
        portone_code: int | str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, portone_code=portone_code)
        self.portone_message = portone_message


class GatewayUnavailable(GatewayError):
    code = "portone_unavailable"
    api_status = 503
    retryable = True

    def api_message(self) -> str:
        return f"PortOne could not be reached; nothing was changed. {self}"


class UnreadableAnswer(GatewayUnavailable):
    """PortOne's answer lacks what a payment is read from (amount, currency, status, id) or holds it
    in a form we cannot read. Never guessed (a missing amount read as 0 would judge a real payment
    forged and cancel it): a read counts as PortOne unavailable and is retried; a write's answer is
    an unknown outcome, settled by reading."""


class OutcomeUnknown(GatewayError):
    """A write (cancel) whose answer never came: it may have been applied."""


class CancellationPending(OutcomeUnknown):
    """PortOne accepted the cancel as REQUESTED (V2, an asynchronous PG cancel): it will succeed or
    fail later, and until it shows as SUCCEEDED the payment read back does not count it.
    `cancellation_id` names it, to find its status (REQUESTED, SUCCEEDED, FAILED) later."""

    def __init__(
        self,
        message: str,
        *,
        cancellation_id: str | None = None,
        http_status: int | None = None,
        portone_code: int | str | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, portone_code=portone_code)
        self.cancellation_id = cancellation_id


class PgProviderFailure(OutcomeUnknown):
    """PortOne V2 answered a write with PgProviderError (HTTP 502, type PG_PROVIDER): the PG reported
    an error, which does not say the request was not applied; settled by reading back.
    `pg_message`: the PG's own words (pgMessage)."""

    def __init__(self, message: str, *, pg_message: str | None, http_status: int | None = None) -> None:
        super().__init__(message, http_status=http_status, portone_code="PG_PROVIDER")
        self.pg_message = pg_message
