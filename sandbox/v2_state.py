"""PortOne V2 payments held by the sandbox, and their rendering as V2 ``Payment`` objects.

V2 differs from V1 in ways that matter to a client:

- the merchant names the payment (``paymentId``); PortOne names each attempt (``transactionId``);
- amounts are integers in the currency's minor unit (KRW 50000 is ``50000``, USD 6.00 is ``600``);
- statuses are ``READY``, ``VIRTUAL_ACCOUNT_ISSUED``, ``PAY_PENDING``, ``PAID``,
  ``PARTIAL_CANCELLED``, ``CANCELLED`` and ``FAILED`` (a partly cancelled payment changes status);
- times are RFC 3339 strings with milliseconds.

The V2 store is separate from the V1 one: a payment made through the V2 checkout is served by the
V2 API, one made through the V1 checkout by the V1 API.
"""

from __future__ import annotations

import random
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

STATUSES: tuple[str, ...] = (
    "READY",
    "VIRTUAL_ACCOUNT_ISSUED",
    "PAY_PENDING",
    "PAID",
    "PARTIAL_CANCELLED",
    "CANCELLED",
    "FAILED",
)
PAID_STATES = frozenset({"PAID", "PARTIAL_CANCELLED", "CANCELLED"})
# GET /payments filters name the pending state "PENDING" (PaymentStatus enum) while the payment
# itself says "PAY_PENDING" (the Payment discriminator); both spellings select it.
FILTER_ALIASES = {"PENDING": "PAY_PENDING"}

MERCHANT_ID = "merchant-5ad0b0c0-0000-4000-8000-00000000c4e7"
_PG_MERCHANT_IDS = {"KCP_V2": "T0000", "EXIMBAY_V2": "1849705C64"}


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def rfc3339(ms: int) -> str:
    """``2024-04-25T10:00:00.000Z`` (UTC, milliseconds)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_rfc3339(text: str) -> int:
    """Milliseconds since the epoch; raises ValueError for anything but an RFC 3339 date-time."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"{text!r} is not an RFC 3339 date-time")
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone offset")
    return int(moment.timestamp() * 1000)


@dataclass(slots=True, eq=False)
class V2Cancellation:
    id: str
    pg_cancellation_id: str
    total_amount: int
    vat_amount: int
    reason: str
    requested_at: int
    cancelled_at: int
    trigger: str  # API | CONSOLE
    # A virtual-account refund's `refundAccount` as given with the cancel (bank, number, holderName),
    # kept with the cancellation (schema/v2.openapi.json CancelPaymentBodyRefundAccount); not rendered.
    refund_account: dict[str, str] | None = None


@dataclass(slots=True, eq=False)
class V2Payment:
    seq: int
    id: str
    transaction_id: str
    status: str
    total: int  # minor units
    currency: str
    order_name: str
    pg_provider: str  # PortOne V2 PgProvider, e.g. KCP_V2, EXIMBAY_V2
    pay_method: str  # card | virtual_account | transfer | mobile
    requested_at: int  # epoch milliseconds
    updated_at: int
    status_changed_at: int
    paid_at: int | None = None
    failed_at: int | None = None
    cancelled_at: int | None = None
    cancelled: int = 0
    customer: dict[str, str] = field(default_factory=dict)
    card_number: str | None = None  # masked
    card_brand: str | None = None
    card_name: str | None = None
    card_issuer: str | None = None
    card_bin: str | None = None
    approval_number: str | None = None
    pg_tx_id: str | None = None
    failure: dict[str, str] | None = None
    virtual_account: dict[str, Any] | None = None
    cancellations: list[V2Cancellation] = field(default_factory=list)
    pending_cancellations: list[V2Cancellation] = field(default_factory=list)  # REQUESTED, not applied
    failed_cancellations: list[V2Cancellation] = field(default_factory=list)  # REQUESTED, then refused by the PG
    notice_urls: list[str] = field(default_factory=list)
    custom_data: str | None = None
    user_agent: str | None = None
    ip_address: str = "127.0.0.1"
    escrow: bool = False  # cancelled only in full (sandbox.partial_cancel)

    @property
    def cancellable(self) -> int:
        return self.total - self.cancelled

    def sort_value(self, sort_by: str) -> int:
        return self.status_changed_at if sort_by == "STATUS_CHANGED_AT" else self.requested_at

    def timestamp(self, timestamp_type: str) -> int:
        return self.requested_at if timestamp_type == "CREATED_AT" else self.status_changed_at


@dataclass(slots=True)
class PreRegistration:
    payment_id: str
    total_amount: int | None
    tax_free_amount: int | None
    currency: str | None


@dataclass(slots=True)
class ListQuery:
    timestamp_type: str = "STATUS_CHANGED_AT"
    from_ms: int = 0
    until_ms: int = 0
    statuses: frozenset[str] | None = None
    currency: str | None = None
    version: str | None = None
    sort_by: str = "REQUESTED_AT"
    descending: bool = True
    number: int = 0
    size: int = 10


class V2Store:
    """All V2 payments and pre-registrations of one sandbox; every change happens under ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._rng = random.Random(secrets.randbits(64))
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self._payments: dict[str, V2Payment] = {}
            self._prepared: dict[str, PreRegistration] = {}
            self._seq = 0

    def __len__(self) -> int:
        return len(self._payments)

    # ---- ids --------------------------------------------------------------------------------
    def new_uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def new_digits(self, n: int) -> str:
        return f"{self._rng.randrange(10**n):0{n}d}"

    # ---- payments ---------------------------------------------------------------------------
    def get(self, payment_id: str) -> V2Payment | None:
        return self._payments.get(payment_id)

    def put(self, payment: V2Payment) -> V2Payment:
        """Insert a payment, or replace an earlier attempt of the same paymentId (keeps its seq)."""
        with self.lock:
            existing = self._payments.get(payment.id)
            if existing is not None:
                payment.seq = existing.seq
            else:
                self._seq += 1
                payment.seq = self._seq
            self._payments[payment.id] = payment
            return payment

    def update(self, payment: V2Payment, mutate: Callable[[V2Payment], None]) -> None:
        with self.lock:
            mutate(payment)

    def query(self, q: ListQuery) -> tuple[int, list[V2Payment]]:
        """(total matching, one page) for GET /payments."""
        with self.lock:
            found = [
                p
                for p in self._payments.values()
                if q.from_ms <= p.timestamp(q.timestamp_type) <= q.until_ms
                and (q.statuses is None or p.status in q.statuses)
                and (q.currency is None or p.currency == q.currency)
                and (q.version is None or q.version == "V2")
            ]
            found.sort(key=lambda p: (p.sort_value(q.sort_by), p.seq), reverse=q.descending)
            start = q.number * q.size
            return len(found), found[start : start + q.size]

    # ---- pre-registrations ------------------------------------------------------------------
    def get_prepared(self, payment_id: str) -> PreRegistration | None:
        return self._prepared.get(payment_id)

    def put_prepared(self, prepared: PreRegistration) -> None:
        with self.lock:
            self._prepared[prepared.payment_id] = prepared


# ---- rendering ------------------------------------------------------------------------------


def _customer(p: V2Payment) -> dict[str, Any]:
    return {k: v for k, v in p.customer.items() if v}


def _amount(p: V2Payment) -> dict[str, int]:
    vat = p.total // 11 if p.currency == "KRW" else 0
    return {
        "total": p.total,
        "taxFree": 0,
        "vat": vat,
        "supply": p.total - vat,
        "discount": 0,
        "paid": p.total if p.status in PAID_STATES else 0,
        "cancelled": p.cancelled,
        "cancelledTaxFree": 0,
    }


def _method(p: V2Payment) -> dict[str, Any] | None:
    if p.status == "READY":
        return None  # the window is open (or was left): no method was used yet
    if p.pay_method == "card":
        card = {
            "publisher": p.card_issuer,
            "issuer": p.card_issuer,
            "brand": p.card_brand,
            "type": "CREDIT",
            "ownerType": "PERSONAL",
            "bin": p.card_bin,
            "name": p.card_name,
            "number": p.card_number,
        }
        method: dict[str, Any] = {"type": "PaymentMethodCard", "card": {k: v for k, v in card.items() if v}}
        if p.approval_number:
            method["approvalNumber"] = p.approval_number
            method["installment"] = {"month": 0, "isInterestFree": False}
            method["pointUsed"] = False
        return method
    if p.pay_method == "virtual_account" and p.virtual_account:
        return {"type": "PaymentMethodVirtualAccount", **p.virtual_account}
    if p.pay_method == "transfer":
        return {"type": "PaymentMethodTransfer", "bank": "SHINHAN"}
    if p.pay_method == "mobile":  # PaymentMethodMobile (v2.openapi.json)
        phone = p.customer.get("phoneNumber")
        return {"type": "PaymentMethodMobile", **({"phoneNumber": phone} if phone else {})}
    return None


def _channel(p: V2Payment) -> dict[str, Any]:
    return {
        "type": "TEST",
        "id": f"channel-id-{p.pg_provider.lower()}",
        "key": f"channel-key-{p.pg_provider.lower()}-sandbox",
        "name": f"{p.pg_provider} (sandbox)",
        "pgProvider": p.pg_provider,
        "pgMerchantId": _PG_MERCHANT_IDS.get(p.pg_provider, "SANDBOX"),
    }


def render_cancellation(
    c: V2Cancellation, payment_id: str, base_url: str, *, status: str = "SUCCEEDED"
) -> dict[str, Any]:
    if status in ("REQUESTED", "FAILED"):  # Requested/FailedPaymentCancellation: nothing cancelled, no receipt
        return {
            "status": status,
            "id": c.id,
            "totalAmount": c.total_amount,
            "taxFreeAmount": 0,
            "vatAmount": c.vat_amount,
            "reason": c.reason,
            "requestedAt": rfc3339(c.requested_at),
            "trigger": c.trigger,
        }
    return {
        "status": status,
        "id": c.id,
        "pgCancellationId": c.pg_cancellation_id,
        "totalAmount": c.total_amount,
        "taxFreeAmount": 0,
        "vatAmount": c.vat_amount,
        "reason": c.reason,
        "cancelledAt": rfc3339(c.cancelled_at),
        "requestedAt": rfc3339(c.requested_at),
        "receiptUrl": f"{base_url}/sandbox/v2/receipts/{payment_id}?cancellation={c.id}",
        "trigger": c.trigger,
    }


def render_payment(p: V2Payment, base_url: str, store_id: str) -> dict[str, Any]:
    """The V2 ``Payment`` object for the payment's status (the discriminator is ``status``).

    ``origin`` is not in the shared schema (PortOne API 1.16.0) but portone-server-sdk 0.21.0
    requires it on every payment and refuses the whole answer without it, so it is always sent.
    """
    out: dict[str, Any] = {
        "status": p.status,
        "id": p.id,
        "transactionId": p.transaction_id,
        "merchantId": MERCHANT_ID,
        "storeId": store_id,
    }
    method = _method(p)
    if method is not None:
        out["method"] = method
    out["channel"] = _channel(p)
    if p.escrow:  # PaymentEscrow, "에스크로 결제인 경우 존재합니다" (v2.openapi.json PaidPayment.escrow)
        out["escrow"] = {"status": "BEFORE_REGISTERED"}
    out.update(
        {
            "version": "V2",
            "requestedAt": rfc3339(p.requested_at),
            "updatedAt": rfc3339(p.updated_at),
            "statusChangedAt": rfc3339(p.status_changed_at),
            "orderName": p.order_name,
            "amount": _amount(p),
            "currency": p.currency,
            "customer": _customer(p),
            "isCulturalExpense": False,
            "origin": {"platformType": "PC", "ipAddress": p.ip_address, "userAgent": p.user_agent or "sandbox"},
        }
    )
    if p.custom_data is not None:
        out["customData"] = p.custom_data
    if p.status in PAID_STATES:
        assert p.paid_at is not None
        out["paidAt"] = rfc3339(p.paid_at)
        out["pgTxId"] = p.pg_tx_id
        out["receiptUrl"] = f"{base_url}/sandbox/v2/receipts/{p.id}"
    if p.status == "PAID":
        out["disputes"] = []
    if p.status in ("PARTIAL_CANCELLED", "CANCELLED"):
        # Every cancellation, whatever its status (PaymentCancellation: REQUESTED, SUCCEEDED or
        # FAILED). A PAID payment's object has no `cancellations` at all (PaidPayment), so one
        # requested or failed before any succeeded cannot be seen there.
        assert p.cancelled_at is not None
        listed = [
            *((c, "SUCCEEDED") for c in p.cancellations),
            *((c, "REQUESTED") for c in p.pending_cancellations),
            *((c, "FAILED") for c in p.failed_cancellations),
        ]
        listed.sort(key=lambda pair: pair[0].requested_at)
        out["cancellations"] = [render_cancellation(c, p.id, base_url, status=status) for c, status in listed]
        out["cancelledAt"] = rfc3339(p.cancelled_at)
    if p.status in ("VIRTUAL_ACCOUNT_ISSUED", "PAY_PENDING") and p.pg_tx_id:
        out["pgTxId"] = p.pg_tx_id
    if p.status == "FAILED":
        assert p.failed_at is not None
        out["failedAt"] = rfc3339(p.failed_at)
        out["failure"] = dict(p.failure or {"reason": "결제에 실패하였습니다."})
    return out
