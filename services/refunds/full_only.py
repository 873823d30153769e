"""Payments PortOne refunds in full only.

PortOne's help centre lists the payments whose partial cancel the PG refuses
(shared/portone-docs/help/core-service/how-to-use/impossible-partial-cancel.md):

- escrow payments ("에스크로 거래 건의 경우 부분 취소가 불가합니다"): PortOne's payment record
  says so (V1 `escrow`, V2 the `escrow` object);
- phone payments, except through KG Inicis ("휴대폰결제의 경우 이니시스만 부분 취소가 가능합니다"):
  the record's pay method and PG say so;
- foreign-issued cards, card-point combined payments, some corporate cards: only the card's
  acquirer knows. Nothing in the record tells; PortOne's refusal is passed on with the advice to
  refund in full (`PARTIAL_REFUSED_ADVICE`).

Where the record tells, a partial refund is refused before anything is sent (`FullRefundOnly`)
and the refund form offers only the whole remainder.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from services.core.errors import FullRefundOnly
from services.portone.types import GatewayPayment

# PG names (V1 `pg_provider`, V2 `PgProvider` lowercased) of KG Inicis, the one PG that partially
# cancels phone payments.
INICIS_PGS = frozenset({"inicis", "html5_inicis", "inicis_v2", "inicis_unified", "inicis_jp"})
PHONE_METHODS = frozenset({"phone", "mobile"})

PARTIAL_REFUSED_ADVICE = (
    "some payments (foreign-issued cards, card points combined with the card) can be refunded only "
    "in full: refund the whole remainder instead"
)


class FullOnlyReason(enum.StrEnum):
    ESCROW = "escrow"
    PHONE = "phone"


def full_only_reason(*, escrow: bool, pay_method: str | None, pg_provider: str | None) -> FullOnlyReason | None:
    """Why PortOne refunds this payment only in full (None: a partial refund may be tried)."""
    if escrow:
        return FullOnlyReason.ESCROW
    if (pay_method or "").lower() in PHONE_METHODS and (pg_provider or "").lower() not in INICIS_PGS:
        return FullOnlyReason.PHONE
    return None


def of_gateway(payment: GatewayPayment) -> FullOnlyReason | None:
    return full_only_reason(escrow=payment.escrow, pay_method=payment.pay_method, pg_provider=payment.pg_provider)


def escrow_in_raw(raw: Mapping[str, Any] | None) -> bool:
    """The escrow flag of PortOne's payment object as we stored it (V1 `escrow: true`, V2 an
    `escrow` object)."""
    value = (raw or {}).get("escrow")
    return value is True or isinstance(value, Mapping)


def of_record(
    *, raw: Mapping[str, Any] | None, pay_method: str | None, pg_provider: str | None
) -> FullOnlyReason | None:
    """The same judgement from our copy of PortOne's record (when PortOne cannot be asked)."""
    return full_only_reason(escrow=escrow_in_raw(raw), pay_method=pay_method, pg_provider=pg_provider)


def refuse_partial(payment: GatewayPayment, amount: Decimal | None) -> None:
    """Raise FullRefundOnly when `amount` (None: the whole remainder) leaves part of a payment
    PortOne refunds in full only."""
    reason = of_gateway(payment)
    if reason is None or amount is None or amount >= payment.cancellable_amount:
        return
    raise FullRefundOnly(
        f"full refund only: PortOne cannot partially refund {'an escrow' if reason == 'escrow' else 'a phone'} "
        f"payment (impossible-partial-cancel); refund the whole {payment.cancellable_amount} {payment.currency}",
        reason=str(reason),
    )
