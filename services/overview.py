"""Read-only figures for the dashboard's overview."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select

from services.models import Alert, AlertStatus, Payment
from services.runtime import Runtime


@dataclass(frozen=True)
class CurrencyTotals:
    currency: str
    paid_count: int
    paid_amount: Decimal
    refunded_amount: Decimal

    @property
    def net_amount(self) -> Decimal:
        return self.paid_amount - self.refunded_amount


def totals_by_currency(rt: Runtime) -> list[CurrencyTotals]:
    with rt.db.read() as session:
        rows = session.execute(
            select(
                Payment.currency,
                func.count(),
                func.coalesce(func.sum(Payment.amount), 0),
                func.coalesce(func.sum(Payment.cancel_amount), 0),
            )
            .where(Payment.paid_at.is_not(None), Payment.verified.is_(True))
            .group_by(Payment.currency)
            .order_by(Payment.currency)
        ).all()
    return [CurrencyTotals(cur, int(n), Decimal(paid), Decimal(refunded)) for cur, n, paid, refunded in rows]


def open_alert_count(rt: Runtime) -> int:
    with rt.db.read() as session:
        return int(
            session.scalar(select(func.count()).select_from(Alert).where(Alert.status != AlertStatus.RESOLVED)) or 0
        )
