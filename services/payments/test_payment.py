"""Test payments started from the dashboard: sandbox and test modes only, refused in live mode.

- sandbox mode: an order is created as the customer app creates it (services.payments.orders), paid through
  the sandbox's checkout, which plays the customer's browser running IMP.request_pay, with the test
  card, and completed through services.payments.verification.complete: from there on it is the production path.
- test mode (real PortOne test keys): there is no sandbox. The order is created here; the payment
  window must run in a customer's browser (IMP.request_pay with this merchant_uid and amount), and
  the imp_uid it returns is completed here (or by our API's /api/payments/complete).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from services.audit import trail as audit
from services.auth.access import Actor, Permission, require
from services.core.errors import Conflict, GatewayRejected, GatewayUnavailable, InvalidRequest
from services.payments import orders
from services.payments import verification as payments
from services.payments.orders import CreatedOrder
from services.payments.verification import Verification
from services.runtime import Runtime

# PortOne's test card (the seed README's instructions: VISA 4111-1111-1111-1111, 12/30, CVC 123).
TEST_CARD = "4111-1111-1111-1111"
TEST_CARD_EXPIRY = "12/30"
TEST_CARD_CVC = "123"
DECLINED_TEST_CARD = "4000-0000-0000-0002"  # the sandbox declines it: a failed payment
DEFAULT_BUYER_NAME = "테스트 고객"
DEFAULT_BUYER_EMAIL = "test-payment@chekar.invalid"


class LiveModeRefused(Conflict):
    """Test payments are never made in live mode."""


class SandboxUnavailable(Conflict):
    """Only sandbox mode has a checkout the dashboard can drive; test mode pays in a browser."""


@dataclass(frozen=True)
class SandboxPayment:
    """What a sandbox test payment did: the order, the checkout's answer and our verification."""

    order: CreatedOrder
    approved: bool  # the checkout (IMP.request_pay's callback) reported success
    imp_uid: str | None  # None when the payment window refused before creating a payment
    status: str | None  # PortOne's status as verified and recorded by us (paid, failed, ...)
    error_code: str | None
    error_msg: str | None
    pay_method: str = "card"


def _allowed(rt: Runtime, actor: Actor) -> None:
    require(actor, Permission.TEST_PAYMENT)
    if rt.settings.is_live:
        raise LiveModeRefused("test payments are not available in live mode")


def create_test_order(
    rt: Runtime,
    *,
    actor: Actor,
    currency: str = "KRW",
    buyer_name: str = DEFAULT_BUYER_NAME,
    buyer_email: str = DEFAULT_BUYER_EMAIL,
) -> CreatedOrder:
    """An order at the fee for `currency`, registered with PortOne, waiting for its payment."""
    _allowed(rt, actor)
    order = orders.create_order(rt, customer_email=buyer_email, customer_name=buyer_name, currency=currency)
    with rt.db.write() as session:
        audit.record(
            session,
            actor=actor.username,
            action="test_payment.order_created",
            target=order.merchant_uid,
            mode=rt.settings.portone_mode,
            amount=order.amount,
            currency=order.currency,
        )
    return order


PAY_METHODS = ("card", "vbank")  # card, or a virtual account the customer pays into (then a deposit)


def _checkout(
    rt: Runtime, order: CreatedOrder, card_number: str, buyer_name: str, buyer_email: str, pay_method: str = "card"
) -> Any:
    body: dict[str, str] = {
        "merchant_uid": order.merchant_uid,
        "amount": str(order.amount),
        "currency": order.currency,
        "pay_method": pay_method,
        "name": order.name,
        "buyer_name": buyer_name,
        "buyer_email": buyer_email,
    }
    if pay_method == "card":
        body["card_number"] = card_number
    if order.pg:
        body["pg"] = order.pg
    return _sandbox_post(rt, "/sandbox/checkout", body, "checkout")


def _sandbox_post(rt: Runtime, path: str, body: dict[str, str] | None, what: str) -> Any:
    try:
        with httpx.Client(base_url=rt.settings.portone_api_url, timeout=rt.settings.portone_timeout_seconds) as http:
            response = http.post(path, json=body)
    except httpx.TransportError as exc:
        raise GatewayUnavailable(f"the sandbox {what} is unreachable: {exc!r}") from exc
    if response.status_code >= 500:
        raise GatewayUnavailable(f"the sandbox {what} answered HTTP {response.status_code}")
    if response.status_code >= 400:
        raise GatewayRejected(f"the sandbox {what} refused: {response.text[:300]}", http_status=response.status_code)
    return json.loads(response.content, parse_float=Decimal)


def pay_in_sandbox(
    rt: Runtime,
    *,
    actor: Actor,
    order: CreatedOrder,
    card_number: str = TEST_CARD,
    buyer_name: str = DEFAULT_BUYER_NAME,
    buyer_email: str = DEFAULT_BUYER_EMAIL,
    pay_method: str = "card",
) -> SandboxPayment:
    """Pay `order` through the sandbox checkout, then complete it as the customer app would. A
    virtual account (`vbank`) comes back `ready`: the customer's deposit is `deposit_in_sandbox`."""
    _allowed(rt, actor)
    if rt.settings.portone_mode != "sandbox":
        raise SandboxUnavailable("only sandbox mode has a checkout; in test mode pay in a browser")
    if pay_method not in PAY_METHODS:
        raise InvalidRequest(f"pay_method must be one of {', '.join(PAY_METHODS)}")
    callback = _checkout(rt, order, card_number, buyer_name, buyer_email, pay_method)
    imp_uid = str(callback["imp_uid"]) if callback.get("imp_uid") else None
    status = None
    if imp_uid is not None:
        status = str(payments.complete(rt, imp_uid=imp_uid, merchant_uid=order.merchant_uid).status)
    with rt.db.write() as session:
        audit.record(
            session,
            actor=actor.username,
            action="test_payment.paid" if status == "paid" else "test_payment.not_paid",
            target=imp_uid or order.merchant_uid,
            merchant_uid=order.merchant_uid,
            status=status,
            error=callback.get("error_msg"),
        )
    return SandboxPayment(
        order=order,
        approved=bool(callback.get("success")),
        imp_uid=imp_uid,
        status=status,
        error_code=callback.get("error_code"),
        error_msg=callback.get("error_msg"),
        pay_method=pay_method,
    )


def deposit_in_sandbox(rt: Runtime, *, actor: Actor, payment: SandboxPayment) -> SandboxPayment:
    """The customer pays into the virtual account (the sandbox's deposit control), and the payment
    is completed again as the customer app would: from `ready` to `paid`."""
    _allowed(rt, actor)
    if rt.settings.portone_mode != "sandbox":
        raise SandboxUnavailable("only sandbox mode has a checkout; in test mode pay in a browser")
    if payment.imp_uid is None or payment.pay_method != "vbank":
        raise InvalidRequest("only a virtual-account test payment takes a deposit")
    _sandbox_post(rt, f"/sandbox/payments/{quote(payment.imp_uid, safe='')}/deposit", None, "deposit")
    status = str(payments.complete(rt, imp_uid=payment.imp_uid, merchant_uid=payment.order.merchant_uid).status)
    with rt.db.write() as session:
        audit.record(
            session,
            actor=actor.username,
            action="test_payment.deposited",
            target=payment.imp_uid,
            merchant_uid=payment.order.merchant_uid,
            status=status,
        )
    return replace(payment, status=status, approved=status == "paid")


def run_sandbox_payment(
    rt: Runtime,
    *,
    actor: Actor,
    currency: str = "KRW",
    card_number: str = TEST_CARD,
    buyer_name: str = DEFAULT_BUYER_NAME,
    buyer_email: str = DEFAULT_BUYER_EMAIL,
    pay_method: str = "card",
) -> SandboxPayment:
    """The whole test payment in sandbox mode: order, checkout with the test card (or a virtual
    account, paid later by `deposit_in_sandbox`), completion."""
    _allowed(rt, actor)
    if rt.settings.portone_mode != "sandbox":
        raise SandboxUnavailable("only sandbox mode has a checkout; in test mode pay in a browser")
    order = create_test_order(rt, actor=actor, currency=currency, buyer_name=buyer_name, buyer_email=buyer_email)
    return pay_in_sandbox(
        rt,
        actor=actor,
        order=order,
        card_number=card_number,
        buyer_name=buyer_name,
        buyer_email=buyer_email,
        pay_method=pay_method,
    )


def complete_browser_payment(rt: Runtime, *, actor: Actor, imp_uid: str, merchant_uid: str) -> Verification:
    """Test mode: the payment window ran in a browser and returned `imp_uid`; verify and record it."""
    _allowed(rt, actor)
    return payments.complete(rt, imp_uid=imp_uid, merchant_uid=merchant_uid)


# After the payment window closes the page reads its order until it is no longer pending: the
# payment may be recorded by /complete, by PortOne's webhook, or by the scheduled reconciliation.
ORDER_POLL_INTERVAL_MS = 2000
ORDER_POLL_ATTEMPTS = 30


def request_pay_script(
    rt: Runtime,
    order: CreatedOrder,
    *,
    buyer_name: str = DEFAULT_BUYER_NAME,
    buyer_email: str = DEFAULT_BUYER_EMAIL,
    poll_interval_ms: int = ORDER_POLL_INTERVAL_MS,
    poll_attempts: int = ORDER_POLL_ATTEMPTS,
) -> str:
    """The browser code that pays `order` (PortOne's JavaScript SDK V1), reports to our API, then
    polls `GET /api/orders/{merchant_uid}` and hands the order to the page's `showOrder(order)`
    (null when it is still pending after the polls: the page asks the customer to check back)."""
    params: dict[str, Any] = {"pay_method": "card", "merchant_uid": order.merchant_uid, "name": order.name}
    if order.pg:
        params["pg"] = order.pg
    params.update(currency=order.currency, buyer_name=buyer_name, buyer_email=buyer_email)
    body = json.dumps(params, ensure_ascii=False, indent=2)
    # The amount goes in as a JSON number written digit for digit (50000, 38.50), never a float.
    body = body[: body.rindex("}")].rstrip() + f',\n  "amount": {order.amount}\n}}'
    api = rt.settings.api_public_url.rstrip("/")
    complete_url = f"{api}/api/payments/complete"
    order_url = f"{api}/api/orders/{quote(order.merchant_uid, safe='')}"
    return (
        "IMP.init(MERCHANT_CODE);  // PortOne console: 가맹점 식별코드 (imp...)\n"
        "// After the window closes, the order is read until it is no longer pending: our API records the\n"
        "// payment from /complete, PortOne's webhook or, if both were lost, the scheduled reconciliation.\n"
        "async function readOrder() {\n"
        f"  for (let i = 0; i < {int(poll_attempts)}; i++) {{\n"
        "    try {\n"
        f'      const answer = await fetch("{order_url}");\n'
        "      if (answer.ok) {\n"
        "        const order = await answer.json();\n"
        '        if (order.status !== "pending") return order;\n'
        "      }\n"
        "    } catch (e) { /* the API is unreachable for now: ask again */ }\n"
        f"    await new Promise((resolve) => setTimeout(resolve, {int(poll_interval_ms)}));\n"
        "  }\n"
        "  return null;  // still pending: the page asks the customer to check back\n"
        "}\n"
        f"IMP.request_pay({body}, async function (rsp) {{\n"
        "  if (!rsp.success && !rsp.imp_uid) { alert(rsp.error_msg); return; }  // no payment was made\n"
        "  try {\n"
        f'    await fetch("{complete_url}", {{\n'
        '      method: "POST",\n'
        '      headers: {"Content-Type": "application/json"},\n'
        "      body: JSON.stringify({imp_uid: rsp.imp_uid, merchant_uid: rsp.merchant_uid}),\n"
        "    });\n"
        "  } catch (e) { /* lost: the webhook or the reconciliation records it */ }\n"
        "  showOrder(await readOrder());  // the page's own: {merchant_uid, status, amount, currency, paid_at}\n"
        "});"
    )
