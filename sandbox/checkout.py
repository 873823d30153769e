"""The customer's side of ``IMP.request_pay``: creates payments like a PG would."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox import money
from sandbox.http import BadRequest, opt_str
from sandbox.money import (
    SUPPORTED_CURRENCIES,
    ZERO,
    AmountError,
    has_valid_precision,
    parse_amount,
)
from sandbox.payments import (
    DECLINE_CARD,
    Payment,
    card_brand,
    luhn_ok,
    mask_card_number,
    normalize_card_number,
)
from sandbox.state import PaymentStore

# PGs that settle in foreign currencies; the others take KRW only.
FOREIGN_CURRENCY_PGS = frozenset({"eximbay", "paypal", "paypal_v2"})
VBANK_DAYS = 3
# What the customer does once the PG window is open. PortOne creates a `ready` payment under the
# merchant_uid when the window opens; a customer who leaves it (browser closed, page abandoned)
# leaves it `ready`; one who closes the window or presses cancel turns it `failed`
# (sdk/ko/v1-sdk/javascript-sdk/payrt.md, status; opi/ko/integration/pg/v1/toss-brandpay/widget.md,
# steps 6-7). Neither is announced by webhook (opi/ko/integration/webhook/readme-v1.md: webhooks
# for paid, a virtual account issued, a deposit, a console cancel; "결제 실패 시에는 웹훅이 호출되지 않아요").
OUTCOMES = ("pay", "abandon", "close")
MSG_WINDOW_CLOSED = "사용자가 결제를 취소하셨습니다."
MSG_WINDOW_ABANDONED = "결제창을 이탈했습니다. (sandbox: PortOne calls no callback; the payment stays ready)"


@dataclass(slots=True)
class CheckoutInput:
    merchant_uid: str
    amount: Decimal
    currency: str
    pg_provider: str
    pay_method: str
    card_number: str | None
    escrow: bool
    name: str | None
    buyer_name: str | None
    buyer_email: str | None
    buyer_tel: str | None
    notice_url: str | None
    custom_data: str | None
    user_agent: str | None
    outcome: str = "pay"  # OUTCOMES


@dataclass(slots=True)
class CheckoutOutcome:
    callback: dict[str, Any]
    webhook_status: str | None  # "paid" / "ready" when a webhook is due
    payment: Payment | None


def parse_checkout(params: dict[str, Any], user_agent: str | None) -> CheckoutInput:
    merchant_uid = opt_str(params, "merchant_uid")
    if not merchant_uid:
        raise BadRequest("merchant_uid is required")
    if "amount" not in params:
        raise BadRequest("amount is required")
    try:
        amount = parse_amount(params["amount"])
    except AmountError as exc:
        raise BadRequest(str(exc)) from None
    currency = (opt_str(params, "currency") or "KRW").upper()
    pg = opt_str(params, "pg")
    # "kcp.T0000" style values name a PG plus a MID; only the PG part matters.
    # Without pg the sandbox picks kcp for KRW and eximbay (the one PG here
    # that settles foreign currencies) for anything else.
    provider = pg.split(".", 1)[0].lower() if pg else ("kcp" if currency == "KRW" else "eximbay")
    pay_method = (opt_str(params, "pay_method") or "card").lower()
    raw_custom = params.get("custom_data")
    custom_data = raw_custom if isinstance(raw_custom, str) or raw_custom is None else money.dumps(raw_custom)
    outcome = (opt_str(params, "outcome") or "pay").lower()
    if outcome not in OUTCOMES:
        raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)}")
    return CheckoutInput(
        merchant_uid=merchant_uid,
        amount=amount,
        currency=currency,
        pg_provider=provider,
        pay_method=pay_method,
        card_number=opt_str(params, "card_number"),
        escrow=_escrow(params),
        name=opt_str(params, "name"),
        buyer_name=opt_str(params, "buyer_name"),
        buyer_email=opt_str(params, "buyer_email"),
        buyer_tel=opt_str(params, "buyer_tel"),
        notice_url=opt_str(params, "notice_url"),
        custom_data=custom_data,
        user_agent=user_agent,
        outcome=outcome,
    )


def _escrow(params: dict[str, Any]) -> bool:
    """IMP.request_pay's `escrow` flag (true: an escrow payment, cancelled only in full)."""
    value = params.get("escrow", False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise BadRequest("escrow must be true or false")
    return value


def _refusal(inp: CheckoutInput, code: str, msg: str, p: Payment | None = None) -> dict[str, Any]:
    return {
        "success": False,
        "imp_uid": p.imp_uid if p else None,
        "merchant_uid": inp.merchant_uid,
        "paid_amount": ZERO,
        "status": p.status if p else None,
        "currency": inp.currency,
        "pay_method": inp.pay_method,
        "pg_provider": inp.pg_provider,
        "pg_tid": None,
        "apply_num": None,
        "card_name": p.card_name if p else None,
        "card_number": p.card_number if p else None,
        "receipt_url": None,
        "error_code": code,
        "error_msg": msg,
    }


def _pre_window_refusal(store: PaymentStore, inp: CheckoutInput, enforce_prepare: bool,
                        allow_duplicate: bool) -> tuple[str, str] | None:  # fmt: skip
    """Checks PortOne makes before the PG window opens (no payment is created)."""
    if inp.currency not in SUPPORTED_CURRENCIES:
        return "UNSUPPORTED_CURRENCY", f"지원하지 않는 통화입니다: {inp.currency}"
    if inp.currency != "KRW" and inp.pg_provider not in FOREIGN_CURRENCY_PGS:
        return "UNSUPPORTED_CURRENCY", f"{inp.pg_provider}는 KRW 이외의 통화를 지원하지 않습니다."
    if inp.amount <= 0:
        return "INVALID_AMOUNT", "결제금액은 0보다 커야 합니다."
    if not has_valid_precision(inp.amount, inp.currency):
        return "INVALID_AMOUNT", (f"{inp.currency} 결제금액의 소수점 자릿수가 올바르지 않습니다: {inp.amount}")
    prepared = store.get_prepared(inp.merchant_uid)
    if enforce_prepare and prepared is not None:
        # pay.validation: a prepared merchant_uid with another amount stops the
        # PG window; we answer the callback with success=false and no payment.
        if prepared.amount != inp.amount:
            return "PREPARE_MISMATCH", (
                "사전등록된 결제금액과 요청된 결제금액이 일치하지 않습니다. "
                f"(사전등록: {money.decimal_to_json(prepared.amount)}, "
                f"요청: {money.decimal_to_json(inp.amount)})"
            )
        if prepared.currency is not None and prepared.currency != inp.currency:
            return "PREPARE_MISMATCH", (
                "사전등록된 결제통화와 요청된 결제통화가 일치하지 않습니다. "
                f"(사전등록: {prepared.currency}, 요청: {inp.currency})"
            )
    if not allow_duplicate and any(p.status in ("paid", "cancelled") for p in store.by_merchant(inp.merchant_uid)):
        return "DUPLICATE_MERCHANT_UID", "이미 결제가 완료된 주문번호(merchant_uid)입니다."
    return None


def perform_checkout(
    store: PaymentStore,
    inp: CheckoutInput,
    now: int,
    *,
    enforce_prepare: bool,
    allow_duplicate: bool,
    receipt_base: str,
) -> CheckoutOutcome:
    card_digits: str | None = None
    if inp.outcome != "pay":
        return _window_left(store, inp, now, enforce_prepare=enforce_prepare, allow_duplicate=allow_duplicate)
    if inp.pay_method == "card":
        if not inp.card_number:
            raise BadRequest("card_number is required for pay_method card")
        card_digits = normalize_card_number(inp.card_number)
    with store.lock:
        refusal = _pre_window_refusal(store, inp, enforce_prepare, allow_duplicate)
        if refusal is not None:
            return CheckoutOutcome(_refusal(inp, *refusal), None, None)
        p = _opened(store, inp, now)
        extra: dict[str, Any] = {}
        if inp.custom_data is not None:
            extra["custom_data"] = inp.custom_data
        failure: tuple[str, str] | None = None
        if card_digits is not None:
            valid = card_digits.isdigit() and 13 <= len(card_digits) <= 19 and luhn_ok(card_digits)
            if valid:
                p.card_number = mask_card_number(card_digits)
                p.card_code, p.card_name = card_brand(card_digits, inp.pg_provider)
            if not valid:
                failure = ("INVALID_CARD", "유효하지 않은 카드번호입니다.")
            elif card_digits == DECLINE_CARD:
                failure = ("CARD_DECLINED", "[카드사 승인거절] 잔액이 부족합니다.")
        if failure is not None:
            p.status, p.failed_at, p.fail_reason = "failed", now, failure[1]
        elif inp.pay_method == "vbank":
            extra.update(
                vbank_code="004",
                vbank_name="KB국민은행",
                vbank_num=store.new_digits(14),
                vbank_holder="샌드박스상점",
                vbank_date=now + VBANK_DAYS * 86400,
                vbank_issued_at=now,
            )
            p.pg_tid = store.new_digits(14)
        else:
            p.status, p.paid_at = "paid", now
            p.pg_tid = store.new_digits(14)
            if card_digits is not None:
                p.apply_num = store.new_digits(8)
            elif inp.pay_method == "trans":
                extra.update(bank_code="088", bank_name="신한은행")
        p.extra = extra or None
        store.add(p)
        if failure is not None:
            return CheckoutOutcome(_refusal(inp, *failure, p=p), None, p)
        callback = {
            "success": True,
            "imp_uid": p.imp_uid,
            "merchant_uid": p.merchant_uid,
            "paid_amount": p.amount,
            "status": p.status,
            "currency": p.currency,
            "pay_method": p.pay_method,
            "pg_provider": p.pg_provider,
            "pg_tid": p.pg_tid,
            "apply_num": p.apply_num,
            "card_name": p.card_name,
            "card_number": p.card_number,
            "receipt_url": f"{receipt_base}/sandbox/receipts/{p.imp_uid}" if p.status == "paid" else None,
            "error_code": None,
            "error_msg": None,
        }
        if p.status == "ready":
            callback.update({k: extra[k] for k in ("vbank_num", "vbank_name", "vbank_holder",
                                                   "vbank_date")})  # fmt: skip
        return CheckoutOutcome(callback, p.status, p)


def _opened(store: PaymentStore, inp: CheckoutInput, now: int) -> Payment:
    """The `ready` payment PortOne creates when the payment window opens (caller holds the lock)."""
    return Payment(
        seq=-1,
        imp_uid=store.new_imp_uid(),
        merchant_uid=inp.merchant_uid,
        amount=inp.amount,
        currency=inp.currency,
        status="ready",
        pay_method=inp.pay_method,
        pg_provider=inp.pg_provider,
        started_at=now,
        updated_at=now,
        name=inp.name,
        buyer_name=inp.buyer_name,
        buyer_email=inp.buyer_email,
        buyer_tel=inp.buyer_tel,
        notice_url=inp.notice_url,
        user_agent=inp.user_agent,
        escrow=inp.escrow,
    )


def _window_left(store: PaymentStore, inp: CheckoutInput, now: int, *, enforce_prepare: bool,
                 allow_duplicate: bool) -> CheckoutOutcome:  # fmt: skip
    """The window opened (a `ready` payment) and the customer left it (`abandon`: stays `ready`)
    or closed it (`close`: `failed`). No webhook either way (see OUTCOMES)."""
    with store.lock:
        refusal = _pre_window_refusal(store, inp, enforce_prepare, allow_duplicate)
        if refusal is not None:
            return CheckoutOutcome(_refusal(inp, *refusal), None, None)
        p = _opened(store, inp, now)
        if inp.custom_data is not None:
            p.extra = {"custom_data": inp.custom_data}
        if inp.outcome == "close":
            p.status, p.failed_at, p.fail_reason = "failed", now, MSG_WINDOW_CLOSED
            code, msg = "PAY_PROCESS_CANCELED", MSG_WINDOW_CLOSED
        else:
            code, msg = "WINDOW_ABANDONED", MSG_WINDOW_ABANDONED
        store.add(p)
        return CheckoutOutcome(_refusal(inp, code, msg, p=p), None, p)


def deposit(store: PaymentStore, imp_uid: str, now: int) -> Payment:
    """Mark a vbank payment as paid (the customer transferred the money)."""
    with store.lock:
        p = store.get(imp_uid)
        if p is None:
            raise LookupError(imp_uid)
        if p.status != "ready":
            raise ValueError(f"payment is {p.status}, not ready")

        def apply(pay: Payment) -> None:
            pay.status, pay.paid_at, pay.updated_at = "paid", now, now

        store.update(p, apply)
        return p
