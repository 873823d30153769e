"""Payment records and their rendering as PortOne V1 ``PaymentAnnotation``."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox.money import ZERO

STATUSES: tuple[str, ...] = ("ready", "paid", "cancelled", "failed")

# Every field of PaymentAnnotation, in schema order.
PAYMENT_FIELDS: tuple[str, ...] = (
    "imp_uid", "merchant_uid", "pay_method", "channel", "pg_provider", "emb_pg_provider",
    "pg_tid", "pg_id", "escrow", "apply_num", "bank_code", "bank_name", "card_code",
    "card_name", "card_issuer_code", "card_issuer_name", "card_publisher_code",
    "card_publisher_name", "card_quota", "card_number", "card_type", "vbank_code",
    "vbank_name", "vbank_num", "vbank_holder", "vbank_date", "vbank_issued_at", "name",
    "amount", "cancel_amount", "currency", "buyer_name", "buyer_email", "buyer_tel",
    "buyer_addr", "buyer_postcode", "custom_data", "user_agent", "status", "started_at",
    "paid_at", "failed_at", "cancelled_at", "fail_reason", "cancel_reason", "receipt_url",
    "cancel_history", "cancel_receipt_urls", "cash_receipt_issued", "customer_uid",
    "customer_uid_usage", "promotion",
)  # fmt: skip

# Unix-second fields. Real PortOne V1 reports 0 (not null) for a moment that
# has not happened (e.g. ``cancelled_at`` of a paid payment); we do the same.
TIMESTAMP_FIELDS: frozenset[str] = frozenset(
    {"started_at", "paid_at", "failed_at", "cancelled_at", "vbank_date", "vbank_issued_at"}
)

# Merchant ids shown as ``pg_id`` (PortOne test MIDs for the PGs we emulate).
_PG_IDS: dict[str, str] = {"kcp": "T0000", "eximbay": "1849705C64"}

APPROVE_CARD = "4111111111111111"
DECLINE_CARD = "4000000000000002"


@dataclass(slots=True, eq=False)
class CancelEntry:
    """One element of ``cancel_history``."""

    pg_tid: str | None  # None = the payment's pg_tid
    amount: Decimal
    cancelled_at: int
    reason: str
    cancellation_id: str
    receipt_url: str | None = None  # None = the sandbox's own cancel receipt page
    # A virtual-account refund's account as given with the cancel (holder, bank, number); kept
    # with the cancellation, not rendered (PortOne's cancel_history has no such field).
    refund_account: dict[str, str] | None = None


@dataclass(slots=True, eq=False)
class Payment:
    """A payment as stored; rarely used PaymentAnnotation fields live in ``extra``.

    Kept small on purpose: a million of these must fit comfortably in memory.
    """

    seq: int
    imp_uid: str
    merchant_uid: str
    amount: Decimal
    currency: str
    status: str
    pay_method: str
    pg_provider: str
    started_at: int
    paid_at: int = 0
    failed_at: int = 0
    cancelled_at: int = 0
    updated_at: int = 0
    cancel_amount: Decimal = ZERO
    name: str | None = None
    buyer_name: str | None = None
    buyer_email: str | None = None
    buyer_tel: str | None = None
    card_number: str | None = None  # already masked
    card_code: str | None = None
    card_name: str | None = None
    pg_tid: str | None = None
    apply_num: str | None = None
    fail_reason: str | None = None
    cancel_reason: str | None = None
    cancel_history: list[CancelEntry] | None = None
    notice_url: str | None = None
    user_agent: str | None = None
    escrow: bool = False  # an escrow payment: PortOne cancels it only in full (see sandbox.partial_cancel)
    extra: dict[str, Any] | None = None

    def status_ts(self) -> int:
        """The timestamp /payments/status filters on for the current status."""
        status = self.status
        if status == "paid":
            return self.paid_at
        if status == "cancelled":
            return self.cancelled_at
        if status == "failed":
            return self.failed_at
        return self.started_at

    @property
    def remainder(self) -> Decimal:
        return self.amount - self.cancel_amount

    def tid(self) -> str:
        """PG transaction id (derived from imp_uid when none was stored)."""
        return self.pg_tid or f"SBX{self.imp_uid.removeprefix('imp_')}"


def normalize_card_number(raw: str) -> str:
    return raw.replace("-", "").replace(" ", "")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_card_number(digits: str) -> str:
    """Keep only the first 6 and last 4 digits visible."""
    if len(digits) <= 10:
        return digits
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def card_brand(digits: str, pg_provider: str) -> tuple[str | None, str]:
    """(card_code, card_name) for a card number.

    Domestic PGs (kcp) report the Korean issuer with PortOne's card code;
    Eximbay reports the international brand and no Korean card code.
    The BIN-to-issuer mapping is a sandbox convention.
    """
    if pg_provider == "eximbay":
        if digits.startswith("4"):
            return None, "VISA"
        if digits[:1] == "5" or digits[:2] == "22":
            return None, "MASTER"
        if digits.startswith("35"):
            return None, "JCB"
        if digits[:2] in ("34", "37"):
            return None, "AMEX"
        return None, "UNKNOWN"
    if digits.startswith("4"):
        return "366", "신한카드"
    if digits.startswith("5"):
        return "381", "KB국민카드"
    return "365", "삼성카드"


def receipt_path(imp_uid: str) -> str:
    return f"/sandbox/receipts/{imp_uid}"


def cancel_receipt_path(imp_uid: str, cancellation_id: str) -> str:
    return f"/sandbox/receipts/{imp_uid}/cancel/{cancellation_id}"


def render_cancel_entry(p: Payment, entry: CancelEntry, base_url: str) -> dict[str, Any]:
    return {
        "pg_tid": entry.pg_tid or p.tid(),
        "amount": entry.amount,
        "cancelled_at": entry.cancelled_at,
        "reason": entry.reason,
        "cancellation_id": entry.cancellation_id,
        "receipt_url": entry.receipt_url or base_url + cancel_receipt_path(p.imp_uid, entry.cancellation_id),
    }


def render_payment(p: Payment, base_url: str) -> dict[str, Any]:
    """The full PaymentAnnotation object (null where not applicable)."""
    is_card = p.pay_method == "card"
    history = [render_cancel_entry(p, e, base_url) for e in (p.cancel_history or ())]
    has_receipt = p.status in ("paid", "cancelled")
    out: dict[str, Any] = {
        "imp_uid": p.imp_uid,
        "merchant_uid": p.merchant_uid,
        "pay_method": p.pay_method,
        "channel": "pc",
        "pg_provider": p.pg_provider,
        "emb_pg_provider": None,
        "pg_tid": p.tid() if p.status != "failed" or p.pg_tid else None,
        "pg_id": _PG_IDS.get(p.pg_provider, "SANDBOX"),
        "escrow": p.escrow,
        "apply_num": p.apply_num,
        "bank_code": None,
        "bank_name": None,
        "card_code": p.card_code,
        "card_name": p.card_name,
        "card_issuer_code": None,
        "card_issuer_name": None,
        "card_publisher_code": None,
        "card_publisher_name": None,
        "card_quota": 0 if is_card else None,
        "card_number": p.card_number,
        "card_type": 0 if is_card else None,  # 0 = credit card
        "vbank_code": None,
        "vbank_name": None,
        "vbank_num": None,
        "vbank_holder": None,
        "vbank_date": 0,
        "vbank_issued_at": 0,
        "name": p.name,
        "amount": p.amount,
        "cancel_amount": p.cancel_amount,
        "currency": p.currency,
        "buyer_name": p.buyer_name,
        "buyer_email": p.buyer_email,
        "buyer_tel": p.buyer_tel,
        "buyer_addr": None,
        "buyer_postcode": None,
        "custom_data": None,
        # What PortOne reports when the payment did not come through a browser.
        "user_agent": p.user_agent or "sorry_not_supported",
        "status": p.status,
        "started_at": p.started_at,
        "paid_at": p.paid_at,
        "failed_at": p.failed_at,
        "cancelled_at": p.cancelled_at,
        "fail_reason": p.fail_reason,
        "cancel_reason": p.cancel_reason,
        "receipt_url": base_url + receipt_path(p.imp_uid) if has_receipt else None,
        "cancel_history": history,
        "cancel_receipt_urls": [h["receipt_url"] for h in history],
        "cash_receipt_issued": False,
        "customer_uid": None,
        "customer_uid_usage": None,
        "promotion": None,
    }
    if p.extra:
        out.update(p.extra)
    return out
