"""Turning ``POST /sandbox/payments/bulk`` items into stored payments."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from sandbox import money
from sandbox.money import ZERO, AmountError, parse_amount
from sandbox.payments import (
    PAYMENT_FIELDS,
    STATUSES,
    TIMESTAMP_FIELDS,
    CancelEntry,
    Payment,
    mask_card_number,
)

# Fields held in Payment slots; any other PaymentAnnotation field goes to `extra`.
_SLOT_STR = ("name", "buyer_name", "buyer_email", "buyer_tel", "card_code", "card_name",
             "pg_tid", "apply_num", "fail_reason", "cancel_reason", "notice_url",
             "user_agent")  # fmt: skip
_HANDLED = frozenset(
    {"imp_uid", "merchant_uid", "amount", "cancel_amount", "currency", "status", "pay_method",
     "pg_provider", "started_at", "paid_at", "failed_at", "cancelled_at", "updated_at",
     "card_number", "cancel_history", "escrow", *_SLOT_STR}
)  # fmt: skip
ALLOWED_FIELDS = frozenset(PAYMENT_FIELDS) | {"updated_at", "notice_url"}
_HISTORY_FIELDS = frozenset({"pg_tid", "amount", "cancelled_at", "reason", "cancellation_id", "receipt_url"})


class BulkError(ValueError):
    pass


def _ts(spec: dict[str, Any], name: str) -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BulkError(f"{name} must be a non-negative unix timestamp (integer)")
    return value


def _str(spec: dict[str, Any], name: str) -> str | None:
    value = spec.get(name)
    if value is not None and not isinstance(value, str):
        raise BulkError(f"{name} must be a string")
    return value


def _money(value: Any, name: str) -> Decimal:
    try:
        amount = parse_amount(value, name)
    except AmountError as exc:
        raise BulkError(str(exc)) from None
    if amount < 0:
        raise BulkError(f"{name} must not be negative")
    return amount


def _history(raw: Any, default_ts: int) -> list[CancelEntry]:
    if not isinstance(raw, list):
        raise BulkError("cancel_history must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise BulkError("cancel_history items must be objects")
        unknown = set(item) - _HISTORY_FIELDS
        if unknown:
            raise BulkError(f"unknown cancel_history fields: {sorted(unknown)}")
        out.append(
            CancelEntry(
                pg_tid=_str(item, "pg_tid"),
                amount=_money(item.get("amount"), "cancel_history.amount"),
                cancelled_at=_ts(item, "cancelled_at") or default_ts,
                reason=_str(item, "reason") or "",
                cancellation_id=_str(item, "cancellation_id") or secrets.token_hex(8),
                receipt_url=_str(item, "receipt_url"),
            )
        )
    return out


def payment_from_spec(spec: Any, now: int) -> Payment:
    """Build a Payment from a bulk item; defaults make the record self-consistent."""
    if not isinstance(spec, dict):
        raise BulkError("each payment must be an object")
    unknown = set(spec) - ALLOWED_FIELDS
    if unknown:
        raise BulkError(f"unknown fields: {sorted(unknown)}")
    merchant_uid = _str(spec, "merchant_uid")
    if not merchant_uid:
        raise BulkError("merchant_uid is required")
    if spec.get("amount") is None:
        raise BulkError("amount is required")
    amount = _money(spec["amount"], "amount")
    currency = (_str(spec, "currency") or "KRW").upper()
    status = _str(spec, "status") or "paid"
    if status not in STATUSES:
        raise BulkError(f"status must be one of {STATUSES}")

    started = _ts(spec, "started_at")
    paid = _ts(spec, "paid_at")
    started = started if started is not None else (paid if paid is not None else now)
    if paid is None:
        paid = started if status in ("paid", "cancelled") else 0
    failed = _ts(spec, "failed_at")
    if failed is None:
        failed = started if status == "failed" else 0

    history = _history(spec["cancel_history"], paid) if spec.get("cancel_history") else []
    if spec.get("cancel_amount") is not None:
        cancel_amount = _money(spec["cancel_amount"], "cancel_amount")
    elif history:
        cancel_amount = sum((h.amount for h in history), ZERO)
    else:
        cancel_amount = amount if status == "cancelled" else ZERO
    if cancel_amount > amount:
        raise BulkError("cancel_amount exceeds amount")
    cancelled = _ts(spec, "cancelled_at")
    if cancelled is None:
        cancelled = (history[-1].cancelled_at if history else paid) if cancel_amount > 0 else 0
    if cancel_amount > 0 and not history:
        history = [CancelEntry(None, cancel_amount, cancelled, _str(spec, "cancel_reason") or "",
                               secrets.token_hex(8))]  # fmt: skip
    updated = _ts(spec, "updated_at")
    if updated is None:
        updated = max(started, paid, failed, cancelled)

    pay_method = _str(spec, "pay_method") or "card"
    p = Payment(
        seq=-1,
        imp_uid=_str(spec, "imp_uid") or "",
        merchant_uid=merchant_uid,
        amount=amount,
        currency=currency,
        status=status,
        pay_method=pay_method,
        pg_provider=_str(spec, "pg_provider") or ("kcp" if currency == "KRW" else "eximbay"),
        started_at=started,
        paid_at=paid,
        failed_at=failed,
        cancelled_at=cancelled,
        updated_at=updated,
        cancel_amount=cancel_amount,
        cancel_history=history or None,
    )
    for name in _SLOT_STR:
        text = _str(spec, name)
        if text is not None:
            setattr(p, name, text)
    escrow = spec.get("escrow", False)
    if not isinstance(escrow, bool):
        raise BulkError("escrow must be true or false")
    p.escrow = escrow
    card_number = _str(spec, "card_number")
    if card_number is not None:
        digits = card_number.replace("-", "").replace(" ", "")
        p.card_number = mask_card_number(digits) if digits.isdigit() else card_number
    extra: dict[str, Any] = {}
    for name, value in spec.items():
        if name in _HANDLED:
            continue
        if name in TIMESTAMP_FIELDS:
            value = _ts(spec, name) or 0
        elif name == "custom_data" and value is not None and not isinstance(value, str):
            value = money.dumps(value)
        extra[name] = value
    p.extra = extra or None
    return p


def build_payments(items: Any, now: int) -> list[Payment]:
    if not isinstance(items, list):
        raise BulkError("payments must be a list")
    out = []
    for i, spec in enumerate(items):
        try:
            out.append(payment_from_spec(spec, now))
        except BulkError as exc:
            raise BulkError(f"payments[{i}]: {exc}") from None
    return out
