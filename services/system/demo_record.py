"""Recording demo payments as production would learn of them: an order by `orders.create_order`, PortOne's
record of the buyer's payment held by the sandbox at its past moment, and PortOne's webhook received by
`services.webhooks.v1.receive_many` (see services/system/demo.py for why stamps are moved back)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import update

from services.core.models import WebhookEvent
from services.core.sequences import chunked
from services.payments import orders
from services.runtime import Runtime
from services.system.demo_plan import Buyer, Planned
from services.webhooks.v1 import Delivery, receive_many

APPROVED_CARD = "4111-1111-1111-1111"
WEBHOOK_BATCH = 100  # what services.webhooks.batcher gathers at most

DEMO_VBANK_PREFIX = "000000"  # demo virtual accounts: 000000 and six digits, no bank issues such a number


def ts(moment: datetime) -> int:
    return int(moment.timestamp())


def payment_spec(
    planned: Planned, order: orders.CreatedOrder, rng: random.Random, *, amount: Decimal | None = None
) -> dict[str, Any]:
    """PortOne's record of the buyer's payment, as the sandbox's bulk endpoint takes it."""
    at = ts(planned.at)
    spec: dict[str, Any] = {
        "merchant_uid": order.merchant_uid,
        "amount": str(order.amount if amount is None else amount),
        "currency": order.currency,
        "name": order.name,
        "buyer_name": planned.buyer.name,
        "buyer_email": planned.buyer.email,
        "buyer_tel": planned.buyer.phone,
        "pg_provider": order.pg or "kcp",
        "pay_method": "card" if planned.method == "declined" else planned.method,
        "started_at": at,
        "pg_tid": f"T{rng.getrandbits(48):012x}",
    }
    issuer, code = planned.issuer
    if planned.method == "declined":
        return {**spec, "status": "failed", "failed_at": at + 20, "fail_reason": planned.reason,
                "card_name": issuer, "card_code": code}  # fmt: skip
    if planned.method == "vbank":
        paid = at + int(planned.deposit_after.total_seconds())
        return {**spec, "status": "paid", "paid_at": paid, "vbank_issued_at": at, "vbank_date": at + 3 * 86400,
                "vbank_name": issuer, "vbank_code": code, "vbank_holder": "(주)체카",
                "vbank_num": f"{DEMO_VBANK_PREFIX}{rng.randint(0, 999_999):06d}"}  # fmt: skip
    if planned.method == "trans":
        return {**spec, "status": "paid", "paid_at": at + 40, "bank_name": issuer, "bank_code": code}
    return {**spec, "status": "paid", "paid_at": at + 35, "card_name": issuer, "card_code": code,
            "card_number": APPROVED_CARD, "apply_num": f"{rng.randint(0, 99_999_999):08d}",
            "card_quota": 0, "escrow": planned.escrow}  # fmt: skip


def create_order(rt: Runtime, buyer: Buyer, currency: str) -> orders.CreatedOrder:
    return orders.create_order(
        rt, customer_email=buyer.email, customer_name=buyer.name, customer_phone=buyer.phone, currency=currency
    )


def hold_at_portone(sandbox: httpx.Client, specs: Sequence[dict[str, Any]]) -> list[str]:
    """PortOne's records of the given payments, with their past moments; returns their imp_uids."""
    response = sandbox.post("/sandbox/payments/bulk", json={"payments": list(specs)})
    response.raise_for_status()
    return [str(uid) for uid in response.json()["imp_uids"]]


def deliver_webhooks(rt: Runtime, notices: Iterable[tuple[str, str, str, datetime]]) -> None:
    """PortOne's webhook for each (imp_uid, merchant_uid, status, when), received and verified as the
    API's receiver does; each delivery's stored time is then moved back to `when` (see the module's doc)."""
    notices = list(notices)
    for chunk in chunked(notices, WEBHOOK_BATCH):
        deliveries = [
            Delivery(json.dumps({"imp_uid": uid, "merchant_uid": muid, "status": status}).encode(),
                     "application/json", "127.0.0.1")
            for uid, muid, status, _ in chunk
        ]  # fmt: skip
        outcomes = receive_many(rt, deliveries)
        backdate(
            rt,
            WebhookEvent,
            [
                {
                    "id": o.event_id,
                    "received_at": when + timedelta(seconds=2),
                    "processed_at": when + timedelta(seconds=3),
                }
                for o, (*_, when) in zip(outcomes, chunk, strict=True)
            ],
        )


def backdate(rt: Runtime, table: type[Any], rows: list[dict[str, Any]]) -> None:
    if rows:
        with rt.db.write() as session:
            session.execute(update(table), rows)
