"""Orders: the amount is decided here, from the fee table, never by the caller."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select

from services.audit import trail as audit
from services.core.errors import GatewayError, InvalidRequest, NotFound
from services.core.models import Order, Payment, utcnow
from services.core.money import normalize
from services.runtime import Runtime

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9\- ]{6,18}[0-9]$")
OVERSEAS_PG = "eximbay"


@dataclass(frozen=True)
class CreatedOrder:
    merchant_uid: str
    amount: Decimal
    currency: str
    name: str
    pg: str | None


def new_merchant_uid() -> str:
    return f"chekar_{utcnow():%Y%m%d}_{secrets.token_hex(6)}"


def _clean_customer(email: str, name: str, phone: str | None) -> tuple[str, str, str | None]:
    email, name = (email or "").strip(), (name or "").strip()
    if not _EMAIL.match(email) or len(email) > 254:
        raise InvalidRequest("customer_email is not a valid e-mail address")
    if not name or len(name) > 100:
        raise InvalidRequest("customer_name must be 1 to 100 characters")
    phone = (phone or "").strip() or None
    if phone is not None and not _PHONE.match(phone):
        raise InvalidRequest("customer_phone must be a phone number (digits, spaces, dashes, optional +)")
    return email, name, phone


def create_order(
    rt: Runtime,
    *,
    customer_email: str,
    customer_name: str,
    customer_phone: str | None = None,
    currency: str = "KRW",
) -> CreatedOrder:
    """Create an order at the fee for `currency` and register its amount with PortOne (prepare)."""
    email, name, phone = _clean_customer(customer_email, customer_name, customer_phone)
    currency = (currency or "KRW").strip().upper()
    fees = rt.settings.fee_table
    if currency not in fees:
        raise InvalidRequest(f"currency {currency!r} is not offered; choose one of {', '.join(sorted(fees))}")
    amount = fees[currency]
    pg = None if currency == "KRW" else OVERSEAS_PG
    merchant_uid = new_merchant_uid()
    with rt.db.write() as session:
        session.add(
            Order(
                merchant_uid=merchant_uid,
                name=rt.settings.order_name,
                amount=amount,
                currency=currency,
                pg=pg,
                customer_email=email,
                customer_name=name,
                customer_phone=phone,
            )
        )
        audit.record(
            session, actor="api", action="order.created", target=merchant_uid, amount=amount, currency=currency
        )
    # PortOne then refuses any checkout of this merchant_uid at another amount.
    try:
        rt.gateway.prepare(merchant_uid=merchant_uid, amount=amount, currency=currency)
    except GatewayError:
        # The answer may have been lost after PortOne registered it: ask before giving up.
        rt.gateway.get_prepared(merchant_uid)
    with rt.db.write() as session:
        order = session.scalar(select(Order).where(Order.merchant_uid == merchant_uid))
        if order is not None:
            order.prepared_at = utcnow()
    return CreatedOrder(merchant_uid=merchant_uid, amount=amount, currency=currency, name=rt.settings.order_name, pg=pg)


@dataclass(frozen=True)
class OrderState:
    """What the customer's app may read of its order: no personal data."""

    merchant_uid: str
    status: str  # as services.core.models.OrderStatus has it
    amount: Decimal
    currency: str
    paid_at: datetime | None  # when PortOne took the money (the latest payment of the order that did)


def order_state(rt: Runtime, merchant_uid: str) -> OrderState:
    """The order's status as we recorded it (by /complete, a webhook or a scheduled reconciliation).
    Raises NotFound."""
    with rt.db.read() as session:
        order = session.scalar(select(Order).where(Order.merchant_uid == merchant_uid))
        if order is None:
            raise NotFound(f"no order {merchant_uid!r}")
        paid_at = session.scalar(
            select(func.max(Payment.paid_at)).where(Payment.order_id == order.id, Payment.paid_at.is_not(None))
        )
        return OrderState(
            order.merchant_uid, order.status, normalize(order.amount, order.currency), order.currency, paid_at
        )
