"""The API's request bodies and response models (validation, and the OpenAPI document).

Money is `ExactAmount`: a Decimal, documented as a JSON number, written digit for digit by
api.responses.ExactJSONResponse. Field order is the order of the keys in the JSON answered.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

ExactAmount = Annotated[Decimal, WithJsonSchema({"type": "number", "description": "exact, never rounded"})]

# -- request bodies -------------------------------------------------------------------------


class OrderBody(BaseModel):
    customer_email: str = Field(max_length=254)
    customer_name: str = Field(max_length=100)
    customer_phone: str | None = Field(default=None, max_length=40)
    currency: str | None = Field(default=None, max_length=3, description="KRW (default) or another fee-table currency")


class CompleteBody(BaseModel):
    imp_uid: str = Field(min_length=1, max_length=64)
    merchant_uid: str = Field(min_length=1, max_length=64)


class RefundAccountBody(BaseModel):
    """Where a virtual-account payment is paid back (PortOne V1 refund_bank/refund_holder/refund_account,
    V2 refundAccount; opi/ko/integration/cancel/v1/basic.md)."""

    bank: str = Field(max_length=8, description="PortOne's bank code (금융결제원 standard): 04 KB국민, 88 신한, ...")
    holder: str = Field(max_length=50, description="the account holder's name")
    number: str = Field(max_length=40, description="the account number (digits, hyphens allowed)")


class RefundBody(BaseModel):
    amount: Decimal | str | None = Field(
        default=None,
        description="JSON number, or a string of digits with optional thousands separators in groups of three "
        "(20,000) and a decimal point only for currencies with minor units (12.50 USD); absent means the whole "
        "remainder",
    )
    reason: str = Field(min_length=1, max_length=500)
    refund_account: RefundAccountBody | None = Field(
        default=None, description="required to refund a virtual-account payment; answered with its number masked"
    )


# -- answers --------------------------------------------------------------------------------


class ErrorBody(BaseModel):
    """Every refusal: `error` is a stable code, `message` a sentence for a person; some codes
    carry more fields (e.g. `exceeds_remaining`: remaining, currency)."""

    model_config = ConfigDict(extra="allow")

    error: str
    message: str


class OrderCreated(BaseModel):
    merchant_uid: str
    amount: ExactAmount
    currency: str
    name: str
    pg: str | None


class OrderState(BaseModel):
    """What the customer's app may read of its order: no personal data."""

    merchant_uid: str
    status: str
    amount: ExactAmount
    currency: str
    paid_at: str | None = Field(description="ISO 8601 with its zone")


class PaymentCompleted(BaseModel):
    status: str
    imp_uid: str
    merchant_uid: str
    amount: ExactAmount
    cancel_amount: ExactAmount
    currency: str
    paid_at: str | None


class NotPaid(ErrorBody):
    """409 `not_paid`: the payment as PortOne shows it (ready, failed, cancelled)."""

    imp_uid: str
    merchant_uid: str
    amount: ExactAmount
    cancel_amount: ExactAmount
    currency: str
    paid_at: str | None
    status: str


class RefundAccountShown(BaseModel):
    bank: str
    holder: str
    number: str = Field(description="masked")


class RefundAnswer(BaseModel):
    refund_id: int
    imp_uid: str
    status: str
    amount: ExactAmount
    currency: str
    refunded_total: ExactAmount | None
    remaining: ExactAmount | None
    cancellation_id: str | None
    replayed: bool
    refund_account: RefundAccountShown | None


class RefundPending(RefundAnswer):
    """202: PortOne's answer was lost (or V2 answered PG_PROVIDER); settled by reading back."""

    message: str


class WebhookAnswer(BaseModel):
    """A delivery's outcome, recorded as webhook event `event_id`. V1: 200 processed, 400 rejected,
    503 PortOne unreachable; V2: 200 processed, or verified and ignored."""

    result: str
    detail: str
    event_id: int


class V2WebhookRefusal(ErrorBody):
    """A V2 delivery rejected: `error` names why (bad_signature, replayed, ...)."""

    result: str
    event_id: int


class V2WebhookUnavailable(ErrorBody):
    """503: PortOne could not be asked; PortOne retries the delivery."""

    event_id: int


class ReconcileScheduleState(BaseModel):
    every_minutes: float
    window: str
    last_run_at: str | None
    last_run_status: str | None
    last_run_finished_at: str | None
    last_finished_at: str | None
    stale: bool


class Liveness(BaseModel):
    """`GET /healthz`: the process answers (nothing else is asked)."""

    status: Literal["ok"]
    mode: str


class ReadinessCheck(BaseModel):
    ok: bool
    state: str = Field(description="`ok`, or the kind of failure: `unreachable`, `refused our key`, `behind head`, ...")


class Readiness(BaseModel):
    """`GET /readyz`: every check (200 when all pass, 503 naming the failed ones)."""

    status: Literal["ready", "not_ready"]
    mode: str
    checks: dict[str, ReadinessCheck] = Field(
        description="database, schema, portone (V1), portone_v2 (when V2 is in use), reconcile_schedule"
    )
    failed: list[str]
    reconcile: ReconcileScheduleState | None = Field(description="null when the database could not be read")
