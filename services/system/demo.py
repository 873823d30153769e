"""Demo data for `make run` (sandbox mode only): real orders paid through the sandbox checkout
and verified by the same code paths production uses. Seeds once; a second run does nothing."""

from __future__ import annotations

import random
import uuid

import httpx
from sqlalchemy import func, select

from services.core.errors import PaymentsError
from services.core.models import Order
from services.payments import orders
from services.payments import verification as payments
from services.refunds import engine as refunds
from services.runtime import Runtime

APPROVED_CARD = "4111-1111-1111-1111"
DECLINED_CARD = "4000-0000-0000-0002"
CUSTOMERS = [
    ("김민준", "minjun.kim@example.com", "010-2345-6789"),
    ("이서연", "seoyeon.lee@example.com", "010-3456-7890"),
    ("박지호", "jiho.park@example.com", "010-4567-8901"),
    ("최수아", "sua.choi@example.com", "010-5678-9012"),
    ("정도윤", "doyun.jung@example.com", "010-6789-0123"),
    ("John Smith", "john.smith@example.com", "+1 415 555 0100"),
    ("Emma Brown", "emma.brown@example.com", "+44 20 7946 0000"),
]


def _checkout(
    sandbox: httpx.Client,
    order: orders.CreatedOrder,
    card: str,
    buyer: tuple[str, str, str],
    **extra: object,
) -> dict[str, object]:
    """Pay as the customer's browser would: IMP.request_pay hands PortOne the buyer's details."""
    name, email, phone = buyer
    body: dict[str, object] = {
        "merchant_uid": order.merchant_uid,
        "amount": str(order.amount),
        "currency": order.currency,
        "card_number": card,
        "buyer_name": name,
        "buyer_email": email,
        "buyer_tel": phone,
        **extra,
    }
    if order.pg:
        body["pg"] = order.pg
    response = sandbox.post("/sandbox/checkout", json=body)
    response.raise_for_status()
    return dict(response.json())


def seed_demo(rt: Runtime, *, count: int = 40, seed: int = 7) -> str:
    with rt.db.read() as session:
        existing = session.scalar(select(func.count()).select_from(Order)) or 0
    if existing:
        return f"demo data already present ({existing} orders); nothing seeded"
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not security
    summary = {"paid": 0, "refunded": 0, "failed": 0, "vbank": 0, "escrow": 0, "forgery": 0}
    with httpx.Client(base_url=rt.settings.portone_api_url, timeout=30) as sandbox:
        for index in range(count):
            buyer = name, email, phone = CUSTOMERS[index % len(CUSTOMERS)]
            currency = "USD" if not phone.startswith("010") else "KRW"
            order = orders.create_order(
                rt, customer_email=email, customer_name=name, customer_phone=phone, currency=currency
            )
            roll = rng.random()
            if roll < 0.08:
                _checkout(sandbox, order, DECLINED_CARD, buyer)
                summary["failed"] += 1
                continue
            if roll < 0.14 and currency == "KRW":
                paid = _checkout(sandbox, order, APPROVED_CARD, buyer, pay_method="vbank")
                payments.verify_payment(rt, imp_uid=str(paid["imp_uid"]), source="complete")
                summary["vbank"] += 1
                continue
            paid = _checkout(sandbox, order, APPROVED_CARD, buyer)
            imp_uid = str(paid["imp_uid"])
            payments.complete(rt, imp_uid=imp_uid, merchant_uid=order.merchant_uid)
            summary["paid"] += 1
            if roll > 0.8:
                amount = None if roll > 0.92 else (order.amount / 2)
                refunds.refund(
                    rt,
                    imp_uid=imp_uid,
                    amount=amount,
                    reason="고객 요청 (데모)",
                    actor="demo",
                    idempotency_key=f"demo-{uuid.uuid4().hex}",
                )
                summary["refunded"] += 1
        summary["escrow"] += _seed_escrow(rt, sandbox)
        summary["forgery"] += _seed_forgery(rt, sandbox)
    return "demo data seeded: " + ", ".join(f"{k} {v}" for k, v in summary.items())


def _seed_escrow(rt: Runtime, sandbox: httpx.Client) -> int:
    """One escrow payment: PortOne refunds it in full only, so the refunds page offers only its
    whole amount (help/core-service/how-to-use/impossible-partial-cancel.md)."""
    buyer = name, email, phone = CUSTOMERS[0]
    order = orders.create_order(rt, customer_email=email, customer_name=name, customer_phone=phone, currency="KRW")
    paid = _checkout(sandbox, order, APPROVED_CARD, buyer, escrow=True)
    payments.complete(rt, imp_uid=str(paid["imp_uid"]), merchant_uid=order.merchant_uid)
    return 1


def _seed_forgery(rt: Runtime, sandbox: httpx.Client) -> int:
    """One tampered payment, so the alerts page has something to show."""
    order = orders.create_order(rt, customer_email="tamper@example.com", customer_name="위변조 테스트", currency="KRW")
    sandbox.post("/sandbox/config", json={"enforce_prepare": False}).raise_for_status()
    try:
        body = {"merchant_uid": order.merchant_uid, "amount": "100", "currency": "KRW", "card_number": APPROVED_CARD}
        paid = sandbox.post("/sandbox/checkout", json=body).json()
    finally:
        sandbox.post("/sandbox/config", json={"enforce_prepare": True}).raise_for_status()
    try:
        payments.complete(rt, imp_uid=str(paid["imp_uid"]), merchant_uid=order.merchant_uid)
    except PaymentsError:
        return 1
    return 0
