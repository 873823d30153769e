"""The customer's side of a V2 payment (``PortOne.requestPayment``), for ``POST /sandbox/checkout``
with ``"version": "v2"``.

Takes ``payment_id`` (default: ``merchant_uid``, so a V1-style call works unchanged), the amount as
``total_amount`` (integer minor units, like the browser SDK's ``totalAmount``) or ``amount`` (major
units, a decimal string or number, like the V1 checkout), ``currency`` (KRW), ``pg`` (``kcp`` ->
KCP_V2; ``eximbay`` -> EXIMBAY_V2, the default for foreign currencies), ``pay_method`` (``card``;
``virtual_account``/``vbank`` gives VIRTUAL_ACCOUNT_ISSUED), ``card_number`` (4111-1111-1111-1111
approves, 4000-0000-0000-0002 declines), ``order_name``/``name``, the customer (``customer`` object
or ``buyer_name``/``buyer_email``/``buyer_tel``), ``notice_urls``/``notice_url``,
``custom_data`` and ``outcome`` (``pay``; ``abandon``: the window left, the payment stays READY;
``close``: the window closed, FAILED; see ``sandbox.checkout.OUTCOMES``).

Answers like the browser SDK: ``{transactionType, paymentId, txId, code, message, pgCode,
pgMessage}`` plus the sandbox's ``status`` (the payment's V2 status, null when none was made).
"""

from __future__ import annotations

from typing import Any

from sandbox import money
from sandbox.checkout import MSG_WINDOW_ABANDONED, MSG_WINDOW_CLOSED, OUTCOMES
from sandbox.http import BadRequest, opt_str
from sandbox.money import SUPPORTED_CURRENCIES, AmountError, currency_decimals, parse_amount
from sandbox.payments import DECLINE_CARD, card_brand, luhn_ok, mask_card_number, normalize_card_number
from sandbox.v2 import V2Runtime
from sandbox.v2_state import PAID_STATES, V2Payment, now_ms, rfc3339

PG_ALIASES = {
    "kcp": "KCP_V2",
    "kcp_v2": "KCP_V2",
    "eximbay": "EXIMBAY_V2",
    "eximbay_v2": "EXIMBAY_V2",
    "tosspayments": "TOSSPAYMENTS",
    "paypal": "PAYPAL_V2",
    "paypal_v2": "PAYPAL_V2",
}
FOREIGN_CURRENCY_PGS = frozenset({"EXIMBAY_V2", "PAYPAL_V2"})
VIRTUAL_ACCOUNT_DAYS = 3
_BRANDS = {"VISA": "VISA", "MASTER": "MASTER", "JCB": "JCB", "AMEX": "AMEX"}


def _minor_units(params: dict[str, Any], currency: str) -> int:
    if params.get("total_amount") is not None or params.get("totalAmount") is not None:
        value = params.get("total_amount", params.get("totalAmount"))
        if type(value) is not int:
            raise BadRequest("total_amount must be an integer in the currency's minor unit")
        return value
    if params.get("amount") is None:
        raise BadRequest("amount (major units) or total_amount (minor units) is required")
    try:
        amount = parse_amount(params["amount"])
    except AmountError as exc:
        raise BadRequest(str(exc)) from None
    scaled = amount.scaleb(currency_decimals(currency))
    if scaled != scaled.to_integral_value():
        raise BadRequest(f"{currency} amounts take at most {currency_decimals(currency)} decimals; got {amount}")
    return int(scaled)


def _customer(params: dict[str, Any]) -> dict[str, str]:
    raw = params.get("customer")
    if isinstance(raw, dict):
        name = raw.get("fullName") or raw.get("name")
        found = {"name": name, "email": raw.get("email"), "phoneNumber": raw.get("phoneNumber")}
    else:
        found = {
            "name": opt_str(params, "buyer_name"),
            "email": opt_str(params, "buyer_email"),
            "phoneNumber": opt_str(params, "buyer_tel"),
        }
    return {k: str(v) for k, v in found.items() if v}


def _notice_urls(params: dict[str, Any]) -> list[str]:
    urls = params.get("notice_urls", params.get("noticeUrls"))
    if urls is None:
        single = opt_str(params, "notice_url")
        return [single] if single else []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
        raise BadRequest("notice_urls must be a list of strings")
    return [u for u in urls if u]


def _answer(
    payment_id: str,
    p: V2Payment | None,
    code: str | None = None,
    message: str | None = None,
    pg_code: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transactionType": "PAYMENT",
        "paymentId": payment_id,
        "txId": p.transaction_id if p else None,
    }
    if code is not None:
        out.update(code=code, message=message, pgCode=pg_code, pgMessage=message if pg_code else None)
    out["status"] = p.status if p else None
    return out


def perform_checkout_v2(
    rt: V2Runtime, params: dict[str, Any], user_agent: str | None, ip_address: str | None
) -> tuple[dict[str, Any], V2Payment | None]:
    """Create (or re-attempt) the payment; returns the browser answer and the payment, if made."""
    payment_id = opt_str(params, "payment_id") or opt_str(params, "paymentId") or opt_str(params, "merchant_uid")
    if not payment_id:
        raise BadRequest("payment_id is required")
    currency = (opt_str(params, "currency") or "KRW").upper()
    pg = opt_str(params, "pg")
    pg_key = pg.split(".", 1)[0].lower() if pg else ("kcp" if currency == "KRW" else "eximbay")
    provider = PG_ALIASES.get(pg_key, pg_key.upper())
    pay_method = (opt_str(params, "pay_method") or "card").lower()
    pay_method = {"vbank": "virtual_account", "trans": "transfer", "phone": "mobile"}.get(pay_method, pay_method)
    if pay_method not in ("card", "virtual_account", "transfer", "mobile"):
        raise BadRequest(f"unsupported pay_method {pay_method}")
    outcome = (opt_str(params, "outcome") or "pay").lower()
    if outcome not in OUTCOMES:
        raise BadRequest(f"outcome must be one of {', '.join(OUTCOMES)}")
    total = _minor_units(params, currency) if currency in SUPPORTED_CURRENCIES else 0
    card_digits = None
    if pay_method == "card" and outcome == "pay":
        card = opt_str(params, "card_number")
        if not card:
            raise BadRequest("card_number is required for pay_method card")
        card_digits = normalize_card_number(card)
    raw_custom = params.get("custom_data")
    custom = raw_custom if isinstance(raw_custom, str) or raw_custom is None else money.dumps(raw_custom)
    with rt.store.lock:
        existing = rt.store.get(payment_id)
        refusal = _refusal(rt, payment_id, currency, provider, total, existing)
        if refusal is not None:
            return _answer(payment_id, None, *refusal), None
        now = now_ms()
        p = V2Payment(
            seq=0,
            id=payment_id,
            transaction_id=rt.store.new_uuid(),
            status="READY",
            total=total,
            currency=currency,
            order_name=opt_str(params, "order_name") or opt_str(params, "name") or "주문",
            pg_provider=provider,
            pay_method=pay_method,
            requested_at=existing.requested_at if existing else now,
            updated_at=now,
            status_changed_at=now,
            customer=_customer(params),
            notice_urls=_notice_urls(params),
            custom_data=custom,
            user_agent=user_agent,
            ip_address=ip_address or "127.0.0.1",
            escrow=_escrow(params),
        )
        failure = _apply_card(p, card_digits) if card_digits is not None else None
        if outcome == "abandon":
            # The window opened (READY) and the customer left it: it stays READY, no method chosen.
            rt.store.put(p)
            return _answer(payment_id, p, "WINDOW_ABANDONED", MSG_WINDOW_ABANDONED), p
        if outcome == "close":
            failure = ("PAY_PROCESS_CANCELED", MSG_WINDOW_CLOSED)
        if failure is not None:
            p.status, p.failed_at = "FAILED", now
            p.failure = {"reason": failure[1], "pgCode": failure[0], "pgMessage": failure[1]}
        elif pay_method == "virtual_account":
            p.status = "VIRTUAL_ACCOUNT_ISSUED"
            p.pg_tx_id = rt.store.new_digits(14)
            p.virtual_account = {
                "bank": "KOOKMIN",
                "accountNumber": rt.store.new_digits(14),
                "accountType": "NORMAL",
                "remitteeName": "샌드박스상점",
                "expiredAt": rfc3339(now + VIRTUAL_ACCOUNT_DAYS * 86_400_000),
                "issuedAt": rfc3339(now),
            }
        else:
            p.status, p.paid_at = "PAID", now
            p.pg_tx_id = rt.store.new_digits(14)
        rt.store.put(p)
        if failure is not None:
            return _answer(payment_id, p, "FAILURE_TYPE_PG", failure[1], failure[0]), p
        return _answer(payment_id, p), p


def _escrow(params: dict[str, Any]) -> bool:
    value = params.get("escrow", params.get("isEscrow", False))
    if not isinstance(value, bool):
        raise BadRequest("escrow must be true or false")
    return value


def _refusal(
    rt: V2Runtime, payment_id: str, currency: str, provider: str, total: int, existing: V2Payment | None
) -> tuple[str, str] | None:
    """Checks made before the PG window opens (no payment is made)."""
    if currency not in SUPPORTED_CURRENCIES:
        return "INVALID_REQUEST", f"지원하지 않는 통화입니다: {currency}"
    if currency != "KRW" and provider not in FOREIGN_CURRENCY_PGS:
        return "INVALID_REQUEST", f"{provider}는 KRW 이외의 통화를 지원하지 않습니다."
    if total <= 0:
        return "INVALID_REQUEST", "결제 금액은 0보다 커야 합니다."
    if existing is not None and existing.status in PAID_STATES:
        return "ALREADY_PAID", "이미 결제가 완료된 paymentId입니다."
    if existing is not None and existing.status in ("VIRTUAL_ACCOUNT_ISSUED", "PAY_PENDING"):
        return "ALREADY_PAID_OR_WAITING", "입금 또는 승인을 기다리는 paymentId입니다."
    prepared = rt.store.get_prepared(payment_id)
    if rt.config.enforce_pre_register and prepared is not None:
        if prepared.total_amount is not None and prepared.total_amount != total:
            return "PRE_REGISTERED_AMOUNT_MISMATCH", (
                f"사전 등록된 결제 금액과 요청된 결제 금액이 다릅니다. (사전 등록: {prepared.total_amount}, 요청: {total})"
            )
        if prepared.currency is not None and prepared.currency != currency:
            return "PRE_REGISTERED_AMOUNT_MISMATCH", (
                f"사전 등록된 통화와 요청된 통화가 다릅니다. (사전 등록: {prepared.currency}, 요청: {currency})"
            )
    return None


def _apply_card(p: V2Payment, digits: str) -> tuple[str, str] | None:
    valid = digits.isdigit() and 13 <= len(digits) <= 19 and luhn_ok(digits)
    if not valid:
        return "INVALID_CARD", "유효하지 않은 카드번호입니다."
    p.card_number = mask_card_number(digits)
    p.card_bin = digits[:6]
    domestic = p.pg_provider not in FOREIGN_CURRENCY_PGS
    _code, name = card_brand(digits, "kcp" if domestic else "eximbay")
    p.card_name = name
    p.card_issuer = name if domestic else None
    p.card_brand = "LOCAL" if domestic else _BRANDS.get(name, "VISA")
    if digits == DECLINE_CARD:
        return "CARD_DECLINED", "[카드사 승인거절] 잔액이 부족합니다."
    p.approval_number = f"{int(digits[-8:]) * 7 % 10**8:08d}"
    return None


def deposit_v2(rt: V2Runtime, payment_id: str) -> V2Payment:
    """The customer paid into the virtual account: VIRTUAL_ACCOUNT_ISSUED -> PAID."""
    with rt.store.lock:
        p = rt.store.get(payment_id)
        if p is None:
            raise LookupError(payment_id)
        if p.status != "VIRTUAL_ACCOUNT_ISSUED":
            raise ValueError(f"payment is {p.status}, not VIRTUAL_ACCOUNT_ISSUED")
        now = now_ms()

        def mutate(pay: V2Payment) -> None:
            pay.status, pay.paid_at = "PAID", now
            pay.updated_at = pay.status_changed_at = now

        rt.store.update(p, mutate)
        return p
